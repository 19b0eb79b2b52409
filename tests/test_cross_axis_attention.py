"""The MCA block against the authors' 2D formulation written out with explicit row/column reshapes."""

import pytest
import torch
from nnunet_attention.architectures.blocks.cross_axis_attention import MultiScaleCrossAxisAttention
from nnunet_attention.architectures.blocks.depthwise import depthwise_strip
from paper_references import mca_2d_reference
from torch import nn


def randomized(block: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for parameter in block.parameters():
        nn.init.normal_(parameter, std=0.3)
    return block.double()


@pytest.mark.parametrize("size", [(6, 9), (24, 5)])
def test_2d_block_equals_authors_formulation(size):
    block = randomized(MultiScaleCrossAxisAttention(nn.Conv2d, 8, heads=2))
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    torch.testing.assert_close(block(x), mca_2d_reference(block, x))


def test_3d_block_on_two_axes_of_a_depth_one_volume_is_the_2d_block():
    block_2d = randomized(MultiScaleCrossAxisAttention(nn.Conv2d, 8, heads=2))
    block_3d = MultiScaleCrossAxisAttention(nn.Conv3d, 8, heads=2, axes=(1, 2)).double()
    state = {k: v[:, :, None] if v.ndim == 4 else v for k, v in block_2d.state_dict().items()}
    block_3d.load_state_dict(state)
    x = torch.randn(2, 8, 7, 10, dtype=torch.float64)
    torch.testing.assert_close(block_3d(x[:, :, None])[:, :, 0], block_2d(x))


def test_3d_block_pairs_every_axis_and_keeps_shape():
    block = MultiScaleCrossAxisAttention(nn.Conv3d, 8, heads=4)
    assert len(block.strips) == 3
    x = torch.randn(1, 8, 3, 6, 5)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("conv_op, size", [(nn.Conv2d, (3, 4)), (nn.Conv3d, (1, 2, 5))])
def test_strips_longer_than_the_grid_give_the_full_strip_result(conv_op, size):
    """Applying only the overlapping taps is exact: same output, same weight gradient (zero on dropped taps)."""
    block = randomized(MultiScaleCrossAxisAttention(conv_op, 4, heads=1))
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    for axis, strips in zip(block.axes, block.strips):
        for conv in strips:
            full = conv(x)
            full_grad = torch.autograd.grad(full.square().sum(), conv.weight)[0]
            cropped = depthwise_strip(x, conv.weight.flatten(1), conv.bias, axis)
            cropped_grad = torch.autograd.grad(cropped.square().sum(), conv.weight)[0]
            torch.testing.assert_close(cropped, full)
            torch.testing.assert_close(cropped_grad, full_grad)


@pytest.mark.parametrize("extent", [1, 2, 5])
def test_bf16_strip_gradients_on_a_short_channels_last_axis_match_float64(extent):
    """Regression: a 21-tap strip on an axis of fewer than 10 voxels, CPU bf16 depthwise Conv3d on channels-last
    input (what the channel LayerNorm hands over) gave weight gradients of 1e19 and more, so the MCANet 3d AMP
    step went non-finite. Through :func:`depthwise_strip` the gradient is the float64 one up to bf16 rounding."""
    torch.manual_seed(0)
    strip = nn.Conv3d(16, 16, (1, 21, 1), padding=(0, 10, 0), groups=16)
    x = torch.randn(2, 16, 2, extent, 6)
    upstream = torch.randn(2, 16, 2, extent, 6)
    reference = strip.double()(x.double())
    expected = torch.autograd.grad((reference * upstream.double()).sum(), strip.weight)[0]
    strip.bfloat16()
    channels_last = x.bfloat16().to(memory_format=torch.channels_last_3d)
    got = torch.autograd.grad((depthwise_strip(channels_last, strip.weight.flatten(1), strip.bias, 1)
                               * upstream.bfloat16()).sum(), strip.weight)[0]
    assert (got.double() - expected).abs().max() <= 0.02 * expected.abs().max()


def test_bad_configurations_say_what_is_wrong():
    with pytest.raises(ValueError, match="channels 10 must be divisible by heads 4"):
        MultiScaleCrossAxisAttention(nn.Conv2d, 10, heads=4)
    with pytest.raises(ValueError, match="axes \\[2\\] must name at least two"):
        MultiScaleCrossAxisAttention(nn.Conv3d, 8, heads=2, axes=(2,))
    with pytest.raises(ValueError, match="strip lengths \\[7, 10\\] must be odd"):
        MultiScaleCrossAxisAttention(nn.Conv2d, 8, heads=2, strip_lengths=(7, 10))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_forward_and_backward_stay_finite(dtype):
    block = MultiScaleCrossAxisAttention(nn.Conv2d, 8, heads=2)
    x = (torch.randn(2, 8, 12, 10) * 10).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        output = block(x)
    output.float().square().mean().backward()
    assert torch.isfinite(output).all() and all(torch.isfinite(p.grad).all() for p in block.parameters())
