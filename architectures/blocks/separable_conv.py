"""Depthwise-separable convolution with the plan's norm and nonlinearity (as mmcv's DepthwiseSeparableConvModule)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_norm_nonlin(
    conv_op: type[nn.Module], in_channels: int, out_channels: int, kernel_size: Sequence[int], groups: int,
    norm_op: type[nn.Module] | None, norm_op_kwargs: dict | None, nonlin: type[nn.Module] | None,
    nonlin_kwargs: dict | None,
) -> nn.Sequential:
    """Conv ('same' padding) -> norm -> nonlin, ``(B, in, *S)`` -> ``(B, out, *S)``."""
    layers = [conv_op(in_channels, out_channels, tuple(kernel_size), padding=tuple((k - 1) // 2 for k in kernel_size),
                      groups=groups)]
    if norm_op is not None:
        layers.append(norm_op(out_channels, **(norm_op_kwargs or {})))
    if nonlin is not None:
        layers.append(nonlin(**(nonlin_kwargs or {})))
    return nn.Sequential(*layers)


def depthwise_separable_conv(
    conv_op: type[nn.Module], in_channels: int, out_channels: int, kernel_size: Sequence[int], plan_kwargs: dict
) -> nn.Sequential:
    """Depthwise ``kernel_size`` conv-norm-nonlin, then pointwise 1x1 conv-norm-nonlin."""
    norm = (plan_kwargs.get("norm_op"), plan_kwargs.get("norm_op_kwargs"),
            plan_kwargs.get("nonlin"), plan_kwargs.get("nonlin_kwargs"))
    return nn.Sequential(
        conv_norm_nonlin(conv_op, in_channels, in_channels, kernel_size, in_channels, *norm),
        conv_norm_nonlin(conv_op, in_channels, out_channels, [1] * len(kernel_size), 1, *norm),
    )
