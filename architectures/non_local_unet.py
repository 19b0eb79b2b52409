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

import torch
from torch import nn

from .blocks.non_local import NonLocalBlock
from .decoder import HookedUNetDecoder
from .plan import UNetPlan


class NonLocalUNet(nn.Module):
    """nnU-Net's planned U-Net with non-local blocks at the bottleneck and the deep decoder stages.

    Args:
        plan: the configuration's plan.
        input_channels, num_classes: from the dataset.
        deep_supervision: return nnU-Net's list of logits (highest resolution first).
        nonlocal_levels: explicit level indices (0 = highest resolution); the bottleneck's block follows the
            encoder, the others follow the decoder stage that produces their level.
        max_positions, max_levels: the choice from the patch (defaults: 4096 positions, i.e. 64² or 16³,
            and 3 levels: the bottleneck and two decoder stages).
        reduction, subsample: of each :class:`NonLocalBlock` (paper: 1/2 and 2).
    """

    def __init__(
        self,
        plan: UNetPlan,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        nonlocal_levels: Sequence[int] | None = None,
        max_positions: int = 4096,
        max_levels: int = 3,
        reduction: float = 0.5,
        subsample: int = 2,
    ):
        super().__init__()
        n_stages = plan.n_stages
        if nonlocal_levels is None:
            levels = plan.deepest_levels(max_levels, max_positions)
        elif all(0 <= level < n_stages for level in nonlocal_levels):
            levels = tuple(sorted(nonlocal_levels))
        else:
            raise ValueError(f"nonlocal_levels {list(nonlocal_levels)} must be level indices in 0..{n_stages - 1}")
        self.plan = plan
        self.nonlocal_levels = levels

        def block(level: int) -> nn.Module:
            if level not in levels:
                return nn.Identity()
            return NonLocalBlock(plan.conv_op, plan.features_per_stage[level], plan.norm_op, plan.norm_op_kwargs,
                                 reduction, subsample)

        self.encoder = plan.build_encoder(input_channels)
        self.bottleneck_block = block(n_stages - 1)
        self.decoder = HookedUNetDecoder(plan, self.encoder, num_classes, deep_supervision,
                                         stage_blocks=[block(level) for level in range(n_stages - 2, -1, -1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = self.encoder(x)
        return self.decoder([*skips[:-1], self.bottleneck_block(skips[-1])])

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net's initialisation; the non-local output gates are zeroed again so every block stays the identity."""
        self.plan.initialize(module)
        if isinstance(module, NonLocalBlock):
            module.zero_output_gate()
