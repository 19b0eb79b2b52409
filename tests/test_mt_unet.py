"""MT-UNet specifics: the official topology on nnU-Net's ACDC plans (MTMs replace convolution at the deepest three
levels, the position table, the decoder blocks), the MTM and LGG-SA against the paper's formulas (float64)."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import make_plan
from mt_unet_reference import lgg_sa_reference
from nnunet_attention.architectures import MTUNet, UNetPlan
from nnunet_attention.architectures.blocks.local_global_attention import LocalGlobalGaussianAttention
from nnunet_attention.architectures.blocks.mixed_transformer import MixedTransformerModule, MixedTransformerStage
from torch import nn

from nnunet_attention.plan_presets import PLAN_PRESETS
from nnunet_attention.trainer_step import build_network


def convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]


def mtm_widths(stage: nn.Module) -> list[int]:
    assert isinstance(stage, MixedTransformerStage)
    return [block.norm_local_global.normalized_shape[0] for block in stage.blocks]


@pytest.mark.parametrize("preset,transformer_grids", [
    ("acdc-2d", [(32, 28), (16, 14), (8, 7)]),  # strides 8, 16, 32 of 256 x 224: the paper's 28², 14², 7² at 224²
    ("acdc-3d_fullres", [(5, 32, 28), (5, 16, 14), (5, 8, 7)]),
])
def test_acdc_topology_mtms_replace_convolution_at_the_three_deepest_levels(preset, transformer_grids):
    plan = PLAN_PRESETS[preset]
    arch = plan.configuration_manager().network_arch_init_kwargs
    features, strides, n_stages = arch["features_per_stage"], arch["strides"], arch["n_stages"]
    network = build_network("nnUNetTrainerMTUNet", plan)
    first = network.first_transformer_level
    assert first == n_stages - 3
    assert [network.plan.grids[level] for level in range(first, n_stages)] == transformer_grids

    # the stem: the plan's conv stages above the MTM levels
    assert len(network.stem.stages) == first
    # into the first MTM level: max-pool by the plan's stride, 1x1 conv-norm-nonlin, position table
    pool, projection = network.stem_exit
    assert list(pool.kernel_size) == list(pool.stride) == list(strides[first])
    assert (projection[0].in_channels, projection[0].out_channels) == (features[first - 1], features[first])
    assert math.prod(projection[0].kernel_size) == 1
    assert network.position_embedding.shape == (1, features[first], *transformer_grids[0])
    assert not network.position_embedding.any()  # zeros at initialisation, as the authors' table

    # encoder MTM levels and bottleneck: 2 MTMs each at the level's channels, then a kernel = stride conv
    assert [mtm_widths(stage) for stage in network.encoder_transformers] == [[features[first]] * 2,
                                                                              [features[first + 1]] * 2]
    assert mtm_widths(network.bottleneck) == [features[-1]] * 2
    for level, downsample in zip(range(first, n_stages - 1), network.downsamples):
        conv = downsample[0]
        assert list(conv.kernel_size) == list(conv.stride) == list(strides[level + 1])
        assert (conv.in_channels, conv.out_channels) == (features[level], features[level + 1])

    # decoder MTM levels (deepest first): transposed conv, skip, 1x1 conv back to C, 2 MTMs; the first MTM level
    # (the authors' decoder_block with flag=True) has no 1x1 conv and runs its MTMs at 2 C
    deeper, first_level = network.decoder.levels[0], network.decoder.levels[1]
    reduce, mtms = deeper.merge
    assert (reduce.in_channels, reduce.out_channels, math.prod(reduce.kernel_size)) == (
        2 * features[first + 1], features[first + 1], 1)
    assert mtm_widths(mtms) == [features[first + 1]] * 2
    assert mtm_widths(first_level.merge) == [2 * features[first]] * 2
    assert first_level.upsample.in_channels == features[first + 1]
    # the convolutional decoder takes the 2 C of the first MTM level
    assert network.decoder.levels[2].upsample.in_channels == 2 * features[first]

    # no 3x3 convolution anywhere at the MTM levels: only 1x1 convs and kernel = stride steps
    transformer_parts = [network.stem_exit, *network.encoder_transformers, *network.downsamples,
                         network.bottleneck, deeper, first_level]
    for part in transformer_parts:
        for conv in convs(part):
            assert math.prod(conv.kernel_size) == 1 or list(conv.kernel_size) == list(conv.stride), conv
    assert sum(isinstance(m, MixedTransformerModule) for m in network.modules()) == 10  # as the authors' net


def test_mtm_levels_are_the_deepest_three_at_stride_8_or_more():
    seven = UNetPlan.from_arch_kwargs(*make_plan(2, 7, anisotropic=False))  # strides 1 .. 64
    assert MTUNet(seven, 1, 2).first_transformer_level == 4
    four = UNetPlan.from_arch_kwargs(*make_plan(3, 4, anisotropic=True))  # cumulative [1,2,2] [1,4,4] [2,8,8]
    assert MTUNet(four, 1, 2).first_transformer_level == 3  # the bottleneck only
    assert MTUNet(four, 1, 2, min_transformer_stride=1).first_transformer_level == 1
    shallow = UNetPlan.from_arch_kwargs(*make_plan(2, 3, anisotropic=False))
    assert MTUNet(shallow, 1, 2).first_transformer_level == 2  # 3 stages: the bottleneck (stride 4) only
    assert MTUNet(shallow, 1, 2, min_transformer_stride=1).first_transformer_level == 1  # level 0 stays conv


def test_levels_override_and_its_bounds():
    kwargs, patch = make_plan(2, 6, anisotropic=False)
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    assert MTUNet(plan, 1, 2, transformer_levels=1).first_transformer_level == 5
    assert MTUNet(plan, 1, 2, transformer_levels=5, min_transformer_stride=1).first_transformer_level == 1
    with pytest.raises(ValueError, match="transformer_levels must be at least 1 \\(the bottleneck\\), got 0"):
        MTUNet(plan, 1, 2, transformer_levels=0)


def test_windows_follow_the_planned_grids():
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    assert plan.grids[2:] == ((4, 4, 12), (2, 2, 6), (1, 1, 3))
    network = MTUNet(plan, 1, 2, window_size=4, min_transformer_stride=1)
    windows = [stage.blocks[0].local_global_attention.window for stage in network.encoder_transformers]
    assert windows == [(4, 4, 4), (2, 2, 4)]
    assert network.bottleneck.blocks[0].local_global_attention.window == (1, 1, 3)


def mtm_official_parameter_count(dim: int, window_tokens: int, heads: int = 8, slots: int = 64) -> int:
    """Parameters of the authors' EAmodule(dim), from model/MTUNet.py: two LayerNorms; CSAttention = window
    attention (q, k, v, out: Linear(dim, dim)), DlightConv (Linear(dim, window tokens)), axial attention (q, k, v and
    an `out` Linear its axial branch never calls), GaussianTrans (shift, bias), `queeze` Conv2d(2 dim, dim, 1);
    MEAttention = Linear(dim, 4 dim), Linear(dim / heads, slots), Linear(slots, dim / heads), Linear(4 dim, dim)."""
    linear = lambda n_in, n_out: n_in * n_out + n_out  # noqa: E731
    head_dim = 4 * dim // (4 * heads)
    cs_attention = 4 * linear(dim, dim) + linear(dim, window_tokens) + 4 * linear(dim, dim) + 2 + linear(2 * dim, dim)
    external = linear(dim, 4 * dim) + linear(head_dim, slots) + linear(slots, head_dim) + linear(4 * dim, dim)
    return 2 * 2 * dim + cs_attention + external


@pytest.mark.parametrize("dim", [64, 256])
def test_mtm_has_the_authors_parameters_but_the_unused_axial_output_projection(dim):
    ours = sum(p.numel() for p in MixedTransformerModule(dim, (4, 4), 8, 64).parameters())
    unused_axial_out = dim * dim + dim
    assert ours == mtm_official_parameter_count(dim, 16) - unused_axial_out


def test_mtm_equals_the_papers_formula():
    """MTM(x) = y + EA(LN(y)), y = x + LGG-SA(LN(x)), LayerNorm eps 1e-6 (the authors' EAmodule)."""
    torch.manual_seed(0)
    block = MixedTransformerModule(8, (2, 3), heads=2, memory_slots=5).double()
    for norm in (block.norm_local_global, block.norm_external):
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    tokens = torch.randn(2, 4, 6, 8, dtype=torch.float64)

    def layer_norm(x, norm):
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.square().mean(-1, keepdim=True) + 1e-6) * norm.weight + norm.bias

    y = tokens + lgg_sa_reference(block.local_global_attention, layer_norm(tokens, block.norm_local_global))
    flat = y.flatten(1, 2)
    expected = (flat + block.external_attention(layer_norm(flat, block.norm_external))).view_as(tokens)
    torch.testing.assert_close(block(tokens), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("grid,window", [((8, 12), (4, 4)), ((4, 2, 6), (2, 2, 3))])
def test_lgg_sa_equals_the_papers_formula_on_window_multiples(grid, window):
    torch.manual_seed(0)
    block = LocalGlobalGaussianAttention(8, window, heads=2).double()
    tokens = torch.randn(2, *grid, 8, dtype=torch.float64)
    torch.testing.assert_close(block(tokens), lgg_sa_reference(block, tokens), atol=1e-10, rtol=1e-10)


def test_position_embedding_reaches_the_output_and_learns():
    kwargs, patch = make_plan(2, 5, anisotropic=False)
    network = MTUNet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2)
    network.apply(network.initialize)
    image = torch.randn(1, 1, *patch)
    before = network(image)
    with torch.no_grad():
        network.position_embedding.normal_()
    assert not torch.allclose(network(image), before)
    F.mse_loss(network(image), torch.zeros_like(before)).backward()
    assert network.position_embedding.grad.abs().sum() > 0
