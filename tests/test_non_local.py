"""Non-local U-Nets: the global aggregation block, the bottom block and the up-sampling block against the authors'
operations (float64), the official topology on nnU-Net's ACDC plans (bottom block, up-sampling block at the first
up-step), attention dropout in training only, the transposed convs' alignment."""

import math

import pytest
import torch
from helpers import make_plan
from nnunet_attention.architectures import NonLocalUNet, UNetPlan
from nnunet_attention.architectures.blocks.global_aggregation import GlobalAggregation
from nnunet_attention.architectures.non_local_unet import BottomBlock, UpAggregation
from paper_references import aggregation_reference, layers_reference, transposed_conv_3x3_reference
from torch import nn

from nnunet_attention.plan_presets import PLAN_PRESETS
from nnunet_attention.trainer_step import build_network


@pytest.mark.parametrize("conv_op,size,heads,up_stride", [
    (nn.Conv2d, (5, 6), 2, None), (nn.Conv3d, (2, 3, 4), 2, None), (nn.Conv2d, (3, 5), 1, (2, 2)),
    (nn.Conv3d, (3, 4, 2), 1, (1, 2, 2)),
])
def test_global_aggregation_equals_the_papers_formula(conv_op, size, heads, up_stride):
    torch.manual_seed(0)
    block = GlobalAggregation(conv_op, 6, 8, heads, up_stride=up_stride).double().eval()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    output = block(x)
    expected_grid = [n * s for n, s in zip(size, up_stride)] if up_stride else list(size)
    assert list(output.shape) == [2, 8, *expected_grid]
    torch.testing.assert_close(output, aggregation_reference(block, x), atol=1e-10, rtol=1e-10)


def test_scaled_scores_spread_the_attention_at_initialisation():
    """The reason for the scale: at C = 320 on an 8 x 8 grid, unscaled scores make the weights near one-hot."""
    torch.manual_seed(0)
    block = GlobalAggregation(nn.Conv2d, 320, 320, heads=2).eval()
    x = torch.randn(1, 320, 8, 8)
    q = block.query(x)[:, :160].flatten(2).transpose(1, 2)
    k = block.key(x)[:, :160].flatten(2).transpose(1, 2)
    scaled = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(160), -1).amax(-1).mean()
    unscaled = torch.softmax(q @ k.transpose(1, 2), -1).amax(-1).mean()
    assert scaled < 0.5 < unscaled


def test_attention_dropout_acts_in_training_only():
    """Evaluation: exactly the formula without dropout. Training: other outputs, unbiased (dropout rescales the
    kept weights, and everything after the weights is linear), so their mean over many passes nears the formula;
    without dropout, training is the formula too."""
    torch.manual_seed(0)
    block = GlobalAggregation(nn.Conv2d, 4, 8, 2, attention_dropout=0.5).double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = aggregation_reference(block, x)
        torch.testing.assert_close(block.eval()(x), expected, atol=1e-10, rtol=1e-10)
        block.train()
        passes = block(x.expand(4000, -1, -1, -1))  # one dropout mask per case of the batch
        assert (passes - expected).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every pass dropped something
        torch.testing.assert_close(passes.mean(dim=0, keepdim=True), expected, atol=0.03 * expected.abs().max(),
                                   rtol=0)
        block.attention_dropout = 0.0
        torch.testing.assert_close(block(x), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("preset", ["acdc-2d", "acdc-3d_fullres"])
def test_acdc_topology_bottom_block_and_upsampling_by_attention(preset):
    plan = PLAN_PRESETS[preset]
    arch = plan.configuration_manager().network_arch_init_kwargs
    features, strides = arch["features_per_stage"], arch["strides"]
    network = build_network("nnUNetTrainerNonLocalUNet", plan)
    unet_plan = network.plan
    bottom = network.bottom_block
    assert isinstance(bottom, BottomBlock) and bottom.aggregation.heads == 2
    assert bottom.aggregation.key.in_channels == bottom.aggregation.key.out_channels == features[-1]
    up = network.decoder.transpconvs[0]
    assert isinstance(up, UpAggregation) and up.aggregation.heads == 1
    for conv in (up.aggregation.query, up.shortcut):
        assert isinstance(conv, nn.ConvTranspose2d | nn.ConvTranspose3d)
        assert list(conv.stride) == list(strides[-1]) and set(conv.kernel_size) == {3}
        assert (conv.in_channels, conv.out_channels) == (features[-1], features[-2])
    # the up block's queries lie on the level above, its keys and values (unpooled) on the bottleneck's grid
    grids = {}
    for name in ("query", "key", "value"):
        getattr(up.aggregation, name).register_forward_hook(
            lambda _m, _i, out, name=name: grids.__setitem__(name, tuple(out.shape[2:])))
    network.eval()
    with torch.no_grad():
        network(torch.randn(1, plan.input_channels, *unet_plan.patch_size))
    assert grids["query"] == unet_plan.grids[-2]
    assert grids["key"] == grids["value"] == unet_plan.grids[-1]
    # the other up-steps stay nnU-Net's transposed convs
    assert all(isinstance(t, nn.ConvTranspose2d | nn.ConvTranspose3d) for t in network.decoder.transpconvs[1:])


def test_bottom_block_adds_the_encoder_output():
    """The authors' bottom block: ``x + multihead_attention_3d(BN-ReLU6(x))``, with the plan's norm and
    nonlinearity."""
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    torch.manual_seed(0)
    network = NonLocalUNet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2).double().eval()
    block = network.bottom_block
    with torch.no_grad():
        for parameter in block.parameters():  # norm weights and biases away from 1 and 0
            parameter.add_(0.3 * torch.randn_like(parameter))
        bottleneck = torch.randn(2, 32, 3, 5, dtype=torch.float64)
        expected = bottleneck + aggregation_reference(block.aggregation, layers_reference(block.norm_nonlin,
                                                                                          bottleneck))
        torch.testing.assert_close(block(bottleneck), expected, atol=1e-10, rtol=1e-10)


