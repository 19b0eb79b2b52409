"""Gaussian axial attention (MT-UNet's LGG-SA), vectorised, against the authors' formulation, a Python loop over
every grid position: equal outputs, and the time each takes (``nnunet-attention benchmark --gaussian-axial``)."""

from __future__ import annotations

import torch
from torch import nn

from .benchmark import median_seconds


def gaussian_axial_attention_loop(block: nn.Module, grid_tokens: torch.Tensor) -> torch.Tensor:
    """The authors' formulation on a 2D grid ``(B, H, W, C)``: a Python loop over every (row, column)."""
    query, key, value = block.query(grid_tokens), block.key(grid_tokens), block.value(grid_tokens)
    rows_scores = query @ key.transpose(-1, -2)  # (B, H, W, W): row attention scores
    columns_scores = query.transpose(1, 2) @ key.transpose(1, 2).transpose(-1, -2)  # (B, W, H, H)
    output = torch.zeros_like(value)
    height, width = grid_tokens.shape[1:3]
    for r in range(height):
        for c in range(width):
            row_distance = (torch.arange(width, device=value.device) - c) ** 2
            column_distance = (torch.arange(height, device=value.device) - r) ** 2
            row_weights = torch.softmax(rows_scores[:, r, c] - (block.shift * row_distance + block.bias), dim=-1)
            column_weights = torch.softmax(columns_scores[:, c, r] - (block.shift * column_distance + block.bias), -1)
            row_output = (row_weights[..., None] * value[:, r]).sum(1)
            output[:, r, c] = row_output + (column_weights[..., None] * value[:, :, c]).sum(1)
    return output


def gaussian_attention_table(device: torch.device, steps: int) -> str:
    """Our vectorised Gaussian axial attention against the authors' per-position loop, same weights."""
    from functools import partial

    from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention

    rows = ["| grid | vectorised (ms) | loop (ms) | loop / vectorised | max abs difference |", "|---|---|---|---|---|"]
    for size in (14, 28):
        block = GaussianAxialAttention(64).to(device)
        tokens = torch.randn(2, size, size, 64, device=device)
        with torch.no_grad():
            difference = (block(tokens) - gaussian_axial_attention_loop(block, tokens)).abs().max().item()
            fast = median_seconds(partial(block, tokens), steps, device)
            slow = median_seconds(partial(gaussian_axial_attention_loop, block, tokens), max(1, steps // 5), device)
        rows.append(f"| {size}x{size} | {fast * 1e3:.2f} | {slow * 1e3:.1f} | {slow / fast:.0f}x | {difference:.1e} |")
    return "\n".join(rows)
