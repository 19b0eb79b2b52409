"""MCANet specifics: which levels the head reads, its outputs, its maps."""

import pytest
import torch
from nnunet_attention.architectures import MCANet, UNetPlan, capture_attention_maps
from nnunet_attention.architectures.mcanet import deep_supervision_levels, head_levels
from plan_factory import make_plan


@pytest.mark.parametrize(
    "n_stages,deep,shallow", [(3, [2], 1), (4, [2, 3], 1), (5, [2, 3, 4], 1), (7, [4, 5, 6], 3), (8, [5, 6, 7], 4)]
)
def test_head_reads_the_deepest_three_levels_and_the_one_above(n_stages, deep, shallow):
    assert head_levels(n_stages) == (deep, shallow)
    assert deep_supervision_levels(n_stages) == shallow + 1 >= 2


def test_too_shallow_plan_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="at least 3 stages \\(n_stages=2\\); plan a larger patch"):
        head_levels(2)


@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)])
def test_cross_axis_maps_are_captured_per_axis(spatial_dims, anisotropic):
    kwargs, patch = make_plan(spatial_dims, 5, anisotropic)
    network = MCANet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2).eval()
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(torch.randn(1, 1, *patch))
    assert len(maps) == spatial_dims
    # E2 = level 2 grid; each map holds one mean weight per index along its axis, constant along the others
    grid = [p // (s1 * s2) for p, s1, s2 in zip(patch, kwargs["strides"][1], kwargs["strides"][2])]
    for axis in range(spatial_dims):
        weights = maps[f"decoder.head.cross_axis_attention.attention_probes.{axis}"]
        assert weights.shape == (1, 1, *grid)
        torch.testing.assert_close(weights.sum(2 + axis), torch.ones(1, 1, *grid[:axis], *grid[axis + 1:]))
        other_axes = [2 + a for a in range(spatial_dims) if a != axis]
        assert torch.equal(weights.amax(other_axes), weights.amin(other_axes))
