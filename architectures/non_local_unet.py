"""Non-local U-Net: nnU-Net's planned U-Net with embedded-Gaussian non-local blocks at the deep levels.

Wang et al.'s non-local block (CVPR 2018) after the bottleneck stage and after the deep decoder stages, where
self-attention over the whole patch is affordable and the receptive field of the convolutions is the limit
(Non-local U-Nets, Wang et al. AAAI 2020, put their global aggregation at the bottom and in the first
up-block). Levels: the bottleneck always, plus the decoder stages of the deepest ``max_levels`` levels whose
grid at the plan's patch has at most ``max_positions`` positions; ``nonlocal_levels`` overrides it. Every
block starts as the identity, so at initialisation the network is the planned U-Net.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .blocks.non_local import NonLocalBlock
from .decoder import HookedUNetDecoder
from .encoder import encode_with_stage_blocks
from .plan import (
    build_planned_encoder,
    choose_attention_levels,
    decoder_convs_per_stage,
    initialize_module_like_nnunet,
    is_residual_plan,
    read_geometry,
    stage_grids,
)


class NonLocalUNet(nn.Module):
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
        super().__init__()
        geometry = read_geometry(plan_kwargs)
        n_stages = len(geometry.features_per_stage)
        if nonlocal_levels is None:
            grids = None if patch_size is None else stage_grids(patch_size, geometry.strides)
            nonlocal_levels = choose_attention_levels(grids, n_stages, max_positions, max_levels)
        elif not all(0 <= level < n_stages for level in nonlocal_levels):
            raise ValueError(f"nonlocal_levels {list(nonlocal_levels)} must be level indices in 0..{n_stages - 1}")
        self.nonlocal_levels = tuple(sorted(nonlocal_levels))
        self.residual_plan = is_residual_plan(plan_kwargs)

        def block(level: int, place: str) -> nn.Module:
            wanted = level in self.nonlocal_levels and (place == "decoder") == (level < n_stages - 1)
            if not wanted:
                return nn.Identity()
            return NonLocalBlock(
                geometry.conv_op, geometry.features_per_stage[level], plan_kwargs.get("norm_op"),
                plan_kwargs.get("norm_op_kwargs"), reduction, subsample,
            )

        self.encoder = build_planned_encoder(input_channels, plan_kwargs)
        self.encoder_blocks = nn.ModuleList([block(level, "encoder") for level in range(n_stages)])
        # decoder stage s produces level n_stages - 2 - s
        self.decoder = HookedUNetDecoder(
            self.encoder, num_classes, decoder_convs_per_stage(plan_kwargs), deep_supervision,
            stage_blocks=[block(n_stages - 2 - s, "decoder") for s in range(n_stages - 1)],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(encode_with_stage_blocks(self.encoder, self.encoder_blocks, x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Voxels of feature maps held for backward: the planned U-Net's, plus about three maps of its level's
        size per non-local block (θ and the attention output at C/2, W's output and its norm at C)."""
        grids = stage_grids(input_size, self.encoder.strides)
        channels = self.encoder.output_channels
        non_local = sum(3 * channels[level] * math.prod(grids[level]) for level in self.nonlocal_levels)
        planned = self.encoder.compute_conv_feature_map_size(input_size)
        return int(planned + self.decoder.compute_conv_feature_map_size(input_size) + non_local)

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net's initialisation; the non-local output gates are zeroed again so every block stays the identity."""
        initialize_module_like_nnunet(module, self.residual_plan)
        if isinstance(module, NonLocalBlock):
            module.zero_output_gate()
