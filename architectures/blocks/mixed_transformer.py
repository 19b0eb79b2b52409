"""Mixed Transformer Module (MTM) of MT-UNet (Wang et al., ICASSP 2022, Sec. 2.1, Fig. 1), N-D.

``MTM(x) = y + EA(LN(y))`` with ``y = x + LGG-SA(LN(x))``; no feed-forward block and LayerNorm eps 1e-6, as
the authors' code (``EAmodule``). :class:`MixedTransformerStage` applies a stack of MTMs to a channels-first
feature map (the network adds the position embedding once, where the authors' code adds it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..attention_removal import ResidualAttention
from .external_attention import ExternalAttention
from .local_global_attention import LocalGlobalGaussianAttention

#: the authors' LayerNorm epsilon in every MTM
LAYER_NORM_EPS = 1e-6


class MixedTransformerModule(nn.Module):
    """One MTM on a channels-last grid ``(B, *S, C)`` -> ``(B, *S, C)``."""

    def __init__(self, dim: int, window: Sequence[int], heads: int, memory_slots: int):
        super().__init__()
        self.norm_local_global = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.local_global_attention = LocalGlobalGaussianAttention(dim, window, heads)
        self.norm_external = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.external_attention = ExternalAttention(dim, heads, memory_slots)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.local_global_attention(self.norm_local_global(tokens))
        flat = tokens.flatten(1, -2)
        flat = flat + self.external_attention(self.norm_external(flat))
        return flat.view_as(tokens)


class MixedTransformerStage(ResidualAttention):
    """``depth`` MTMs on a feature map ``(B, C, *S)`` -> ``(B, C, *S)`` (tokens = the positions of the grid)."""

    def __init__(self, dim: int, window: Sequence[int], heads: int, memory_slots: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(*[MixedTransformerModule(dim, window, heads, memory_slots) for _ in range(depth)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.blocks(features.movedim(1, -1)).movedim(-1, 1)

