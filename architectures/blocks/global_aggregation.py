"""Global aggregation block of the Non-local U-Nets (Wang, Zou, Shen, Ji, AAAI 2020, Sec. 3.1; official
divelab/Non-local-U-Nets ``utils/attention.py``: ``multihead_attention_3d``), N-D.

Queries, keys and values are convolutions of the input to the full ``channels`` (keys and values 1x1; the query
1x1 for the *same* block, a transposed 3x3 convolution with stride ``up_stride`` for the *up-sampling* block),
split into heads; each query attends over every position of the input with ``softmax(q kᵀ / sqrt(channels /
heads))`` (the official code scales q by ``key_filters_per_head ** -0.5``), dropout on the attention weights in
training (official rate 0.5), heads concatenated, and a 1x1 output convolution with bias. Keys and values are not
pooled. The output lies on the query's grid, so the up-sampling block upsamples *by attention*.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import get_matching_convtransp
from torch import nn

from .attention_probe import NON_NEGATIVE, AttentionProbe


def upsampling_transpconv(conv_op: type[nn.Module], in_channels: int, out_channels: int, stride: Sequence[int],
                          bias: bool) -> nn.Module:
    """A transposed 3x3 conv for a per-axis ``stride`` of 1 or 2 (nnU-Net's planner writes no other), the
    kernel and stride of the official ``Deconv3D(kernel 3, stride 2, 'same')``: ``(B, in, *S)`` ->
    ``(B, out, *S * stride)``.

    Aligned as PyTorch aligns it (``padding=1, output_padding=stride - 1``), not as TensorFlow's 'same': along an
    axis of stride 2 input voxel ``i``'s centre tap lands on output voxel ``2i`` here and on ``2i + 1`` in the
    official code, so the output is TensorFlow's shifted by one fine voxel (same weights; no shift on axes of
    stride 1)."""
    if any(s not in (1, 2) for s in stride):
        raise ValueError(f"the up-sampling block takes strides of 1 or 2 per axis, got {list(stride)}")
    return get_matching_convtransp(conv_op)(in_channels, out_channels, 3, tuple(stride), padding=1,
                                            output_padding=tuple(s - 1 for s in stride), bias=bias)


class GlobalAggregation(nn.Module):
    """``(B, C_in, *S)`` -> ``(B, channels, *S_q)``; ``S_q = S`` or, with ``up_stride``, ``S * up_stride``.

    Args:
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d``.
        in_channels: C_in.
        channels: of queries, keys, values and output (the official blocks use one width for all four).
        heads: attention heads (divide ``channels``).
        up_stride: None for the *same* block; the per-axis stride of the *up-sampling* block's query.
        attention_dropout: dropout on the attention weights in training (official: 0.5).

    The response ``(B, channels, *S_q)`` passes ``attention_probe`` (summary: RMS over channels). The key
    convolution's bias adds ``q·b`` to all of a query's scores alike, so the softmax cancels it (zero gradient;
    kept, as the official ``use_bias=True``).
    """

    def __init__(self, conv_op: type[nn.Module], in_channels: int, channels: int, heads: int,
                 up_stride: Sequence[int] | None = None, attention_dropout: float = 0.5):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} must be divisible by heads {heads}")
        if not 0 <= attention_dropout < 1:
            raise ValueError(f"attention_dropout must be in [0, 1), got {attention_dropout}")
        self.heads = heads
        self.attention_dropout = attention_dropout
        self.query = (conv_op(in_channels, channels, 1) if up_stride is None
                      else upsampling_transpconv(conv_op, in_channels, channels, up_stride, bias=True))
        self.key = conv_op(in_channels, channels, 1)
        self.value = conv_op(in_channels, channels, 1)
        self.output = conv_op(channels, channels, 1)
        self.attention_probe = AttentionProbe(
            "global aggregation block: its response; summary: RMS over channels, >= 0",
            channel_summary="rms", value_range=NON_NEGATIVE)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, heads, N, C / heads)
            return t.reshape(t.shape[0], self.heads, t.shape[1] // self.heads, -1).transpose(2, 3)

        query = self.query(features)
        attended = F.scaled_dot_product_attention(  # scale 1/sqrt(C / heads): SDPA's default
            heads(query), heads(self.key(features)), heads(self.value(features)),
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        attended = attended.transpose(2, 3).reshape(query.shape)
        return self.attention_probe(self.output(attended))
