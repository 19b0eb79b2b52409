"""Local-global Gaussian-weighted self-attention (LGG-SA) of MT-UNet (Wang et al., ICASSP 2022, Sec. 2.2).

1. local: multi-head self-attention inside non-overlapping windows (SDPA; padding tokens masked out);
2. aggregation: each window becomes one token by lightweight dynamic convolution (a linear layer maps
   the window's mean token to one weight per window position, softmax over positions, weighted sum);
3. global: Gaussian-weighted axial attention on the grid of window tokens;
4. fusion: the global result is upsampled back by the window size (linear interpolation), concatenated
   with the local result and mixed by a 1x1 projection from 2C to C; the padding is cropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention_probe import AttentionProbe
from .gaussian_axial_attention import GaussianAxialAttention
from .interpolation import LINEAR_MODE
from .precision import stable_softmax
from .windows import merge_windows, pad_to_windows, partition_windows


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention within windows. ``(B, W, T, C)`` -> ``(B, W, T, C)``; ``real_tokens``
    ``(W, T)`` (True = real token) keeps padding out of the keys."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, windows: torch.Tensor, real_tokens: torch.Tensor | None) -> torch.Tensor:
        batch, n_windows, n_tokens, dim = windows.shape
        qkv = self.qkv(windows).view(batch, n_windows, n_tokens, 3, self.heads, dim // self.heads)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (B, W, heads, T, d)
        mask = None if real_tokens is None else real_tokens[:, None, None, :]  # (W, 1, 1, T) over keys
        attended = F.scaled_dot_product_attention(
            query.flatten(0, 1), key.flatten(0, 1), value.flatten(0, 1),
            attn_mask=None if mask is None else mask.repeat(batch, 1, 1, 1),
        )  # (B*W, heads, T, d)
        attended = attended.view(batch, n_windows, self.heads, n_tokens, -1).transpose(2, 3)
        return self.out(attended.reshape(batch, n_windows, n_tokens, dim))


class WindowAggregation(nn.Module):
    """Lightweight dynamic convolution: ``(B, W, T, C)`` -> window tokens ``(B, W, C)`` and weights ``(B, W, T)``."""

    def __init__(self, dim: int, tokens_per_window: int):
        super().__init__()
        self.weights = nn.Linear(dim, tokens_per_window)

    def forward(self, windows: torch.Tensor, real_tokens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if real_tokens is None:
            mean_token = windows.mean(dim=2)
            logits = self.weights(mean_token)
        else:
            real = real_tokens.to(windows.dtype)[None, :, :, None]  # (1, W, T, 1)
            mean_token = (windows * real).sum(dim=2) / real.sum(dim=2)
            logits = self.weights(mean_token).masked_fill(~real_tokens[None], float("-inf"))
        weights = stable_softmax(logits, dim=-1)
        return torch.einsum("bwt,bwtc->bwc", weights, windows), weights


class LocalGlobalGaussianAttention(nn.Module):
    """LGG-SA on a channels-last grid ``(B, *S, C)`` -> ``(B, *S, C)``.

    Args:
        dim: channels C.
        window: per-axis window size (see :func:`windows.window_shape_for`); every axis of the input grid
            must be at least as long as its window.
        heads: heads of the local attention.

    The aggregation weights (how much each token speaks for its window, in [0, 1]) are exposed through
    ``aggregation_probe`` as ``(B, 1, *S)``.
    """

    def __init__(self, dim: int, window: Sequence[int], heads: int):
        super().__init__()
        self.window = tuple(int(w) for w in window)
        self.local_attention = WindowSelfAttention(dim, heads)
        self.aggregation = WindowAggregation(dim, math.prod(self.window))
        self.global_attention = GaussianAxialAttention(dim)
        self.fusion = nn.Linear(2 * dim, dim)
        self.aggregation_probe = AttentionProbe("LGG-SA window aggregation weights per token, in [0, 1]")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens.shape[1:-1]
        if any(g < w for g, w in zip(grid, self.window)):
            raise ValueError(
                f"LGG-SA was built for windows {list(self.window)} but got a grid {list(grid)}; build the network "
                f"from the plan whose patch it runs on"
            )
        padded, real_tokens = pad_to_windows(tokens, self.window)
        padded_grid = padded.shape[1:-1]
        window_grid = [p // w for p, w in zip(padded_grid, self.window)]
        real_per_window = None
        if real_tokens is not None:
            real_per_window = partition_windows(real_tokens[None, ..., None], self.window)[0, ..., 0]

        local = self.local_attention(partition_windows(padded, self.window), real_per_window)
        window_tokens, weights = self.aggregation(local, real_per_window)
        global_tokens = self.global_attention(window_tokens.view(tokens.shape[0], *window_grid, -1))
        upsampled = F.interpolate(
            global_tokens.movedim(-1, 1), size=padded_grid, mode=LINEAR_MODE[len(grid)], align_corners=True
        ).movedim(1, -1)
        fused = self.fusion(torch.cat((upsampled, merge_windows(local, window_grid, self.window)), dim=-1))

        crop = (slice(None), *[slice(0, g) for g in grid])
        self.aggregation_probe(merge_windows(weights[..., None], window_grid, self.window)[crop].movedim(-1, 1))
        return fused[crop]
