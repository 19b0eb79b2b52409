"""Gaussian-weighted axial attention, the global part of MT-UNet's LGG-SA (Wang et al., ICASSP 2022, Sec. 2.2).

On a token grid ``(B, *G, C)``, for every axis separately, each token attends to the tokens on its line
along that axis with scores ``q·k - (shift·d² + bias)``, ``d`` the index distance along the axis (single
head, unscaled dot product, as the authors' code). Each axis has its own softmax; the axis outputs are
summed. One batched SDPA call per axis, any number of axes (2D: rows and columns; 3D: also depth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GaussianAxialAttention(nn.Module):
    """Args: ``dim`` channels C. Forward: ``(B, *G, C)`` -> ``(B, *G, C)``.

    ``shift`` and ``bias`` are learnable scalars initialised as in the authors' code (``|N(0,1)|`` and
    ``-|N(0,1)|``). ``bias`` is constant along the softmax axis, so it cancels and gets zero gradient; it
    is kept to follow the paper's formula. The same holds for the key projection's bias (it adds ``q·b`` to
    all of a query's scores alike).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.shift = nn.Parameter(torch.randn(1).abs())
        self.bias = nn.Parameter(-torch.randn(1).abs())

    def distance_bias(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """``-(shift·(i-j)² + bias)`` as a ``(length, length)`` additive score mask."""
        positions = torch.arange(length, device=self.shift.device, dtype=torch.float32)
        squared_distance = (positions[:, None] - positions[None, :]) ** 2
        return (-(self.shift * squared_distance + self.bias)).to(dtype)

    def forward(self, grid_tokens: torch.Tensor) -> torch.Tensor:
        query, key, value = self.query(grid_tokens), self.key(grid_tokens), self.value(grid_tokens)
        output = torch.zeros_like(value)
        for axis in range(1, grid_tokens.ndim - 1):
            # (B, *G, C) -> (lines along axis, 1, length, C): one attention problem per line
            def lines(t: torch.Tensor, axis: int = axis) -> torch.Tensor:
                moved = t.movedim(axis, -2)
                return moved.reshape(-1, 1, *moved.shape[-2:])

            attended = F.scaled_dot_product_attention(
                lines(query), lines(key), lines(value),
                attn_mask=self.distance_bias(grid_tokens.shape[axis], query.dtype), scale=1.0,
            )
            moved_shape = value.movedim(axis, -2).shape
            output = output + attended.reshape(moved_shape).movedim(-2, axis)
        return output
