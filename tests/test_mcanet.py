"""MCANet: the paper's decode head on nnU-Net's plans (backbone levels at strides 4-32, MCA on E1's grid, the
official widths, one full-resolution output) against the authors' head written out (float64), its maps."""

import pytest
import torch
import torch.nn.functional as F
from helpers import make_plan
from nnunet_attention.architectures import MCANet, UNetPlan, capture_attention_maps
from nnunet_attention.architectures.mcanet import backbone_levels
from paper_references import conv_reference, layers_reference, mca_2d_reference
from torch import nn

from nnunet_attention.plan_presets import PLAN_PRESETS
from nnunet_attention.trainer_step import build_network


@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic,levels", [
    (2, 3, False, (1, 2)), (2, 4, False, (2, 3)), (2, 5, False, (2, 3, 4)), (2, 6, False, (2, 3, 4, 5)),
    (2, 8, False, (2, 3, 4, 5)),
    # anisotropic: cumulative strides [1,1,1] [1,2,2] [1,4,4] [2,8,8] ...: E1 is level 2 (4 in-plane)
    (3, 4, True, (2, 3)), (3, 6, True, (2, 3, 4, 5)),
])
def test_backbone_levels_start_at_stride_4(spatial_dims, n_stages, anisotropic, levels):
    assert backbone_levels(UNetPlan.from_arch_kwargs(*make_plan(spatial_dims, n_stages, anisotropic))) == levels


def test_single_stage_plan_is_refused():
    kwargs, patch = make_plan(2, 1, anisotropic=False)
    with pytest.raises(ValueError, match="at least 2 stages \\(E1 and a deeper level\\), got 1"):
        backbone_levels(UNetPlan.from_arch_kwargs(kwargs, patch))


@pytest.mark.parametrize("preset", ["acdc-2d", "acdc-3d_fullres"])
def test_acdc_topology_mca_on_e1_grid_with_the_official_widths(preset):
    plan = PLAN_PRESETS[preset]
    features = plan.configuration_manager().network_arch_init_kwargs["features_per_stage"]
    network = build_network("nnUNetTrainerMCANet", plan).eval()
    unet_plan = network.plan
    assert network.backbone_levels == (2, 3, 4, 5)
    assert [max(s) for s in (unet_plan.cumulative_strides[level] for level in network.backbone_levels)] == [4, 8, 16,
                                                                                                              32]
    e1, e2, e3, e4 = (features[level] for level in network.backbone_levels)
    head = network.head
    assert (head.squeeze[0].in_channels, head.squeeze[0].out_channels) == (e2 + e3 + e4, e2)
    depthwise_1, pointwise_1 = head.fuse[0]
    depthwise_2, pointwise_2 = head.fuse[1]
    assert depthwise_1[0].groups == e2 + e1 and pointwise_1[0].out_channels == e4
    assert depthwise_2[0].groups == e4 and pointwise_2[0].out_channels == e4
    assert (head.align[0].in_channels, head.align[0].out_channels) == (e4, e1)
    assert head.dropout.p == 0.1 and head.seg_layers[0].in_channels == e1
    with torch.no_grad(), capture_attention_maps(network) as maps:
        output = network(torch.randn(1, plan.input_channels, *unet_plan.patch_size))
    assert list(output.shape) == [1, plan.num_classes, *unet_plan.patch_size]
    assert maps and all(tuple(m.shape[2:]) == unet_plan.grids[2] for m in maps.values())  # MCA sees E1's grid


def test_deeper_plan_stages_are_not_built():
    kwargs, patch = make_plan(2, 7, anisotropic=False)
    network = MCANet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2)
    assert len(network.encoder.stages) == 6


def mca_head_reference(network: MCANet, image: torch.Tensor) -> torch.Tensor:
    """The authors' ``MCAHead.forward`` on the planned encoder's E1..E4 (2D), from functional ops: E2..E4 resized
    (bilinear) to E1's grid and concatenated, ``squeeze`` (1x1 conv-norm-nonlin), the MCA block, concatenated
    with E1, ``sep_bottleneck`` (two depthwise-separable conv-norm-nonlin), ``align`` (1x1 conv-norm-nonlin),
    ``cls_seg`` (dropout: identity in evaluation; 1x1 conv), then the logits resized (bilinear) to the image."""
    skips = network.encoder(image)  # nnU-Net's planned encoder, as nnU-Net builds it
    e1, *deep = (skips[level] for level in network.backbone_levels)
    head = network.head
    resized = [F.interpolate(e, size=e1.shape[2:], mode="bilinear", align_corners=False) for e in deep]
    attended = mca_2d_reference(head.cross_axis_attention, layers_reference(head.squeeze, torch.cat(resized, 1)))
    aligned = layers_reference(head.align, layers_reference(head.fuse, torch.cat((attended, e1), dim=1)))
    logits = conv_reference(head.seg_layers[0], aligned)
    return F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=False)


def test_forward_is_the_papers_head():
    kwargs, patch = make_plan(2, 6, anisotropic=False)  # E1..E4 at levels 2..5: 24 x 40 .. 3 x 5
    torch.manual_seed(0)
    network = MCANet(UNetPlan.from_arch_kwargs(kwargs, patch), 2, 3).double().eval()
    with torch.no_grad():
        for parameter in network.head.parameters():  # norms away from 1 and 0, the projection's bias nonzero
            parameter.add_(0.3 * torch.randn_like(parameter))
        image = torch.randn(1, 2, *patch, dtype=torch.float64)
        torch.testing.assert_close(network(image), mca_head_reference(network, image), atol=1e-10, rtol=1e-10)


def test_deep_supervision_is_refused_with_what_to_do():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    with pytest.raises(ValueError, match="switches nnU-Net's off: build it with deep_supervision=False"):
        MCANet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2, deep_supervision=True)
    assert isinstance(MCANet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2).head.dropout, nn.Dropout2d)


@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)])
def test_cross_axis_maps_are_captured_per_axis(spatial_dims, anisotropic):
    kwargs, patch = make_plan(spatial_dims, 6, anisotropic)
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    network = MCANet(plan, 1, 2).eval()
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(torch.randn(1, 1, *patch))
    assert len(maps) == spatial_dims
    grid = list(plan.grids[2])  # E1
    for axis in range(spatial_dims):
        weights = maps[f"head.cross_axis_attention.attention_probes.{axis}"]
        assert weights.shape == (1, 1, *grid)
        torch.testing.assert_close(weights.sum(2 + axis), torch.ones(1, 1, *grid[:axis], *grid[axis + 1:]))
        other_axes = [2 + a for a in range(spatial_dims) if a != axis]
        assert torch.equal(weights.amax(other_axes), weights.amin(other_axes))
