"""Depthwise-separable convolution with the plan's norm and nonlinearity (as mmcv's DepthwiseSeparableConvModule)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .depthwise import DepthwiseConv3d


def depthwise_separable_conv(
    plan, in_channels: int, out_channels: int, kernel_size: Sequence[int] | int
) -> nn.Sequential:
    """Depthwise ``kernel_size`` conv-norm-nonlin, then pointwise 1x1 conv-norm-nonlin, with the ``plan``'s
    (:class:`~..plan.UNetPlan`) conv, norm and nonlinearity: ``(B, in, *S)`` -> ``(B, out, *S)``. In 3D the
    depthwise conv is a :class:`~.depthwise.DepthwiseConv3d` (the same ``Conv3d``, computed faster on the CPU)."""
    depthwise_op = DepthwiseConv3d if plan.conv_op is nn.Conv3d else None
    return nn.Sequential(
        plan.conv_norm_nonlin(in_channels, in_channels, kernel_size, groups=in_channels, conv_op=depthwise_op),
        plan.conv_norm_nonlin(in_channels, out_channels),
    )
