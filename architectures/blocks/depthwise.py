"""Depthwise convolutions, computed where PyTorch is fast: the same values and parameters, other kernels.

On the CPU, PyTorch's depthwise ``Conv3d`` and its depthwise ``Conv2d`` with a kernel along the last axis train
several times slower than a depthwise ``Conv2d`` with its kernel along the second-to-last axis over the same data
(2-core CPU, forward and backward, float32: a 21-tap strip along each axis of ``(2, 256, 10, 64, 56)`` 1.0-1.8 s
as ``Conv3d``, 0.3 s as below; a 3x3x3 depthwise conv of ``(2, 384, 10, 64, 56)`` 2.0 s as ``Conv3d``, 1.0 s as
three 2D ones; a 21-tap strip along the last axis of ``(2, 256, 64, 56)`` 41 ms, 8-15 ms as below). So on the
CPU:

- a strip (a 1D kernel along one spatial axis) is a 2D depthwise convolution of a view: the axes before it
  folded into the channels, the axes after it into one trailing axis, the kernel along the second-to-last axis
  (its weight repeated per folded plane); a strip along the last axis first swaps it with the one before;
- a 3D depthwise kernel ``(kD, kH, kW)`` is the sum over its ``kD`` depth taps of 2D depthwise convolutions of
  the depth slices, each shifted along depth.

On other devices (and for the planner's fake tensors, :mod:`.cpu_kernels`) the ``ConvNd`` runs as it is. The
parameters stay the modules' own, so checkpoints, gradients and ``-pretrained_weights`` are unchanged;
``tests/test_depthwise.py`` holds both forms equal in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .cpu_kernels import computed_on_cpu

CONV_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def summed_strips(strips: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Several 'same'-padded depthwise strips along one axis (odd lengths) whose outputs are summed, as one strip:
    the sum of their kernels, each zero-padded at both ends to the longest, ``(C, k_max)``, and of their biases.
    The sum of the convolutions is the convolution with the summed kernel (convolution is linear in the kernel), so
    one convolution computes what the strips compute, from the strips' own parameters (their gradients are the
    summed kernel's, narrowed back)."""
    taps = [strip.weight.flatten(1) for strip in strips]  # (C, 1, *kernel), 1 but along the strip -> (C, k)
    longest = max(t.shape[1] for t in taps)
    kernel = sum(F.pad(t, ((longest - t.shape[1]) // 2,) * 2) for t in taps)
    biases = [strip.bias for strip in strips if strip.bias is not None]
    return kernel, (sum(biases) if biases else None)


def depthwise_strip(features: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                    axis: int) -> torch.Tensor:
    """'Same'-padded depthwise convolution of ``(B, C, *S)`` along spatial ``axis`` with ``kernel`` ``(C, k)``
    (``k`` odd) and ``bias`` ``(C,)``: ``(B, C, *S)``.

    Only the central ``2n - 1`` taps can meet an axis of ``n`` voxels; the others see only the zero padding, so
    they are left out (same output; zero gradient for them, as they would get). This also avoids paddings wider
    than the axis, where PyTorch's CPU bf16 depthwise Conv3d on channels-last input returns garbage weight
    gradients (seen with torch 2.x: kernel >= 2n + 3)."""
    length = features.shape[2 + axis]
    keep = min(kernel.shape[1], 2 * length - 1)
    kernel = kernel.narrow(1, (kernel.shape[1] - keep) // 2, keep)
    spatial_dims = features.ndim - 2
    if not computed_on_cpu(features) or spatial_dims == 1:
        shape = [keep if a == axis else 1 for a in range(spatial_dims)]
        padding = [(keep - 1) // 2 if a == axis else 0 for a in range(spatial_dims)]
        return CONV_FUNCTIONS[spatial_dims](features, kernel.view(kernel.shape[0], 1, *shape), bias,
                                            padding=padding, groups=kernel.shape[0])
    last = axis == spatial_dims - 1
    moved = features.transpose(-1, -2) if last else features
    rows = axis - 1 if last else axis  # the strip's axis in ``moved``, never its last one
    grid = moved.shape[2:]
    folded = math.prod(grid[:rows])
    planes = moved.reshape(moved.shape[0], moved.shape[1] * folded, grid[rows], math.prod(grid[rows + 1:]))
    out = F.conv2d(planes, kernel.repeat_interleave(folded, 0)[:, None, :, None],
                   None if bias is None else bias.repeat_interleave(folded), padding=((keep - 1) // 2, 0),
                   groups=planes.shape[1]).view(moved.shape)
    return out.transpose(-1, -2) if last else out


class DepthwiseConv3d(nn.Conv3d):
    """``nn.Conv3d`` for a depthwise kernel (``groups`` = in = out channels, stride 1, 'same' padding of an odd
    kernel), computed on the CPU as depth-shifted 2D depthwise convolutions (module docstring); parameters,
    names and values as ``nn.Conv3d``'s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        same = tuple((k - 1) // 2 for k in self.kernel_size)
        if not (groups == in_channels == out_channels and self.stride == (1, 1, 1) and self.dilation == (1, 1, 1)
                and all(k % 2 for k in self.kernel_size) and self.padding == same and padding_mode == "zeros"):
            raise ValueError(f"DepthwiseConv3d computes depthwise 'same' convolutions of odd kernels at stride 1; "
                             f"got {in_channels} -> {out_channels} channels in {groups} groups, kernel "
                             f"{self.kernel_size}, stride {self.stride}, padding {self.padding}")

    def _conv_forward(self, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not computed_on_cpu(features):
            return super()._conv_forward(features, weight, bias)
        batch, channels, depth, height, width = features.shape
        planes = features.reshape(batch, channels * depth, height, width)
        reach = (self.kernel_size[0] - 1) // 2
        out = None
        for tap in range(self.kernel_size[0]):
            shift = tap - reach  # output slice d reads input slice d + shift
            if abs(shift) >= depth:  # reads only the zero padding
                continue
            taps = weight[:, :, tap].repeat_interleave(depth, 0)
            tap_bias = None if bias is None or shift else bias.repeat_interleave(depth)
            slices = F.conv2d(planes, taps, tap_bias, padding=self.padding[1:], groups=channels * depth)
            slices = slices.view(batch, channels, depth, height, width)
            if shift:  # zero where d + shift leaves the volume
                slices = F.pad(slices[:, :, max(shift, 0):depth + min(shift, 0)],
                               (0, 0, 0, 0, max(-shift, 0), max(shift, 0)))
            out = slices if out is None else out + slices
        return out
