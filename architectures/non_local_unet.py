"""Non-local U-Net: nnU-Net's planned U-Net with embedded-Gaussian non-local blocks at the deep levels.

Wang et al.'s non-local block (CVPR 2018) after the bottleneck stage and after the deep decoder stages, where
self-attention over the whole patch is affordable and the receptive field of the convolutions is the limit
(Non-local U-Nets, Wang et al. AAAI 2020, put their global aggregation at the bottom and in the first
up-block). Levels: the bottleneck always, plus the decoder stages of the deepest ``max_levels`` levels whose
grid at the plan's patch has at most ``max_positions`` positions; ``nonlocal_levels`` overrides it. Every
block starts as the identity, so at initialisation the network is the planned U-Net.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .blocks.non_local import NonLocalBlock
from .plan import read_geometry, resolve_attention_levels, stage_grids
from .stage_block_unet import DECODER, StageBlockUNet


class NonLocalUNet(StageBlockUNet):
    """nnU-Net's planned U-Net with non-local blocks at the bottleneck and the deep decoder stages.

    Args:
        input_channels, num_classes: from the dataset.
        deep_supervision: return nnU-Net's list of logits (highest resolution first).
        patch_size: the plan's patch size, for the choice of levels (without it: the deepest ``max_levels``).
        nonlocal_levels: explicit level indices (0 = highest resolution); the bottleneck's block follows the
            encoder, the others follow the decoder stage that produces their level.
        max_positions, max_levels: the choice from the patch (defaults: 4096 positions, i.e. 64² or 16³,
            and 3 levels: the bottleneck and two decoder stages).
        reduction, subsample: of each :class:`NonLocalBlock` (paper: 1/2 and 2).
        **plan_kwargs: the plan's ``arch_kwargs`` (``PlainConvUNet`` or ``ResidualEncoderUNet``).
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        patch_size: Sequence[int] | None = None,
        nonlocal_levels: Sequence[int] | None = None,
        max_positions: int = 4096,
        max_levels: int = 3,
        reduction: float = 0.5,
        subsample: int = 2,
        **plan_kwargs: Any,
    ):
        geometry = read_geometry(plan_kwargs)
        n_stages = len(geometry.features_per_stage)
        grids = None if patch_size is None else stage_grids(patch_size, geometry.strides)
        levels = resolve_attention_levels(
            nonlocal_levels, grids, n_stages, max_positions, max_levels, "nonlocal_levels"
        )

        def block(level: int, place: str) -> nn.Module:
            # the bottleneck's block follows the encoder, every other level's the decoder stage producing it
            if level not in levels or (place == DECODER) != (level < n_stages - 1):
                return nn.Identity()
            return NonLocalBlock(
                geometry.conv_op, geometry.features_per_stage[level], plan_kwargs.get("norm_op"),
                plan_kwargs.get("norm_op_kwargs"), reduction, subsample,
            )

        super().__init__(input_channels, num_classes, deep_supervision, plan_kwargs, block)
        self.nonlocal_levels = levels

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Voxels of feature maps held for backward: the planned U-Net's, plus about three maps of its level's
        size per non-local block (θ and the attention output at C/2, W's output and its norm at C)."""
        level_voxels = self.level_voxels(input_size)
        non_local = sum(3 * level_voxels[level] for level in self.nonlocal_levels)
        return self.planned_feature_map_size(input_size) + non_local

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net's initialisation; the non-local output gates are zeroed again so every block stays the identity."""
        super().initialize(module)
        if isinstance(module, NonLocalBlock):
            module.zero_output_gate()
