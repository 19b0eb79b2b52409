"""MT-UNet (Wang et al., "Mixed Transformer U-Net for Medical Image Segmentation", ICASSP 2022) on an nnU-Net plan.

The planned U-Net keeps its convolutional stages; Mixed Transformer Modules (MTMs, two per level as in the
authors' code) follow the convolutions of the deep, small levels: in the encoder, at the bottleneck and
in the decoder stages that come back up through those levels. Which levels get MTMs is derived from the
plan: the deepest ``max_mtm_levels`` levels whose grid has at most ``mtm_max_tokens`` tokens (the paper
uses 3 levels, 28², 14² and 7² at 224² input), the bottleneck always; ``mtm_levels`` overrides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .blocks.heads import heads_for
from .blocks.mixed_transformer import MixedTransformerStage
from .blocks.windows import window_shape_for
from .plan import read_geometry, resolve_attention_levels, stage_grids
from .stage_block_unet import StageBlockUNet


class MTUNet(StageBlockUNet):
    """nnU-Net's planned U-Net with Mixed Transformer Modules at the deep levels.

    Args:
        input_channels, num_classes: from the dataset.
        deep_supervision: return nnU-Net's list of logits (highest resolution first).
        patch_size: the plan's patch size; sets the MTM levels and each level's window. Without it the
            deepest ``max_mtm_levels`` levels get MTMs and every axis is assumed to be at least a window long.
        mtm_levels: explicit level indices (0 = highest resolution) for MTMs; overrides the choice.
        mtm_max_tokens, max_mtm_levels: the choice from the patch size (see the module docstring).
        mtm_depth: MTMs per level (paper: 2).
        window_size: LGG-SA window per axis (paper: 4), shrunk to the axis length on smaller grids.
        max_heads: heads of the window attention and of external attention (paper: 8), reduced to a divisor
            of the level's channels.
        memory_slots: external attention memory per head (paper: 64).
        **plan_kwargs: the plan's ``arch_kwargs`` (``PlainConvUNet`` or ``ResidualEncoderUNet``).
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        patch_size: Sequence[int] | None = None,
        mtm_levels: Sequence[int] | None = None,
        mtm_max_tokens: int = 1024,
        max_mtm_levels: int = 3,
        mtm_depth: int = 2,
        window_size: int = 4,
        max_heads: int = 8,
        memory_slots: int = 64,
        **plan_kwargs: Any,
    ):
        geometry = read_geometry(plan_kwargs)
        n_stages = len(geometry.features_per_stage)
        grids = None if patch_size is None else stage_grids(patch_size, geometry.strides)
        levels = resolve_attention_levels(mtm_levels, grids, n_stages, mtm_max_tokens, max_mtm_levels, "mtm_levels")

        def mtm_stage(level: int, place: str) -> nn.Module:
            # the same levels in the encoder and in the decoder stages coming back up through them
            if level not in levels:
                return nn.Identity()
            channels = geometry.features_per_stage[level]
            grid = grids[level] if grids is not None else (window_size,) * len(geometry.strides[0])
            return MixedTransformerStage(
                geometry.conv_op, channels, window_shape_for(grid, window_size), heads_for(channels, max_heads),
                memory_slots, mtm_depth,
            )

        super().__init__(input_channels, num_classes, deep_supervision, plan_kwargs, mtm_stage)
        self.mtm_levels = levels

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Voxels of feature maps held for backward: the planned U-Net's, plus for every MTM about 12 maps
        of its level's size (norms, q/k/v, attention outputs, the 4x external-attention projection)."""
        level_voxels = self.level_voxels(input_size)
        transformer = 0
        for level in self.mtm_levels:
            uses = 1 + (level < len(level_voxels) - 1)  # encoder, and the decoder stage coming back up
            depth = len(self.encoder_blocks[level].blocks)
            transformer += uses * depth * 12 * level_voxels[level]
        return self.planned_feature_map_size(input_size) + transformer
