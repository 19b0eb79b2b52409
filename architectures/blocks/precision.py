"""Numerics shared by the attention blocks."""

import torch


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if it is fp16/bf16 (their softmaxes overflow or lose the tail); float64 stays."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def stable_softmax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax computed in at least float32, returned in the input's dtype."""
    return at_least_float32(scores).softmax(dim=dim).to(scores.dtype)
