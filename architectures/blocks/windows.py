"""Non-overlapping N-D windows on channels-last token grids: padding, partition and merge.

Grids are ``(B, *S, C)``. A window has one size per axis; ``pad_to_windows`` pads each axis with zeros up
to a multiple of its window (at the end of the axis) and returns a mask of the real tokens, so attention
can ignore the padding and the caller can crop back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def window_shape_for(grid: Sequence[int], window_size: int) -> tuple[int, ...]:
    """Per-axis window: ``window_size``, or the whole axis where the grid is smaller (anisotropic grids)."""
    return tuple(min(window_size, g) for g in grid)


def pad_to_windows(tokens: torch.Tensor, window: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zero-pad ``(B, *S, C)`` to multiples of ``window``; return it and a real-token mask ``(*P,)`` (None: no pad)."""
    grid = tokens.shape[1:-1]
    padding = [(-g) % w for g, w in zip(grid, window)]
    if not any(padding):
        return tokens, None
    pad_arg = [0, 0]  # channels
    for p in reversed(padding):
        pad_arg += [0, p]
    padded = F.pad(tokens, pad_arg)
    real = torch.zeros(padded.shape[1:-1], dtype=torch.bool, device=tokens.device)
    real[tuple(slice(0, g) for g in grid)] = True
    return padded, real


def partition_windows(tokens: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """``(B, *P, C)`` with ``P`` a multiple of ``window`` -> ``(B, n_windows, tokens_per_window, C)``.

    Windows are numbered in row-major order over the window grid ``P / window``.
    """
    batch, channels = tokens.shape[0], tokens.shape[-1]
    window_grid = [p // w for p, w in zip(tokens.shape[1:-1], window)]
    dims = len(window)
    split = tokens.reshape(batch, *[v for g, w in zip(window_grid, window) for v in (g, w)], channels)
    order = [0, *range(1, 2 * dims, 2), *range(2, 2 * dims + 1, 2), 2 * dims + 1]
    return split.permute(order).reshape(batch, math.prod(window_grid), math.prod(window), channels)


def merge_windows(windows: torch.Tensor, window_grid: Sequence[int], window: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: ``(B, n_windows, tokens_per_window, C)`` -> ``(B, *P, C)``."""
    batch, channels = windows.shape[0], windows.shape[-1]
    dims = len(window)
    split = windows.reshape(batch, *window_grid, *window, channels)
    order = [0, *[v for a in range(dims) for v in (1 + a, 1 + dims + a)], 2 * dims + 1]
    return split.permute(order).reshape(batch, *[g * w for g, w in zip(window_grid, window)], channels)
