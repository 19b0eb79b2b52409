"""Blocks of the multi-scale self-guided attention network (Sinha & Dolz, IEEE JBHI 2020), N-D.

- :class:`PositionAttention` / :class:`ChannelAttention`: DANet's position and channel attention modules as
  the authors use them (query/key at C/8, no ``1/sqrt(d)``, learnable ``gamma`` starting at 0; channel
  attention with the "max minus energy" trick, no projections).
- :class:`DualAttention`: conv-norm-nonlin from the step input (2C) to C, PAM or CAM, conv-norm-nonlin.
- :class:`SemanticAutoencoder`: the semantic-guidance autoencoder (two encoder blocks of two convs and a
  max-pool, two decoder blocks of two convs and a transposed conv; channels 2C -> 4C -> 8C -> 4C -> 2C,
  no skip connections); it returns its latent code and its reconstruction of the input. Its pooling strides
  adapt per axis and only its final reconstruction is resized (see the class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import (
    get_matching_convtransp,
    get_matching_pool_op,
)
from torch import nn

from ..attention_removal import ResidualAttention
from .interpolation import resize_linear
from .precision import at_least_float32


class PositionAttention(ResidualAttention):
    """DANet position attention: ``x + gamma * V softmax(QᵀK)ᵀ`` over all positions, ``(B, C, *S)`` -> same.

    Through ``scaled_dot_product_attention`` with scale 1 (the authors do not scale), so the GPU runs fused
    kernels whose memory is linear in the positions and whose softmax accumulates in float32. The key
    conv's bias cancels in the softmax (zero gradient; kept as in the authors' code).
    """

    def __init__(self, conv_op: type[nn.Module], channels: int, reduction: int = 8):
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = conv_op(channels, inner, 1)
        self.key = conv_op(channels, inner, 1)
        self.value = conv_op(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, C', *S) -> (B, 1, N, C')
            return t.flatten(2).transpose(1, 2)[:, None]

        attended = F.scaled_dot_product_attention(
            tokens(self.query(features)), tokens(self.key(features)), tokens(self.value(features)), scale=1.0
        )
        return self.gamma * attended[:, 0].transpose(1, 2).reshape(features.shape) + features



class ChannelAttention(ResidualAttention):
    """DANet channel attention: ``x + gamma * softmax(max(E) - E) X`` with ``E = X Xᵀ`` (C x C), in float32.

    The energy is a sum over all positions and overflows fp16, hence float32 with autocast off (C x C is small).
    """

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # autocast would run the matmuls in fp16/bf16 whatever their inputs are: switch it off here
        with torch.autocast(features.device.type, enabled=False):
            flat = at_least_float32(features.flatten(2))  # (B, C, N)
            energy = flat @ flat.transpose(1, 2)
            attention = (energy.amax(dim=-1, keepdim=True) - energy).softmax(dim=-1)
            attended = (attention @ flat).reshape(features.shape).to(features.dtype)
        return self.gamma * attended + features



class DualAttention(nn.Module):
    """The authors' PAM_CAM_Layer: ``(B, 2C, *S)`` -> conv-norm-nonlin to C -> PAM or CAM -> conv-norm-nonlin, with
    the ``plan``'s (:class:`~..plan.UNetPlan`) conv, norm and nonlinearity."""

    def __init__(self, plan, attention: nn.Module, in_channels: int, channels: int, kernel_size: Sequence[int]):
        super().__init__()
        self.reduce = plan.conv_norm_nonlin(in_channels, channels, kernel_size)
        self.attention = attention
        self.refine = plan.conv_norm_nonlin(channels, channels, kernel_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attention(self.reduce(features)))


class SemanticAutoencoder(nn.Module):
    """Semantic guidance: ``(B, C, *S)`` -> (latent ``(B, 4C, *S / pools)``, reconstruction ``(B, C, *S)``).

    Args:
        plan: the :class:`~..plan.UNetPlan` whose conv, norm and nonlinearity every conv block uses.
        channels: C, the step input's channels.
        kernel_size: of every conv.
        pool_strides: the two max-pool strides, per axis (see :func:`halving_strides`); the transposed convs
            undo them.

    Two departures from the authors' ``semanticModule`` (2D, ``MaxPool2d(2)`` along both axes), both for nnU-Net's
    anisotropic and odd-sized grids: the pooling strides adapt per axis (1 where an axis is shorter than 4, so no
    axis pools below 2 voxels), and only the final reconstruction is resized (linearly) to the input's size where
    odd sizes made it differ; the authors resize the decoder's intermediate map to the first encoder block's size
    and return the reconstruction unresized.
    """

    def __init__(self, plan, channels: int, kernel_size: Sequence[int], pool_strides: Sequence[Sequence[int]]):
        super().__init__()
        pool_op = get_matching_pool_op(plan.conv_op, pool_type="max")
        transpconv_op = get_matching_convtransp(plan.conv_op)

        def two_convs(c_in: int, c_mid: int) -> list[nn.Module]:
            return [plan.conv_norm_nonlin(c_in, c_mid, kernel_size), plan.conv_norm_nonlin(c_mid, c_mid, kernel_size)]

        first, second = (tuple(s) for s in pool_strides)
        self.encoder = nn.Sequential(
            *two_convs(channels, 2 * channels), pool_op(first, first),
            *two_convs(2 * channels, 4 * channels), pool_op(second, second),
        )
        self.decoder = nn.Sequential(
            *two_convs(4 * channels, 2 * channels), transpconv_op(2 * channels, 2 * channels, second, second),
            *two_convs(2 * channels, channels), transpconv_op(channels, channels, first, first),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encoder(features)
        reconstruction = self.decoder(latent)
        return latent, resize_linear(reconstruction, features.shape[2:])


def halving_strides(grid: Sequence[int], times: int) -> list[tuple[int, ...]]:
    """Per pooling step a stride of 2 along each axis at least 4 long, else 1: no axis drops below 2 voxels by
    pooling, so the latent keeps more than one voxel whenever the grid has (instance norm needs that)."""
    strides, current = [], list(grid)
    for _ in range(times):
        stride = tuple(2 if n >= 4 else 1 for n in current)
        current = [n // s for n, s in zip(current, stride)]
        strides.append(stride)
    return strides
