"""Plan ``arch_kwargs`` shaped like nnU-Net's planner output, for the architecture test matrix."""

from __future__ import annotations

import math

from dynamic_network_architectures.building_blocks.helper import convert_dim_to_conv_op, get_matching_instancenorm
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from nnunet_attention.architectures import UNetPlan
from torch import nn

PATCH_MULTIPLIERS = {2: (3, 5), 3: (1, 1, 3)}


def make_plan(spatial_dims: int, n_stages: int, anisotropic: bool, residual: bool = False, max_features: int = 32):
    """Return ``(arch_kwargs, patch_size)`` for a U-Net plan with small features.

    Isotropic plans downsample every axis by 2 per stage (3D: the first axis at most 4 times, as nnU-Net
    stops when an axis gets small). Anisotropic plans start with ``[1, 2, 2]`` strides and kernels
    ``[1, 3, 3]`` on the first axis until the in-plane resolution has caught up. The patch is the total
    stride times ``PATCH_MULTIPLIERS``, so it is not a power of two and the smallest stage is 1-5 voxels.
    """
    max_downsamples = [n_stages - 1] * spatial_dims
    if spatial_dims == 3:
        max_downsamples[0] = min(n_stages - 1, 4)
    strides, counts = [[1] * spatial_dims], [0] * spatial_dims
    for stage in range(1, n_stages):
        stride = []
        for axis in range(spatial_dims):
            lagging = anisotropic and axis == 0 and stage <= 2
            stride.append(2 if counts[axis] < max_downsamples[axis] and not lagging else 1)
            counts[axis] += stride[-1] == 2
        strides.append(stride)
    # Anisotropic plans convolve in-plane only until the first axis' spacing has caught up (stages 0-1).
    kernels = [
        [1 if anisotropic and axis == 0 and stage < 2 else 3 for axis in range(spatial_dims)]
        for stage in range(n_stages)
    ]
    cumulative = [math.prod(stride[axis] for stride in strides) for axis in range(spatial_dims)]
    patch = [c * m for c, m in zip(cumulative, PATCH_MULTIPLIERS[spatial_dims])]
    return plan_from_layout(strides, kernels, residual, max_features), patch


def plan_from_layout(strides: list, kernels: list, residual: bool = False, max_features: int = 32) -> dict:
    """``arch_kwargs`` of a U-Net plan with these per-stage strides and kernels (one entry per stage), 4 base
    features doubling per stage up to ``max_features``, written as nnU-Net's planner writes them."""
    n_stages, spatial_dims = len(strides), len(strides[0])
    kwargs = dict(
        n_stages=n_stages,
        features_per_stage=[min(4 * 2**s, max_features) for s in range(n_stages)],
        conv_op=convert_dim_to_conv_op(spatial_dims),
        kernel_sizes=kernels,
        strides=strides,
        n_conv_per_stage_decoder=[1] * (n_stages - 1),
        conv_bias=True,
        norm_op=get_matching_instancenorm(dimension=spatial_dims),
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        dropout_op=None,
        dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
    )
    if residual:
        kwargs.update(n_blocks_per_stage=[1] + [2] * (n_stages - 1), block=BasicBlockD)
    else:
        kwargs["n_conv_per_stage"] = [2] * n_stages
    return kwargs


def make_unet_plan(spatial_dims: int, n_stages: int, anisotropic: bool, residual: bool = False,
                   max_features: int = 32) -> UNetPlan:
    """:func:`make_plan` as the typed plan every architecture takes."""
    return UNetPlan.from_arch_kwargs(*make_plan(spatial_dims, n_stages, anisotropic, residual, max_features))


#: (spatial_dims, n_stages, anisotropic) covering 2D/3D, isotropic/[1,2,2] strides and 4-7 stages
PLAN_MATRIX = [
    (dims, stages, aniso)
    for dims in (2, 3)
    for aniso in (False, True)
    for stages in (4, 5, 6, 7)
    if not (dims == 2 and aniso)
] + [(2, 5, True)]


#: lighter settings for the CPU test runs, per trainer, where the default network is too slow to run many
#: times on 2 cores: MSGA runs ~130 convolutions per step on the attention grid (an autoencoder at 2-8 x 64
#: channels and two attention branches per scale and step), seconds per step even on the demo's small 2d
#: plan. The default (64 channels, 4 scales) is exercised in test_msga.py and the benchmark.
NARROW_ARCHITECTURE_KWARGS = {"nnUNetTrainerMSGA": {"attention_channels": 8, "n_scales": 2}}
