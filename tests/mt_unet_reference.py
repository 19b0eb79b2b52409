"""Slow references for MT-UNet's blocks, written from the paper's formulas (Wang et al., ICASSP 2022, Sec. 2.2) with
explicit loops over windows and positions; the blocks' own reshapes and batched attention are not reused."""

import itertools
import math

import torch
import torch.nn.functional as F


def gaussian_axial_reference(block, grid_tokens: torch.Tensor) -> torch.Tensor:
    """Per position p and axis a: w_j = softmax_j(q_p·k_j - (shift·(p_a - j)² + bias)) over the tokens j on
    p's line along a; output_p = Σ_a Σ_j w_j v_j (Eq. 3-4; one loop step per position)."""
    query, key, value = block.query(grid_tokens), block.key(grid_tokens), block.value(grid_tokens)
    grid = grid_tokens.shape[1:-1]
    output = torch.zeros_like(value)
    for position in itertools.product(*[range(g) for g in grid]):
        for axis, length in enumerate(grid):
            line = [tuple(j if a == axis else position[a] for a in range(len(grid))) for j in range(length)]
            scores = torch.stack(
                [(query[(slice(None), *position)] * key[(slice(None), *other)]).sum(-1) for other in line], dim=-1
            )
            distance = torch.tensor([(position[axis] - j) ** 2 for j in range(length)], dtype=scores.dtype)
            weights = torch.softmax(scores - (block.shift * distance + block.bias), dim=-1)
            values = torch.stack([value[(slice(None), *other)] for other in line], dim=-2)
            output[(slice(None), *position)] += (weights[..., None] * values).sum(-2)
    return output


def lgg_sa_reference(block, tokens: torch.Tensor) -> torch.Tensor:
    """LGG-SA on ``(B, *S, C)`` with S a multiple of ``block.window``: multi-head softmax(QKᵀ/√d)V inside each
    window; each window summarised by its tokens weighted with softmax(W·mean + b) (LDConv); Gaussian axial
    attention on the grid of window summaries; the result upsampled linearly (corners aligned) by the window
    size, concatenated with the local result and fused by a linear layer."""
    local_block, heads = block.local_attention, block.local_attention.heads
    batch, channels = tokens.shape[0], tokens.shape[-1]
    grid, window = tokens.shape[1:-1], block.window
    window_grid = [g // w for g, w in zip(grid, window)]
    local = torch.zeros_like(tokens)
    summaries = torch.zeros(batch, *window_grid, channels, dtype=tokens.dtype)
    for window_index in itertools.product(*[range(n) for n in window_grid]):
        region = (slice(None), *[slice(i * w, (i + 1) * w) for i, w in zip(window_index, window)])
        inside = tokens[region].reshape(batch, -1, channels)  # row-major tokens of the window
        q, k, v = local_block.qkv(inside).chunk(3, dim=-1)
        head_outputs = []
        for h in range(heads):
            part = slice(h * channels // heads, (h + 1) * channels // heads)
            weights = torch.softmax(q[..., part] @ k[..., part].transpose(-1, -2) / math.sqrt(channels // heads), -1)
            head_outputs.append(weights @ v[..., part])
        attended = local_block.out(torch.cat(head_outputs, dim=-1))
        local[region] = attended.reshape(tokens[region].shape)
        position_weights = torch.softmax(block.aggregation.weights(attended.mean(dim=1)), dim=-1)  # (B, T)
        summaries[(slice(None), *window_index)] = (position_weights[..., None] * attended).sum(dim=1)
    global_tokens = gaussian_axial_reference(block.global_attention, summaries)
    mode = {2: "bilinear", 3: "trilinear"}[len(grid)]
    upsampled = F.interpolate(global_tokens.movedim(-1, 1), size=tuple(grid), mode=mode, align_corners=True)
    return block.fusion(torch.cat((upsampled.movedim(1, -1), local), dim=-1))
