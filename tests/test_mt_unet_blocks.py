"""MT-UNet's blocks against slow references written from the paper's formulas (float64)."""

import math

import pytest
import torch
from mt_unet_reference import gaussian_axial_reference
from nnunet_attention.architectures.blocks.external_attention import ExternalAttention
from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention
from nnunet_attention.architectures.blocks.local_global_attention import (
    LocalGlobalGaussianAttention,
    WindowAggregation,
    WindowSelfAttention,
)
from nnunet_attention.architectures.blocks.windows import (
    merge_windows,
    pad_to_windows,
    partition_windows,
    window_shape_for,
)


@pytest.mark.parametrize("grid", [(3, 5), (7, 4), (3, 4, 5), (2, 6, 3)])
def test_gaussian_axial_attention_equals_per_position_loop(grid):
    torch.manual_seed(0)
    block = GaussianAxialAttention(6).double()
    tokens = torch.randn(2, *grid, 6, dtype=torch.float64)
    difference = (block(tokens) - gaussian_axial_reference(block, tokens)).abs().max()
    assert difference <= 1e-5


def test_gaussian_bias_prefers_near_tokens():
    block = GaussianAxialAttention(4).double()
    with torch.no_grad():
        for linear in (block.query, block.key):
            linear.weight.zero_()
            linear.bias.zero_()
        block.shift.fill_(1.0)
    bias = block.distance_bias(5, torch.float64)
    weights = torch.softmax(bias, dim=-1)
    assert torch.all(weights.argmax(dim=-1) == torch.arange(5))
    assert weights[0, 1] > weights[0, 2] > weights[0, 3]


@pytest.mark.parametrize("grid,window", [((8, 12), (4, 4)), ((6, 5), (4, 4)), ((3, 9, 6), (3, 4, 4))])
def test_windows_partition_merge_round_trip_with_real_padding(grid, window):
    tokens = torch.randn(2, *grid, 3)
    padded, real = pad_to_windows(tokens, window)
    assert all(p % w == 0 and p - g < w for p, g, w in zip(padded.shape[1:-1], grid, window))
    if real is None:
        assert padded.shape == tokens.shape
    else:
        assert int(real.sum()) == math.prod(grid)
        assert torch.all(padded[(slice(None), *[slice(g, None) for g in grid])] == 0)
    windows = partition_windows(padded, window)
    assert windows.shape[2] == math.prod(window)
    window_grid = [p // w for p, w in zip(padded.shape[1:-1], window)]
    torch.testing.assert_close(merge_windows(windows, window_grid, window), padded)
    # window 0 holds exactly the first window-sized corner of the grid
    corner = padded[(slice(None), *[slice(0, w) for w in window])].reshape(2, -1, 3)
    torch.testing.assert_close(windows[:, 0], corner)


def test_window_shape_shrinks_to_small_axes():
    assert window_shape_for((2, 28, 3), 4) == (2, 4, 3)


def test_window_attention_ignores_padding_tokens():
    torch.manual_seed(0)
    attention = WindowSelfAttention(8, heads=2).double()
    windows = torch.randn(1, 2, 4, 8, dtype=torch.float64)
    real = torch.tensor([[True, True, True, True], [True, True, False, False]])
    masked = attention(windows, real)
    # reference: the second window's real tokens attend among themselves only
    alone = attention(windows[:, 1:, :2], None)
    torch.testing.assert_close(masked[:, 1, :2], alone[:, 0])
    torch.testing.assert_close(masked[:, 0], attention(windows[:, :1], None)[:, 0])


def test_window_aggregation_is_a_convex_combination_of_real_tokens():
    aggregation = WindowAggregation(5, tokens_per_window=4).double()
    windows = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    real = torch.tensor([[True, True, True, True], [True, False, True, False]])
    summary, weights = aggregation(windows, real)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, dtype=torch.float64))
    assert torch.all(weights[:, 1, [1, 3]] == 0)
    torch.testing.assert_close(summary, torch.einsum("bwt,bwtc->bwc", weights, windows))


def test_external_attention_equals_double_normalisation_formula():
    torch.manual_seed(0)
    attention = ExternalAttention(8, heads=2, memory_slots=5).double()
    tokens = torch.randn(2, 7, 8, dtype=torch.float64)
    queries = attention.query(tokens).view(2, 7, attention.heads, -1)  # (B, N, H, d)
    scores = torch.einsum("bnhd,sd->bhns", queries, attention.memory_key.weight) + attention.memory_key.bias
    over_tokens = torch.exp(scores) / torch.exp(scores).sum(dim=2, keepdim=True)  # softmax over the N tokens
    over_slots = over_tokens / over_tokens.sum(dim=3, keepdim=True)  # L1 over the memory slots
    read = torch.einsum("bhns,ds->bnhd", over_slots, attention.memory_value.weight) + attention.memory_value.bias
    expected = attention.projection(read.reshape(2, 7, -1))
    torch.testing.assert_close(attention(tokens), expected)


@pytest.mark.parametrize("grid,window", [((7, 9), (4, 4)), ((2, 5, 6), (2, 4, 4))])
def test_lgg_attention_keeps_grid_shape_and_exposes_aggregation_weights(grid, window):
    from nnunet_attention.architectures import capture_attention_maps

    block = LocalGlobalGaussianAttention(8, window, heads=2)
    tokens = torch.randn(2, *grid, 8)
    with capture_attention_maps(block) as maps:
        output = block(tokens)
    assert output.shape == tokens.shape
    (weights,) = maps.values()
    assert weights.shape == (2, 1, *grid) and weights.min() >= 0 and weights.max() <= 1


def test_lgg_attention_refuses_grids_smaller_than_its_windows():
    block = LocalGlobalGaussianAttention(8, (4, 4), heads=2)
    with pytest.raises(ValueError, match="built for windows \\[4, 4\\] but got a grid \\[3, 8\\]"):
        block(torch.randn(1, 3, 8, 8))
