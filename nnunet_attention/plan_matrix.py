"""Plans shaped like nnU-Net's planner output, small enough to build and run many networks on a CPU: the matrix
the architecture contract (:mod:`.architecture_contract`) and the tests check every network on.

A plan is a layout (per-stage strides and kernels, plain or ResEnc) at 4 base features doubling per stage up to
32, and a patch that is its total stride times a small multiplier, so that it is no power of two and the deepest
stage is 1 to 5 voxels per axis.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the dataset of the matrix' plans: two input channels, three classes
INPUT_CHANNELS, NUM_CLASSES = 2, 3
#: the patch is the total stride times these, per spatial dimensionality
PATCH_MULTIPLIERS = {2: (3, 5), 3: (1, 1, 3)}


def plan_from_layout(strides: list, kernels: list, residual: bool = False, max_features: int = 32) -> dict:
    """``arch_kwargs`` of a U-Net plan with these per-stage strides and kernels (one entry per stage), 4 base
    features doubling per stage up to ``max_features``, one decoder conv per stage, with the op classes resolved
    (as nnU-Net hands them to the network); ResEnc's blocks where ``residual``."""
    from dynamic_network_architectures.building_blocks.helper import convert_dim_to_conv_op, get_matching_instancenorm
    from dynamic_network_architectures.building_blocks.residual import BasicBlockD
    from torch import nn

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


def patch_for_divisor(patch: list[int], strides: list, patch_divisor: int = 1) -> list[int]:
    """``patch`` of a plan with these per-stage ``strides``, rounded up to a multiple of ``patch_divisor`` (and of
    the total stride) for a network that needs one, as the planner rounds it; where that leaves one multiple along
    every axis (SwinUNETR's deepest grid would be a single voxel), the last axis takes two."""
    from nnunet_attention.architectures.plan import patch_multiples, rounded_up, total_strides

    multiples = patch_multiples(total_strides(strides), patch_divisor)
    fitted = rounded_up(patch, multiples)
    if patch_divisor > 1 and fitted == multiples:
        fitted[-1] *= 2
    return fitted


def make_plan(spatial_dims: int, n_stages: int, anisotropic: bool, residual: bool = False, max_features: int = 32,
              patch_divisor: int = 1):
    """``(arch_kwargs, patch_size)`` of a U-Net plan with small features.

    Isotropic plans downsample every axis by 2 per stage (3D: the first axis at most 4 times, as nnU-Net stops when
    an axis gets small). Anisotropic plans start with ``[1, 2, 2]`` strides and kernels ``[1, 3, 3]`` on the first
    axis until the in-plane resolution has caught up (stages 0-1). The patch is the total stride times
    :data:`PATCH_MULTIPLIERS`, fitted to ``patch_divisor`` for a network that needs one (:func:`patch_for_divisor`;
    see :attr:`~nnunet_attention.architectures.planned_network.PlannedNetwork.patch_divisor`).
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
    kernels = [[1 if anisotropic and axis == 0 and stage < 2 else 3 for axis in range(spatial_dims)]
               for stage in range(n_stages)]
    from nnunet_attention.architectures.plan import total_strides

    patch = patch_for_divisor([c * m for c, m in zip(total_strides(strides), PATCH_MULTIPLIERS[spatial_dims])],
                              strides, patch_divisor)
    return plan_from_layout(strides, kernels, residual, max_features), patch


@dataclass(frozen=True)
class ContractPlan:
    """One plan of the matrix: 2D or 3D, its number of stages, ``[1, 2, 2]`` first strides or isotropic, plain or
    ResEnc."""

    spatial_dims: int
    n_stages: int
    anisotropic: bool
    residual: bool = False

    @property
    def name(self) -> str:
        return (f"{self.spatial_dims}d-{self.n_stages}stages" + ("-anisotropic" if self.anisotropic else "")
                + ("-resenc" if self.residual else ""))

    def arch_kwargs_and_patch(self, patch_divisor: int = 1) -> tuple[dict, list[int]]:
        return make_plan(self.spatial_dims, self.n_stages, self.anisotropic, self.residual,
                         patch_divisor=patch_divisor)

    def configuration(self, patch_divisor: int = 1):
        """The plan as nnU-Net's planner writes it, for a dataset of :data:`INPUT_CHANNELS` channels and
        :data:`NUM_CLASSES` classes (a :class:`~nnunet_attention.planned_configuration.PlannedConfiguration`), its
        patch a multiple of ``patch_divisor`` (as ``nnunet-attention plan`` plans it for such a network)."""
        from .planned_configuration import PlannedConfiguration
        from .plans_fabricator import dataset_json_for, plans_for

        arch_kwargs, patch = self.arch_kwargs_and_patch(patch_divisor)
        plans = plans_for(arch_kwargs, patch)
        return PlannedConfiguration(self.name, plans, next(iter(plans["configurations"])),
                                    dataset_json_for(INPUT_CHANNELS, NUM_CLASSES), tuple(2 * p for p in patch),
                                    "the contract's plan matrix")


#: 2D and 3D, isotropic and [1, 2, 2] strides, 4 to 7 stages
PLAN_MATRIX = [ContractPlan(dims, stages, aniso)
               for dims in (2, 3) for aniso in (False, True) for stages in (4, 5, 6, 7)
               if not (dims == 2 and aniso)] + [ContractPlan(2, 5, True)]
#: one 2D and one anisotropic 3D plan of 5 stages: the matrix's two kinds of plan, for quick runs
QUICK_PLANS = [ContractPlan(2, 5, False), ContractPlan(3, 5, True)]
