"""Mixed Transformer Module (MTM) of MT-UNet (Wang et al., ICASSP 2022, Sec. 2.1, Fig. 1), N-D.

``MTM(x) = y + EA(LN(y))`` with ``y = x + LGG-SA(LN(x))``; no feed-forward block, as the authors' code.
:class:`MixedTransformerStage` applies a stack of MTMs to a channels-first feature map, after a
conditional positional encoding (a depthwise 3x3 convolution added to its input, Chu et al. 2021), which
works at any grid size where the authors' fixed 784-token table works only at 224x224 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .external_attention import ExternalAttention
from .local_global_attention import LocalGlobalGaussianAttention


class MixedTransformerModule(nn.Module):
    """One MTM on a channels-last grid ``(B, *S, C)`` -> ``(B, *S, C)``."""

    def __init__(self, dim: int, window: Sequence[int], heads: int, memory_slots: int):
        super().__init__()
        self.norm_local_global = nn.LayerNorm(dim)
        self.local_global_attention = LocalGlobalGaussianAttention(dim, window, heads)
        self.norm_external = nn.LayerNorm(dim)
        self.external_attention = ExternalAttention(dim, heads, memory_slots)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.local_global_attention(self.norm_local_global(tokens))
        flat = tokens.flatten(1, -2)
        flat = flat + self.external_attention(self.norm_external(flat))
        return flat.view_as(tokens)


class MixedTransformerStage(nn.Module):
    """Positional encoding + ``depth`` MTMs on a feature map ``(B, C, *S)`` -> ``(B, C, *S)``."""

    def __init__(
        self, conv_op: type[nn.Module], dim: int, window: Sequence[int], heads: int, memory_slots: int, depth: int
    ):
        super().__init__()
        self.positional_encoding = conv_op(dim, dim, 3, 1, 1, groups=dim)
        self.blocks = nn.Sequential(*[MixedTransformerModule(dim, window, heads, memory_slots) for _ in range(depth)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features + self.positional_encoding(features)
        return self.blocks(features.movedim(1, -1)).movedim(-1, 1)
