"""MT-UNet (Wang et al., "Mixed Transformer U-Net for Medical Image Segmentation", ICASSP 2022) on an nnU-Net plan,
with the topology of the authors' code (Dootmaan/MT-UNet, ``model/MTUNet.py``).

The deepest ``transformer_levels`` levels of the plan (paper: 3, at strides 8, 16, 32 of a 224² input: 28², 14²,
7²) are Mixed Transformer Module (MTM) levels, where MTMs *replace* convolution; the levels above them are the
plan's convolutional stages (the authors' convolutional stem ``U_encoder`` / ``U_decoder``). Only levels at a
cumulative stride of at least 8 (along some axis) qualify, the bottleneck always: a plan of fewer than 6 stages
gets fewer MTM levels instead of MTMs at strides 2 or 4, where the tokens outnumber the paper's by 16-64 times
and external attention holds 2048 values per token (4 x 8 heads x 64 slots) whatever the channels (measured on
the synthetic 3d plan, 4 stages: MTMs at strides 2, 4, 8 took 15x the plain U-Net's step time and 9x its memory).

1. Stem: the plan's encoder stages of the convolutional levels (their outputs are skips).
2. Into the first MTM level: max-pooling by the plan's stride and a 1x1 conv-norm-nonlin to the level's channels
   (the authors' last stem pooling and ``trans_dim``), plus a learned absolute position embedding, zeros at
   initialisation, one entry per position of that level's grid at the plan's patch (the authors' (1, 784, C)
   table at 28²; nnU-Net always runs the network at exactly its plan's patch, so the table fits every input).
3. Encoder MTM levels: ``mtm_depth`` MTMs (their output is the level's skip), then a conv-norm-nonlin with
   kernel = stride = the plan's stride to the next level, which also changes the channels to the next level's
   (the authors' ``encoder_block``: ConvBNReLU, kernel 2, stride 2, doubling the channels).
4. Bottleneck: ``mtm_depth`` MTMs.
5. Decoder MTM levels (the authors' ``decoder_block``): transposed conv with the plan's stride, concatenation
   with the skip, a 1x1 conv back to the level's channels, ``mtm_depth`` MTMs. At the first MTM level the
   authors' last ``decoder_block`` (``flag=True``) has no 1x1 conv: its MTMs run on the concatenation's
   2 x channels, and the convolutional decoder takes that width.
6. Decoder convolutional levels: nnU-Net's decoder stages (transposed conv, skip, the plan's convs).
7. Heads: a 1x1 head per decoder level for nnU-Net's deep supervision (highest resolution first); with deep
   supervision off the full-resolution head alone, the authors' ``SegmentationHead``.

Each MTM: LGG-SA and external attention, pre-LayerNorm (eps 1e-6) and residual each, 8 heads (fewer where they
do not divide the channels), 64 memory slots per head. LGG-SA's window is 4 per axis, shrunk on shorter axes; a
grid that is no window multiple is padded with zeros, masked out of the window attention and the window
aggregation, where the authors' code pads unmasked: zeros below and right of the grid, and in the corner a copy of
the grid's last block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import get_matching_convtransp, get_matching_pool_op
from torch import nn

from .blocks.attention_probe import name_attention_maps
from .blocks.heads import heads_for
from .blocks.mixed_transformer import MixedTransformerStage
from .blocks.windows import window_shape_for
from .decoder import decode
from .plan import UNetPlan
from .planned_network import PlannedNetwork


class DecoderLevel(nn.Module):
    """One up-step: ``merge(cat(upsample(below), skip))``, ``(B, C_below, *S / stride)`` -> ``(B, C_out, *S)``."""

    def __init__(self, upsample: nn.Module, merge: nn.Module):
        super().__init__()
        self.upsample = upsample
        self.merge = merge

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat((self.upsample(below), skip), dim=1))


class MTUNetDecoder(nn.Module):
    """Decoder levels ``n_stages - 2`` .. 0 (MTM levels, then convolutional ones) with a head per level, run by
    nnU-Net's decoder loop (:func:`~.decoder.decode`).

    ``deep_supervision`` is what nnU-Net's ``set_deep_supervision_enabled`` toggles. Forward: the skips, level 0
    first, with the bottleneck last -> logits ``(B, classes, *patch)``, or one per level, highest resolution first.
    """

    def __init__(self, levels: Sequence[DecoderLevel], heads: Sequence[nn.Module], deep_supervision: bool):
        super().__init__()
        self.levels = nn.ModuleList(levels)  # deepest first, as they run
        self.seg_layers = nn.ModuleList(heads)
        self.deep_supervision = deep_supervision

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        return decode(self.up_step, self.seg_layers, skips, self.deep_supervision)

    def up_step(self, s: int, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decoder level ``s`` (deepest first): :class:`DecoderLevel` ``(below, skip)``."""
        return self.levels[s](below, skip)


