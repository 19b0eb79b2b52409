"""The network: nnU-Net's planned encoder and decoder (through nnunet-attention's ``UNetPlan`` view and
``HookedUNetDecoder``), with an scSE block on every skip before it is concatenated.

scSE (Roy et al., "Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks", MICCAI
2018) recalibrates a feature map ``U`` twice and adds the two: cSE ``U * sigmoid(W2 relu(W1 mean(U)))`` (channel
weights from the spatially averaged map, reduction 2 as the paper's segmentation networks use) and sSE
``U * sigmoid(conv1x1(U))`` (one spatial map). The sSE map ``(B, 1, *S)`` in [0, 1] is the attention map
``nnunet-attention attention-maps`` exports, named by the skip's level.
"""

from __future__ import annotations

import torch
from nnunet_attention.architectures.blocks.attention_probe import AttentionProbe, name_attention_maps
from nnunet_attention.architectures.decoder import HookedUNetDecoder
from nnunet_attention.architectures.plan import UNetPlan
from nnunet_attention.architectures.planned_network import PlannedNetwork
from torch import nn


class ConcurrentSqueezeExcitation(nn.Module):
    """scSE on a ``(B, C, *S)`` skip; the decoder's gating signal is not used (the block reads the skip alone)."""

    def __init__(self, conv_op: type[nn.Module], channels: int, reduction: int = 2):
        super().__init__()
        self.channel_squeeze = nn.Sequential(
            conv_op(channels, max(1, channels // reduction), 1), nn.ReLU(inplace=True),
            conv_op(max(1, channels // reduction), channels, 1), nn.Sigmoid())
        self.spatial_squeeze = nn.Sequential(conv_op(channels, 1, 1), nn.Sigmoid())
        self.spatial_probe = AttentionProbe("sSE spatial excitation, in [0, 1]")

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        spatial_axes = tuple(range(2, skip.ndim))
        channel_weights = self.channel_squeeze(skip.mean(dim=spatial_axes, keepdim=True))
        spatial_weights = self.spatial_probe(self.spatial_squeeze(skip))
        return skip * channel_weights + skip * spatial_weights


class SCSEUNet(PlannedNetwork):
    """nnU-Net's planned U-Net (any stages, strides, 2D or 3D, plain or ResEnc encoder, deep supervision) with
    scSE on each skip. ``(B, input_channels, *patch)`` -> logits ``(B, num_classes, *patch)`` or nnU-Net's
    deep-supervision list."""

    def __init__(self, plan: UNetPlan, input_channels: int, num_classes: int, deep_supervision: bool = False):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        self.encoder = plan.build_encoder(input_channels)
        skip_filters = []
        for level in range(plan.n_stages - 2, -1, -1):  # decoder order: the deepest skip first
            block = ConcurrentSqueezeExcitation(plan.conv_op, plan.features_per_stage[level])
            name_attention_maps(block, f"scse_level{level}")
            skip_filters.append(block)
        self.decoder = HookedUNetDecoder(plan, self.encoder, num_classes, deep_supervision, skip_filters=skip_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder(x))