def test_up_block_is_attention_plus_bias_free_transposed_conv_shortcut():
    """The authors' first up-step (``_attention_block`` with ``projection_shortcut``): ``y = BN-ReLU6(x)``,
    ``multihead_attention_3d(y, 'UP') + Deconv3D(y, kernel 3, stride)``, the Deconv3D without bias."""
    kwargs, patch = make_plan(3, 4, anisotropic=True)
    torch.manual_seed(0)
    network = NonLocalUNet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2).double().eval()
    up = network.decoder.transpconvs[0]
    assert isinstance(up, UpAggregation)
    with torch.no_grad():
        for parameter in up.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
        below = torch.randn(2, 32, 2, 2, 6, dtype=torch.float64)
        activated = layers_reference(up.norm_nonlin, below)
        shortcut = transposed_conv_3x3_reference(activated, up.shortcut.weight, None, (2, 2, 2))
        expected = aggregation_reference(up.aggregation, activated) + shortcut
        output = up(below)
    assert output.shape == (2, 16, 4, 4, 12)  # the last stride of this plan is [2, 2, 2]
    torch.testing.assert_close(output, expected, atol=1e-10, rtol=1e-10)


def test_transposed_convs_are_one_fine_voxel_from_tensorflows_same_along_stride_two():
    """The documented departure: along an axis of stride 2 PyTorch's output voxel ``j`` is TensorFlow's ``j + 1``
    (same weights); along stride 1 they agree."""
    torch.manual_seed(0)
    x, weight = torch.randn(1, 3, 4, 5, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    pytorch = transposed_conv_3x3_reference(x, weight, None, (1, 2))
    tensorflow = transposed_conv_3x3_reference(x, weight, None, (1, 2), tensorflow_same=True)
    torch.testing.assert_close(pytorch[..., :-1], tensorflow[..., 1:])
    assert not torch.allclose(pytorch, tensorflow)


def test_bad_settings_say_what_is_wrong():
    with pytest.raises(ValueError, match="channels 6 must be divisible by heads 4"):
        GlobalAggregation(nn.Conv2d, 6, 6, 4)
    with pytest.raises(ValueError, match="attention_dropout must be in \\[0, 1\\), got 1"):
        GlobalAggregation(nn.Conv2d, 6, 6, 2, attention_dropout=1)
    with pytest.raises(ValueError, match="strides of 1 or 2 per axis, got \\[3, 3\\]"):
        GlobalAggregation(nn.Conv2d, 6, 6, 2, up_stride=(3, 3))
