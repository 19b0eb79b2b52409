"""Multi-scale cross-axis attention (MCA) of MCANet (Shao et al., "MCANet: Medical Image Segmentation with
Multi-Scale Cross-Axis Attention", Sec. 3), N-D.

Per spatial axis one path: the channel-LayerNormed input through depthwise strip convolutions of lengths
7, 11 and 21 along that axis, summed, then a 1x1 projection shared by all paths. Cross-axis attention:
the attention whose tokens run along axis ``a`` takes its query from axis ``a``'s path and its keys and
values from the next axis' path (pairing ``a -> a + 1``, cyclic over ``axes``); each token's features are
its channels (per head) times every other spatial position. q and k are L2-normalised, the (normalised)
query is added back to the attention output, every output goes through the shared projection, and the
input is added.

In 2D with ``axes=(0, 1)`` this is the authors' block: rows attend with the row path's query over the
column path's keys/values, columns the other way round. In 3D the cyclic pairing runs 0 -> 1 -> 2 -> 0;
restricted to ``axes=(1, 2)`` on a depth-1 volume it reproduces the 2D block exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn

from ..attention_removal import ResidualAttention
from .attention_probe import AttentionProbe
from .depthwise import depthwise_strip, summed_strips
from .precision import stable_softmax


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``(B, C, *S)`` at every position (with bias, as the authors' 'WithBias')."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(features.movedim(1, -1)).movedim(-1, 1)


def strip_kernel(length: int, axis: int, spatial_dims: int) -> tuple[int, ...]:
    """Kernel shape of a strip of ``length`` along ``axis`` (1 along every other axis)."""
    return tuple(length if a == axis else 1 for a in range(spatial_dims))


class MultiScaleCrossAxisAttention(ResidualAttention):
    """MCA block: ``(B, C, *S)`` -> ``(B, C, *S)``.

    Args:
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d``.
        dim: channels C (divisible by ``heads``).
        heads: attention heads.
        strip_lengths: strip convolution lengths per axis (paper: 7, 11, 21), odd. Strips longer than an
            axis are zero-padded 'same' convolutions: only the taps that overlap the grid contribute, and only
            those are applied. The strips of one axis, whose outputs are summed, run as one convolution with the
            sum of their kernels (:func:`~.depthwise.summed_strips`, :func:`~.depthwise.depthwise_strip`).
        axes: the spatial axes with a path (default: all); the pairing is cyclic over them.

    The row-wise attention weights, averaged over heads and queries (the mean weight each index along the
    axis receives), are exposed per axis through ``attention_probes[i]`` as a spatial map ``(B, 1, *S)``,
    constant along the other axes (the attention has one weight per index pair along its axis).
    """

    def __init__(
        self,
        conv_op: type[nn.Module],
        dim: int,
        heads: int,
        strip_lengths: Sequence[int] = (7, 11, 21),
        axes: Sequence[int] | None = None,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"channels {dim} must be divisible by heads {heads}")
        if any(length < 1 or length % 2 == 0 for length in strip_lengths):
            raise ValueError(f"strip lengths {list(strip_lengths)} must be odd and positive ('same' padding)")
        spatial_dims = convert_conv_op_to_dim(conv_op)
        self.axes = tuple(range(spatial_dims)) if axes is None else tuple(axes)
        if len(self.axes) < 2 or not all(0 <= a < spatial_dims for a in self.axes):
            raise ValueError(f"axes {list(self.axes)} must name at least two of the {spatial_dims} spatial axes")
        self.heads = heads
        self.norm = ChannelLayerNorm(dim)
        self.strips = nn.ModuleList(
            nn.ModuleList(
                conv_op(dim, dim, strip_kernel(length, axis, spatial_dims),
                        padding=tuple((k - 1) // 2 for k in strip_kernel(length, axis, spatial_dims)), groups=dim)
                for length in strip_lengths
            )
            for axis in self.axes
        )
        self.project_out = conv_op(dim, dim, 1)
        self.attention_probes = nn.ModuleList(
            AttentionProbe(f"MCA attention along spatial axis {axis}: mean weight each index along the axis receives "
                           f"(constant along the other axes), in [0, 1]")
            for axis in self.axes
        )

    def _attend_along(
        self, query_map: torch.Tensor, key_value_map: torch.Tensor, axis: int, probe: AttentionProbe
    ) -> torch.Tensor:
        """Attention with tokens along spatial ``axis``; features = channels per head x all other positions.

        Written out rather than through SDPA: the sequence is one axis long (tens of tokens) while a token
        has thousands of features, beyond what fused SDPA kernels take, and the small ``(L, L)`` weights
        are what the probe exposes. The softmax runs in float32.
        """
        batch, channels = query_map.shape[:2]
        spatial_dims = query_map.ndim - 2

        def tokens(features: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, heads, length, features)
            split = features.reshape(batch, self.heads, channels // self.heads, *features.shape[2:])
            return split.movedim(3 + axis, 2).flatten(3)

        query = F.normalize(tokens(query_map), dim=-1)
        key = F.normalize(tokens(key_value_map), dim=-1)
        value = tokens(key_value_map)
        weights = stable_softmax(query @ key.transpose(-1, -2), dim=-1)
        received = weights.mean(dim=(1, 2))  # (B, L): mean weight each index along the axis receives
        profile = received.reshape(batch, 1, *[received.shape[-1] if a == axis else 1 for a in range(spatial_dims)])
        probe(profile.expand(batch, 1, *query_map.shape[2:]))
        attended = weights @ value + query
        # back to (B, C, *S): undo flatten and movedim
        moved_shape = [batch, self.heads, query_map.shape[2 + axis], channels // self.heads]
        moved_shape += [s for a, s in enumerate(query_map.shape[2:]) if a != axis]
        return attended.reshape(moved_shape).movedim(2, 3 + axis).reshape(query_map.shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        normed = self.norm(features)
        paths = [
            self.project_out(depthwise_strip(normed, *summed_strips(strips), axis))
            for axis, strips in zip(self.axes, self.strips)
        ]
        attended = sum(
            self._attend_along(paths[i], paths[(i + 1) % len(self.axes)], axis, self.attention_probes[i])
            for i, axis in enumerate(self.axes)
        )
        # Σ_i project_out(attended_i) as one 1x1 conv of the sum (it is affine): one conv at the attention grid
        # instead of one per axis, the same values up to float rounding
        return features + self.project_out(attended) + (len(self.axes) - 1) * self.project_out.bias.view(
            1, -1, *([1] * (features.ndim - 2)))

