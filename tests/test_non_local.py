"""Non-local U-Nets: the global aggregation block against the paper's formula (float64), the official topology on
nnU-Net's ACDC plans (bottom block, up-sampling block at the first up-step), attention dropout in training only."""

import math

import pytest
import torch
from nnunet_attention.architectures import NonLocalUNet, UNetPlan
from nnunet_attention.architectures.blocks.global_aggregation import GlobalAggregation
from nnunet_attention.architectures.non_local_unet import BottomBlock, UpAggregation
from plan_factory import make_plan
from torch import nn

from nnunet_attention.benchmark import build_network
from nnunet_attention.plan_presets import PLAN_PRESETS


def aggregation_reference(block: GlobalAggregation, x: torch.Tensor) -> torch.Tensor:
    """multihead_attention_3d: per head h, O_h = softmax(Q_h K_hᵀ / sqrt(C / heads)) V_h over all N input positions
    (keys and values unpooled), heads concatenated channel-wise, then the 1x1 output conv. Written with explicit
    (N_q, N) matrices per head, channels split into contiguous head groups as the official code."""
    query, key, value = block.query(x), block.key(x), block.value(x)
    channels = query.shape[1]
    per_head = channels // block.heads
    outputs = []
    for h in range(block.heads):
        part = slice(h * per_head, (h + 1) * per_head)
        q = query[:, part].flatten(2).transpose(1, 2)  # (B, N_q, C/h)
        k = key[:, part].flatten(2).transpose(1, 2)  # (B, N, C/h)
        v = value[:, part].flatten(2).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(1, 2) * per_head ** -0.5, dim=-1)
        outputs.append((weights @ v).transpose(1, 2))
    attended = torch.cat(outputs, dim=1).reshape(query.shape)
    return block.output(attended)


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
    torch.manual_seed(0)
    block = GlobalAggregation(nn.Conv2d, 4, 8, 2, attention_dropout=0.5)
    x = torch.randn(1, 4, 6, 6)
    assert not torch.allclose(block.train()(x), block(x))
    torch.testing.assert_close(block.eval()(x), block(x))
    torch.testing.assert_close(block(x), aggregation_reference(block, x))


@pytest.mark.parametrize("preset", ["acdc-2d", "acdc-3d_fullres"])
def test_acdc_topology_bottom_block_and_upsampling_by_attention(preset):
    plan = PLAN_PRESETS[preset]
    arch = plan.configuration_plan["architecture"]["arch_kwargs"]
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
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    network = NonLocalUNet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2).eval()
    bottleneck = torch.randn(1, 32, 3, 5)
    block = network.bottom_block
    expected = bottleneck + block.aggregation(block.norm_nonlin(bottleneck))
    torch.testing.assert_close(block(bottleneck), expected)
    with torch.no_grad():
        nn.init.zeros_(block.aggregation.output.weight)
        nn.init.zeros_(block.aggregation.output.bias)
    torch.testing.assert_close(block(bottleneck), bottleneck)


def test_up_block_is_attention_plus_transposed_conv_shortcut():
    kwargs, patch = make_plan(3, 4, anisotropic=True)
    network = NonLocalUNet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2).eval()
    up = network.decoder.transpconvs[0]
    below = torch.randn(1, 32, 2, 2, 6)
    activated = up.norm_nonlin(below)
    torch.testing.assert_close(up(below), up.aggregation(activated) + up.shortcut(activated))
    assert up(below).shape == (1, 16, 4, 4, 12)  # the last stride of this plan is [2, 2, 2]


def test_bad_settings_say_what_is_wrong():
    with pytest.raises(ValueError, match="channels 6 must be divisible by heads 4"):
        GlobalAggregation(nn.Conv2d, 6, 6, 4)
    with pytest.raises(ValueError, match="attention_dropout must be in \\[0, 1\\), got 1"):
        GlobalAggregation(nn.Conv2d, 6, 6, 2, attention_dropout=1)
    with pytest.raises(ValueError, match="strides of 1 or 2 per axis, got \\[3, 3\\]"):
        GlobalAggregation(nn.Conv2d, 6, 6, 2, up_stride=(3, 3))
