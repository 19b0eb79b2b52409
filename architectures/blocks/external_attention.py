"""Multi-head external attention (Guo et al. 2021, as used in MT-UNet's MTM, Wang et al. ICASSP 2022 Sec. 2.3).

Tokens attend to a small learnable memory shared by all samples (two linear layers M_k, M_v) instead of
to each other, so the cost is linear in the number of tokens. Double normalisation: softmax over the
tokens, then L1 over the memory slots.
"""

from __future__ import annotations

import torch
from torch import nn

from .precision import at_least_float32


class ExternalAttention(nn.Module):
    """Args: ``dim`` C, ``heads`` (C divisible by it), ``memory_slots`` per head (paper: 64), ``expansion``
    of the query projection (paper: 4; the heads are multiplied by it, so each keeps C / heads channels).

    Forward: ``(B, N, C)`` -> ``(B, N, C)``. The normalisations run in at least float32 (a softmax over all tokens
    overflows fp16 easily).
    """

    def __init__(self, dim: int, heads: int, memory_slots: int = 64, expansion: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"channels {dim} must be divisible by heads {heads}")
        self.heads = heads * expansion
        head_dim = dim // heads
        self.query = nn.Linear(dim, dim * expansion)
        self.memory_key = nn.Linear(head_dim, memory_slots)
        self.memory_value = nn.Linear(memory_slots, head_dim)
        self.projection = nn.Linear(dim * expansion, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, n_tokens, _ = tokens.shape
        queries = self.query(tokens).view(batch, n_tokens, self.heads, -1).transpose(1, 2)  # (B, H, N, d)
        scores = self.memory_key(queries)  # (B, H, N, slots)
        attention = at_least_float32(scores).softmax(dim=-2)
        attention = attention / (1e-9 + attention.sum(dim=-1, keepdim=True))
        read = self.memory_value(attention.to(scores.dtype))  # (B, H, N, d)
        return self.projection(read.transpose(1, 2).reshape(batch, n_tokens, -1))
