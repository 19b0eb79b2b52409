"""The MCA block against the authors' 2D formulation written out with explicit row/column reshapes."""

import pytest
import torch
import torch.nn.functional as F
from nnunet_attention.architectures.blocks.cross_axis_attention import MultiScaleCrossAxisAttention
from torch import nn


def mca_2d_reference(block: MultiScaleCrossAxisAttention, x: torch.Tensor) -> torch.Tensor:
    """Shao et al.: x-path = Σ 1xk strips, y-path = Σ kx1 strips, both through project_out; row attention
    (H tokens of W·C/h features) with the y-path query over the x-path keys/values, column attention (W
    tokens of H·C/h) with the x-path query over the y-path; q, k L2-normalised; q added back."""
    b, c, h, w = x.shape
    heads = block.heads
    normed = F.layer_norm(x.permute(0, 2, 3, 1), (c,), block.norm.norm.weight, block.norm.norm.bias).permute(0, 3, 1, 2)
    y_path = block.project_out(sum(conv(normed) for conv in block.strips[0]))  # strips along H: (k, 1)
    x_path = block.project_out(sum(conv(normed) for conv in block.strips[1]))  # strips along W: (1, k)

    def rows(t):  # b (head c) h w -> b head h (w c)
        return t.view(b, heads, c // heads, h, w).permute(0, 1, 3, 4, 2).reshape(b, heads, h, w * c // heads)

    def columns(t):  # b (head c) h w -> b head w (h c)
        return t.view(b, heads, c // heads, h, w).permute(0, 1, 4, 3, 2).reshape(b, heads, w, h * c // heads)

    q1, k1, v1 = F.normalize(rows(y_path), dim=-1), F.normalize(rows(x_path), dim=-1), rows(x_path)
    q2, k2, v2 = F.normalize(columns(x_path), dim=-1), F.normalize(columns(y_path), dim=-1), columns(y_path)
    out3 = torch.softmax(q1 @ k1.transpose(-1, -2), -1) @ v1 + q1
    out4 = torch.softmax(q2 @ k2.transpose(-1, -2), -1) @ v2 + q2
    out3 = out3.view(b, heads, h, w, c // heads).permute(0, 1, 4, 2, 3).reshape(b, c, h, w)
    out4 = out4.view(b, heads, w, h, c // heads).permute(0, 1, 4, 3, 2).reshape(b, c, h, w)
    return block.project_out(out3) + block.project_out(out4) + x


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


def test_strips_longer_than_the_grid_use_only_the_overlapping_taps():
    block = randomized(MultiScaleCrossAxisAttention(nn.Conv2d, 4, heads=1))
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64)
    for strips, axis in ((block.strips[0], 0), (block.strips[1], 1)):
        for conv in strips:
            length, extent = conv.kernel_size[axis], x.shape[2 + axis]
            keep = min(length, 2 * extent - 1)
            start = (length - keep) // 2
            cropped = conv.weight.narrow(2 + axis, start, keep)
            padding = [0, 0]
            padding[axis] = (keep - 1) // 2
            expected = F.conv2d(x, cropped, conv.bias, padding=tuple(padding), groups=4)
            torch.testing.assert_close(conv(x), expected)


def test_bad_configurations_say_what_is_wrong():
    with pytest.raises(ValueError, match="channels 10 must be divisible by heads 4"):
        MultiScaleCrossAxisAttention(nn.Conv2d, 10, heads=4)
    with pytest.raises(ValueError, match="axes \\[2\\] must name at least two"):
        MultiScaleCrossAxisAttention(nn.Conv3d, 8, heads=2, axes=(2,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_forward_and_backward_stay_finite(dtype):
    block = MultiScaleCrossAxisAttention(nn.Conv2d, 8, heads=2)
    x = (torch.randn(2, 8, 12, 10) * 10).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        output = block(x)
    output.float().square().mean().backward()
    assert torch.isfinite(output).all() and all(torch.isfinite(p.grad).all() for p in block.parameters())
