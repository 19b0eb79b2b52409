"""MCANet (Shao et al., "MCANet: Medical Image Segmentation with Multi-Scale Cross-Axis Attention") on an
nnU-Net plan.

The MCA decode head sits on nnU-Net's planned encoder (plain or ResEnc) instead of MSCAN: the deepest
stages (E2..E4: the last ``min(3, n_stages - 2)`` levels) are resized to E2's grid, concatenated and
squeezed by a 1x1 conv to E2's channels, pass one MCA block, are upsampled to the level above (E1),
concatenated with E1 and fused by two depthwise-separable convolutions and a 1x1 conv. From E1's level
nnU-Net-style decoder stages (transposed conv, skip, convs) carry the result to full resolution.

Deep supervision: one segmentation output per level from E1's up to full resolution, highest first;
deeper levels have none (the head has no outputs there). ``deep_supervision_levels(n_stages)`` says how
many, and ``nnUNetTrainerMCANet`` restricts nnU-Net's deep-supervision scales to them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import get_matching_convtransp
from torch import nn

from .blocks.cross_axis_attention import MultiScaleCrossAxisAttention
from .blocks.heads import heads_for
from .blocks.interpolation import resize_linear
from .blocks.separable_conv import depthwise_separable_conv
from .plan import UNetPlan


def head_levels(n_stages: int) -> tuple[list[int], int]:
    """(deep levels E2..E4 fed to the MCA block, the shallow level E1 it is fused with)."""
    if n_stages < 3:
        raise ValueError(f"MCANet needs a plan with at least 3 stages (n_stages={n_stages}); plan a larger patch")
    deep = list(range(n_stages - min(3, n_stages - 2), n_stages))
    return deep, deep[0] - 1


def deep_supervision_levels(n_stages: int) -> int:
    """Segmentation outputs with deep supervision on: one per level from E1's up to full resolution."""
    return head_levels(n_stages)[1] + 1


class MCAHead(nn.Module):
    """Encoder skips -> fused features ``(B, C_E1, *S_E1)`` at E1's level (see the module docstring)."""

    def __init__(self, plan: UNetPlan, heads: int, strip_lengths: Sequence[int]):
        super().__init__()
        features = plan.features_per_stage
        self.deep_levels, self.shallow_level = head_levels(plan.n_stages)
        squeeze_channels = features[self.deep_levels[0]]
        shallow_channels = features[self.shallow_level]
        self.squeeze = plan.conv_norm_nonlin(sum(features[s] for s in self.deep_levels), squeeze_channels)
        self.cross_axis_attention = MultiScaleCrossAxisAttention(
            plan.conv_op, squeeze_channels, heads_for(squeeze_channels, heads), strip_lengths
        )
        self.fuse = nn.Sequential(
            depthwise_separable_conv(plan, squeeze_channels + shallow_channels, shallow_channels, 3),
            depthwise_separable_conv(plan, shallow_channels, shallow_channels, 3),
        )
        self.align = plan.conv_norm_nonlin(shallow_channels, shallow_channels)

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        common = skips[self.deep_levels[0]].shape[2:]
        deep = self.squeeze(torch.cat([resize_linear(skips[s], common) for s in self.deep_levels], dim=1))
        deep = self.cross_axis_attention(deep)
        shallow = skips[self.shallow_level]
        fused = self.fuse(torch.cat((resize_linear(deep, shallow.shape[2:]), shallow), dim=1))
        return self.align(fused)


class MCADecoder(nn.Module):
    """MCA head, then nnU-Net decoder stages from E1's level to full resolution, with segmentation heads.

    ``deep_supervision`` is what nnU-Net's ``set_deep_supervision_enabled`` toggles. Output: logits
    ``(B, classes, *patch)``, or the list over levels E1..0 reversed (highest resolution first).
    """

    def __init__(self, plan: UNetPlan, num_classes: int, deep_supervision: bool, heads: int,
                 strip_lengths: Sequence[int]):
        super().__init__()
        features = plan.features_per_stage
        self.deep_supervision = deep_supervision
        self.head = MCAHead(plan, heads, strip_lengths)
        shallow = self.head.shallow_level
        transpconv_op = get_matching_convtransp(plan.conv_op)
        # up-step s goes from level shallow - s to level shallow - s - 1
        levels = list(range(shallow - 1, -1, -1))
        self.transpconvs = nn.ModuleList(
            transpconv_op(features[level + 1], features[level], plan.strides[level + 1], plan.strides[level + 1],
                          bias=plan.conv_bias)
            for level in levels
        )
        self.stages = nn.ModuleList(plan.decoder_convs_at(level, 2 * features[level]) for level in levels)
        # built for every level whether deep supervision is on or not, so weights always load
        self.seg_layers = nn.ModuleList(
            plan.conv_op(features[level], num_classes, 1, 1, 0, bias=True) for level in [shallow, *levels]
        )

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        features = self.head(skips)
        outputs = [self.seg_layers[0](features)] if self.deep_supervision else []
        for s, (transpconv, stage) in enumerate(zip(self.transpconvs, self.stages)):
            level = self.head.shallow_level - 1 - s
            features = stage(torch.cat((transpconv(features), skips[level]), dim=1))
            if self.deep_supervision or level == 0:
                outputs.append(self.seg_layers[s + 1](features))
        return outputs[::-1] if self.deep_supervision else outputs[-1]


class MCANet(nn.Module):
    """nnU-Net's planned encoder with the MCA decode head carried to full resolution.

    Args:
        plan: the configuration's plan.
        input_channels, num_classes, deep_supervision: as every architecture here.
        heads: MCA heads at most (reduced to a divisor of E2's channels).
        strip_lengths: MCA strip convolution lengths (paper: 7, 11, 21).
    """

    def __init__(
        self,
        plan: UNetPlan,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        heads: int = 8,
        strip_lengths: Sequence[int] = (7, 11, 21),
    ):
        super().__init__()
        self.plan = plan
        self.encoder = plan.build_encoder(input_channels)
        self.decoder = MCADecoder(plan, num_classes, deep_supervision, heads, strip_lengths)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder(x))

    def initialize(self, module: nn.Module) -> None:
        self.plan.initialize(module)