class MTUNet(PlannedNetwork):
    """MT-UNet on the plan (see the module docstring).

    Args:
        plan: the configuration's plan.
        input_channels, num_classes: from the dataset.
        deep_supervision: return nnU-Net's list of logits (highest resolution first).
        transformer_levels: how many of the deepest levels are MTM levels (paper: 3).
        min_transformer_stride: only levels whose cumulative stride reaches this along some axis are MTM levels
            (paper: 8, its shallowest MTM level), the bottleneck always: plans of fewer than 6 stages get fewer
            MTM levels rather than MTMs on grids far finer than the paper's. 1 gives the deepest
            ``transformer_levels`` whatever their stride (the first level stays convolutional).
        mtm_depth: MTMs per level (paper: 2).
        window_size: LGG-SA window per axis (paper: 4), shrunk to the axis length on smaller grids.
        max_heads: heads of the window attention and of external attention (paper: 8), reduced to a divisor
            of the level's channels.
        memory_slots: external attention memory per head (paper: 64).
    """

    def __init__(
        self,
        plan: UNetPlan,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        transformer_levels: int = 3,
        min_transformer_stride: int = 8,
        mtm_depth: int = 2,
        window_size: int = 4,
        max_heads: int = 8,
        memory_slots: int = 64,
    ):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        n_stages, channels, strides, grids = plan.n_stages, plan.features_per_stage, plan.strides, plan.grids
        if transformer_levels < 1:
            raise ValueError(f"transformer_levels must be at least 1 (the bottleneck), got {transformer_levels}")
        # level 0 stays convolutional, the bottleneck is always an MTM level
        coarse_enough = min(max(plan.first_level_at_stride(min_transformer_stride), 1), n_stages - 1)
        first = self.first_transformer_level = max(n_stages - transformer_levels, coarse_enough)

        def transformer(level: int, width: int, place: str) -> MixedTransformerStage:
            stage = MixedTransformerStage(width, window_shape_for(grids[level], window_size),
                                          heads_for(width, max_heads), memory_slots, mtm_depth)
            name_attention_maps(stage, f"lgg_sa_{place}_level{level}", index_label="block")
            return stage

        # 1-2. convolutional stem, then into the first MTM level
        self.stem = plan.first_stages(first).build_encoder(input_channels)
        pool = get_matching_pool_op(conv_op=plan.conv_op, pool_type="max")
        self.stem_exit = nn.Sequential(pool(strides[first], strides[first]),
                                       plan.conv_norm_nonlin(channels[first - 1], channels[first]))
        self.position_embedding = nn.Parameter(torch.zeros(1, channels[first], *grids[first]))
        # 3-4. encoder MTM levels, bottleneck
        self.encoder_transformers = nn.ModuleList(
            transformer(level, channels[level], "encoder") for level in range(first, n_stages - 1)
        )
        self.downsamples = nn.ModuleList(
            plan.conv_norm_nonlin(channels[level], channels[level + 1], strides[level + 1], strides[level + 1])
            for level in range(first, n_stages - 1)
        )
        self.bottleneck = transformer(n_stages - 1, channels[-1], "bottleneck")
        # 5-7. decoder levels, deepest first, and their heads
        transpconv = get_matching_convtransp(plan.conv_op)
        levels, heads, below = [], [], channels[-1]
        for level in range(n_stages - 2, -1, -1):
            upsample = transpconv(below, channels[level], strides[level + 1], strides[level + 1], bias=plan.conv_bias)
            if level > first:
                merge = nn.Sequential(plan.conv_op(2 * channels[level], channels[level], 1),
                                      transformer(level, channels[level], "decoder"))
                below = channels[level]
            elif level == first:
                merge = transformer(level, 2 * channels[level], "decoder")
                below = 2 * channels[level]
            else:
                merge = plan.decoder_convs_at(level, 2 * channels[level])
                below = channels[level]
            levels.append(DecoderLevel(upsample, merge))
            heads.append(plan.conv_op(below, num_classes, 1, 1, 0, bias=True))
        self.decoder = MTUNetDecoder(levels, heads, deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = list(self.stem(x))
        features = self.stem_exit(skips[-1]) + self.position_embedding
        for mixed_transformers, downsample in zip(self.encoder_transformers, self.downsamples):
            features = mixed_transformers(features)
            skips.append(features)
            features = downsample(features)
        return self.decoder([*skips, self.bottleneck(features)])
