"""Embedded-Gaussian non-local block (Wang et al., "Non-local Neural Networks", CVPR 2018), N-D.

``z = x + norm(W y)`` with ``y_i = Σ_j softmax_j(θ(x_i)ᵀ φ(x)_j) g(x)_j``: θ, φ, g are 1x1 convolutions to
``C · reduction`` channels, φ and g are max-pooled (keys and values subsampled, the paper's cheaper variant),
and the norm after the output projection W starts with zero weight and bias so the block starts as the
identity. The attention is ``scaled_dot_product_attention`` with scale 1 (the embedded Gaussian has no
``1/sqrt(d)``), so the GPU runs fused kernels and the softmax accumulates in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn

from .attention_probe import NON_NEGATIVE, AttentionProbe

MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


class ChannelScale(nn.Module):
    """Per-channel scale ``(B, C, *S) * s[C]``: the zero-initialised output gate where the plan has no affine norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features * self.weight.view(1, -1, *([1] * (features.ndim - 2)))


class NonLocalBlock(nn.Module):
    """Non-local block: ``(B, C, *S)`` -> ``(B, C, *S)``, the identity at initialisation.

    Args:
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d``.
        channels: C.
        norm_op, norm_op_kwargs: the plan's norm, applied after W with its affine weight and bias zeroed
            (without an affine norm a zero-initialised per-channel scale takes its place).
        reduction: inner channels as a fraction of C (paper: 1/2).
        subsample: max-pool factor of keys and values along each axis (paper: 2); an axis shorter than
            the factor is pooled over its whole length (ceil mode keeps odd lengths whole).

    The probe ``attention_probe`` exposes the response the block adds, ``norm(W y)`` as ``(B, C, *S)``: its
    norm over channels shows where the non-local context changes the features (zero at initialisation).
    φ's bias adds ``θ·b`` to all of a position's scores alike, so the softmax cancels it (zero gradient; kept,
    as in the paper's 1x1 convolutions).
    """

    def __init__(
        self,
        conv_op: type[nn.Module],
        channels: int,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict | None = None,
        reduction: float = 0.5,
        subsample: int = 2,
    ):
        super().__init__()
        if not 0 < reduction <= 1:
            raise ValueError(f"reduction must be in (0, 1], got {reduction}")
        if subsample < 1:
            raise ValueError(f"subsample must be at least 1, got {subsample}")
        self.spatial_dims = convert_conv_op_to_dim(conv_op)
        inner = max(1, round(channels * reduction))
        self.subsample = subsample
        self.theta = conv_op(channels, inner, 1)
        self.phi = conv_op(channels, inner, 1)
        self.g = conv_op(channels, inner, 1)
        self.project_out = conv_op(inner, channels, 1)
        norm = norm_op(channels, **(norm_op_kwargs or {})) if norm_op is not None else None
        if norm is None or getattr(norm, "weight", None) is None:
            norm = nn.Sequential(*([norm] if norm is not None else []), ChannelScale(channels))
        self.output_norm = norm
        self.zero_output_gate()
        self.attention_probe = AttentionProbe(
            "non-local block: the response it adds to the features; summary: its RMS over channels, >= 0",
            channel_summary="rms", value_range=NON_NEGATIVE)

    def zero_output_gate(self) -> None:
        """Set the output norm's affine weight and bias (or the channel scale) to 0: the block is the identity."""
        for module in self.output_norm.modules():
            for name in ("weight", "bias"):
                parameter = getattr(module, name, None)
                if isinstance(parameter, nn.Parameter):
                    nn.init.zeros_(parameter)

    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        if self.subsample == 1:
            return features
        kernel = tuple(min(self.subsample, n) for n in features.shape[2:])
        return MAX_POOLS[self.spatial_dims](features, kernel, kernel, ceil_mode=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, C', *S') -> (B, 1, S', C')
            return t.flatten(2).transpose(1, 2)[:, None]

        query = tokens(self.theta(features))
        key = tokens(self._pool(self.phi(features)))
        value = tokens(self._pool(self.g(features)))
        attended = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # (B, 1, S, C')
        attended = attended[:, 0].transpose(1, 2).reshape(features.shape[0], -1, *features.shape[2:])
        response = self.attention_probe(self.output_norm(self.project_out(attended)))
        return features + response
