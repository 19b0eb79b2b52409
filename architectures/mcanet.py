"""MCANet (Shao et al., "MCANet: Medical Image Segmentation with Multi-Scale Cross-Axis Attention") on an nnU-Net
plan: the MCA decode head of the authors' code (haoshao-nku/medical_seg, ``mmseg/models/decode_heads/MCANet.py``)
on nnU-Net's planned encoder in place of MSCAN.

1. Backbone levels E1..E4: the encoder stages downsampled 2, 3, 4 and 5 times (cumulative strides 4, 8, 16, 32
   of the input, per axis on anisotropic plans). The plan's deeper stages are not built (MSCAN ends at stride 32);
   a plan of fewer than 6 stages keeps E1 at stride 4 and has fewer deep levels (5 stages: E2, E3; 4 stages: E2
   only), so the MCA block always sees the paper's grid (on the 4-stage synthetic 3d plan, E1 at full resolution
   instead took 9.3x the plain U-Net's step time and 6x its memory). The widths that the official head takes
   from E4 come from the deepest level used.
2. E2, E3, E4 resized (linear) to E1's grid, concatenated, squeezed by a 1x1 conv-norm-nonlin to E2's channels.
3. The MCA block on E1's grid (:class:`~.blocks.cross_axis_attention.MultiScaleCrossAxisAttention`).
4. Concatenated with E1; two depthwise-separable 3x3 convs (to E4's channels, then E4 -> E4: the official
   widths relative to the backbone's); a 1x1 conv-norm-nonlin to E1's channels (``align``).
5. Dropout 0.1 and a 1x1 classifier at E1's grid; logits resized linearly to the patch (mmseg resizes them to
   the label size before the loss and at inference).

The plan's norm and nonlinearity replace the official GroupNorm(32) + ReLU. No decoder and no deep supervision:
the trainer switches nnU-Net's deep supervision off (Dice+CE on the one full-resolution output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import get_matching_dropout
from torch import nn

from .blocks.attention_probe import name_attention_maps
from .blocks.cross_axis_attention import MultiScaleCrossAxisAttention
from .blocks.heads import heads_for
from .blocks.interpolation import resize_linear
from .blocks.separable_conv import depthwise_separable_conv
from .plan import UNetPlan
from .planned_network import PlannedNetwork

#: cumulative stride of MSCAN's first stage (E1); E2..E4 follow at 8, 16, 32
E1_STRIDE = 4


def backbone_levels(plan: UNetPlan) -> tuple[int, ...]:
    """The levels E1..E4 (E1 first): E1 is the first level at a cumulative stride of 4 (along some axis), E2..E4
    the up to three levels below it. Plans whose stride-4 level is their deepest take the last two levels."""
    n_stages = plan.n_stages
    if n_stages < 2:
        raise ValueError(f"MCANet needs a plan of at least 2 stages (E1 and a deeper level), got {n_stages}")
    e1 = min(plan.first_level_at_stride(E1_STRIDE), n_stages - 2)
    return tuple(range(e1, min(e1 + 3, n_stages - 1) + 1))


class MCAHead(nn.Module):
    """Backbone levels ``[E1, E2, E3, E4]`` -> logits ``(B, classes, *S_E1)`` (see the module docstring)."""

    def __init__(self, plan: UNetPlan, levels: Sequence[int], num_classes: int, heads: int,
                 strip_lengths: Sequence[int], dropout: float):
        super().__init__()
        channels = [plan.features_per_stage[level] for level in levels]
        e1, e2, e4 = channels[0], channels[1], channels[-1]
        self.squeeze = plan.conv_norm_nonlin(sum(channels[1:]), e2)
        self.cross_axis_attention = MultiScaleCrossAxisAttention(plan.conv_op, e2, heads_for(e2, heads), strip_lengths)
        for axis, probe in zip(self.cross_axis_attention.axes, self.cross_axis_attention.attention_probes):
            name_attention_maps(probe, f"mca_axis{axis}")
        self.fuse = nn.Sequential(depthwise_separable_conv(plan, e2 + e1, e4, 3),
                                  depthwise_separable_conv(plan, e4, e4, 3))
        self.align = plan.conv_norm_nonlin(e4, e1)
        self.dropout = get_matching_dropout(dimension=plan.spatial_dims)(dropout)  # it ignores conv_op (DNA 0.4.4)
        # nnU-Net's name for the layers that give logits: -pretrained_weights skips them, so a model fine-tunes to
        # a dataset with another number of classes
        self.seg_layers = nn.ModuleList([plan.conv_op(e1, num_classes, 1)])

    def forward(self, backbone_features: Sequence[torch.Tensor]) -> torch.Tensor:
        e1 = backbone_features[0]
        deep = torch.cat([resize_linear(features, e1.shape[2:]) for features in backbone_features[1:]], dim=1)
        attended = self.cross_axis_attention(self.squeeze(deep))
        fused = self.align(self.fuse(torch.cat((attended, e1), dim=1)))
        return self.seg_layers[0](self.dropout(fused))


class MCANet(PlannedNetwork):
    """The planned encoder (up to stride 32) with the MCA decode head.

    Args:
        plan: the configuration's plan.
        input_channels, num_classes: from the dataset.
        deep_supervision: must be False (the paper's network has one output; the trainer turns nnU-Net's off).
        heads: MCA heads at most (official: 8; reduced to a divisor of E2's channels).
        strip_lengths: MCA strip convolution lengths (official: 7, 11, 21).
        dropout: before the classifier (official: 0.1).

    Forward: ``(B, input_channels, *patch)`` -> ``(B, num_classes, *patch)`` in training and evaluation. The MCA
    attention is exposed per spatial axis ``a`` as ``mca_axis{a}``.
    """

    supports_deep_supervision = False
    outputs_instead = "the paper's head has one output at E1's grid"

    def __init__(
        self,
        plan: UNetPlan,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        heads: int = 8,
        strip_lengths: Sequence[int] = (7, 11, 21),
        dropout: float = 0.1,
    ):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        self.backbone_levels = backbone_levels(plan)
        self.encoder = plan.first_stages(self.backbone_levels[-1] + 1).build_encoder(input_channels)
        self.head = MCAHead(plan, self.backbone_levels, num_classes, heads, strip_lengths, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encoder(x)
        logits = self.head([skips[level] for level in self.backbone_levels])
        return resize_linear(logits, x.shape[2:])
