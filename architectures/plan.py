"""Read an nnU-Net plan's ``arch_kwargs`` once, into a planned encoder and a typed view of its geometry.

Every architecture in this package is built from exactly the keyword arguments that nnU-Net's planner
writes for ``PlainConvUNet`` (``n_conv_per_stage``) or ``ResidualEncoderUNet`` (``n_blocks_per_stage``),
after ``pydoc.locate`` has turned the op names into classes. This module is the only place that knows
those names; architectures read :class:`PlanGeometry` and receive the encoder nnU-Net itself would build.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dynamic_network_architectures.building_blocks.helper import maybe_convert_scalar_to_list
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import nn

#: keys every nnU-Net U-Net plan has, plain or ResEnc
COMMON_PLAN_KEYS = frozenset(
    {"n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage_decoder"}
)
#: optional keys shared by both plan kinds
OPTIONAL_PLAN_KEYS = frozenset(
    {"conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs"}
)
#: keys only ResidualEncoderUNet plans carry
RESIDUAL_ONLY_KEYS = frozenset({"block", "bottleneck_channels", "stem_channels"})
ENCODER_DEPTH_KEYS = ("n_conv_per_stage", "n_blocks_per_stage")


@dataclass(frozen=True)
class PlanGeometry:
    """The plan's per-stage layout, with every per-axis value expanded to one entry per spatial axis.

    Stage 0 is the highest resolution. ``strides[s]`` is the stride *into* stage ``s`` (stage 0's is
    usually all ones), so ``strides[s + 1]`` is the stride between the skip of stage ``s`` and the level below.
    """

    conv_op: type[nn.Module]
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]


def _as_per_stage(value: Any, n_stages: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_stages
    if len(values) != n_stages:
        raise ValueError(f"plan value '{name}' has {len(values)} entries but the plan has n_stages={n_stages}")
    return values


def check_plan_kwargs(plan_kwargs: dict[str, Any]) -> None:
    """Fail early, naming the key, if ``plan_kwargs`` are not a plain or ResEnc U-Net plan."""
    missing = sorted(COMMON_PLAN_KEYS - plan_kwargs.keys())
    if missing:
        raise TypeError(f"the plan's arch_kwargs lack {missing}; pass the arch_kwargs of an nnU-Net U-Net plan")
    depth_keys = [k for k in ENCODER_DEPTH_KEYS if k in plan_kwargs]
    if len(depth_keys) != 1:
        raise TypeError(
            f"the plan's arch_kwargs must hold exactly one of {list(ENCODER_DEPTH_KEYS)} "
            f"(PlainConvUNet or ResidualEncoderUNet plan), found {depth_keys}"
        )
    allowed = COMMON_PLAN_KEYS | OPTIONAL_PLAN_KEYS | set(depth_keys)
    if depth_keys == ["n_blocks_per_stage"]:
        allowed |= RESIDUAL_ONLY_KEYS
    unknown = sorted(plan_kwargs.keys() - allowed)
    if unknown:
        raise TypeError(f"unknown plan arch_kwargs {unknown}; expected a subset of {sorted(allowed)}")


def read_geometry(plan_kwargs: dict[str, Any]) -> PlanGeometry:
    check_plan_kwargs(plan_kwargs)
    n_stages, conv_op = plan_kwargs["n_stages"], plan_kwargs["conv_op"]
    features = _as_per_stage(plan_kwargs["features_per_stage"], n_stages, "features_per_stage")
    kernels = _as_per_stage(plan_kwargs["kernel_sizes"], n_stages, "kernel_sizes")
    strides = _as_per_stage(plan_kwargs["strides"], n_stages, "strides")
    return PlanGeometry(
        conv_op=conv_op,
        features_per_stage=tuple(int(f) for f in features),
        kernel_sizes=tuple(tuple(maybe_convert_scalar_to_list(conv_op, k)) for k in kernels),
        strides=tuple(tuple(maybe_convert_scalar_to_list(conv_op, s)) for s in strides),
    )


def is_residual_plan(plan_kwargs: dict[str, Any]) -> bool:
    return "n_blocks_per_stage" in plan_kwargs


def build_planned_encoder(input_channels: int, plan_kwargs: dict[str, Any]) -> PlainConvEncoder | ResidualEncoder:
    """The encoder nnU-Net's ``PlainConvUNet`` / ``ResidualEncoderUNet`` builds for this plan, skips returned."""
    check_plan_kwargs(plan_kwargs)
    encoder_kwargs = {k: v for k, v in plan_kwargs.items() if k != "n_conv_per_stage_decoder"}
    if is_residual_plan(plan_kwargs):
        return ResidualEncoder(input_channels, return_skips=True, disable_default_stem=False, **encoder_kwargs)
    return PlainConvEncoder(input_channels, return_skips=True, **encoder_kwargs)


def decoder_convs_per_stage(plan_kwargs: dict[str, Any]) -> list[int]:
    n_decoder_stages = plan_kwargs["n_stages"] - 1
    return _as_per_stage(plan_kwargs["n_conv_per_stage_decoder"], n_decoder_stages, "n_conv_per_stage_decoder")


def initialize_module_like_nnunet(module: nn.Module, residual: bool) -> None:
    """nnU-Net's initialisation of one module (use with ``network.apply``): He with a=1e-2; for ResEnc
    plans also the last norm of each residual block set to 0."""
    InitWeights_He(1e-2)(module)
    if residual:
        init_last_bn_before_add_to_0(module)


def stage_grids(patch_size: Sequence[int], strides: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Spatial size of every level's feature map for a ``patch_size`` input."""
    grids, current = [], list(patch_size)
    for stride in strides:
        current = [c // s for c, s in zip(current, stride)]
        grids.append(tuple(current))
    return grids


def check_patch_fits_plan(plan_kwargs: dict[str, Any], patch_size: Sequence[int]) -> None:
    """Fail before any forward pass, naming the plan values and the fix, where ``patch_size`` cannot run
    through the plan's stages: an axis that its total stride does not divide (the decoder's upsampled maps
    would not match the skips), or, with instance normalisation, a stage of a single voxel (nothing to
    normalise). nnU-Net's planner never writes either; they come from hand-edited plans."""
    geometry = read_geometry(plan_kwargs)
    total_stride = [math.prod(stride[axis] for stride in geometry.strides) for axis in range(len(patch_size))]
    misfit = [axis for axis, (p, s) in enumerate(zip(patch_size, total_stride)) if p % s]
    if misfit:
        fitted = [max(s, round(p / s) * s) for p, s in zip(patch_size, total_stride)]
        raise ValueError(
            f"the plan's patch_size {list(patch_size)} is not divisible by the total stride {total_stride} of its "
            f"strides along axis {misfit}; every patch axis must be a multiple of its total stride (nnU-Net's "
            f"planner makes it so): set patch_size to e.g. {fitted} in nnUNetPlans.json or plan again with "
            f"nnUNetv2_plan_experiment"
        )
    norm_op = plan_kwargs.get("norm_op")
    instance_norm = isinstance(norm_op, type) and issubclass(norm_op, nn.modules.instancenorm._InstanceNorm)
    deepest = stage_grids(patch_size, geometry.strides)[-1]
    if instance_norm and math.prod(deepest) == 1:
        raise ValueError(
            f"with patch_size {list(patch_size)} and strides {[list(s) for s in geometry.strides]} the plan's deepest "
            f"stage is a single voxel {list(deepest)}, which instance normalisation cannot normalise; enlarge "
            f"patch_size or drop the last stage (n_stages and the last entry of each per-stage list) in "
            f"nnUNetPlans.json"
        )


def choose_attention_levels(
    grids: Sequence[Sequence[int]] | None, n_stages: int, max_positions: int, max_levels: int
) -> list[int]:
    """The deepest ``max_levels`` levels whose grid has at most ``max_positions`` positions; the bottleneck
    (level ``n_stages - 1``) always. Without ``grids`` (patch unknown) the deepest ``max_levels`` levels."""
    deepest = list(range(max(0, n_stages - max_levels), n_stages))
    if grids is None:
        return deepest
    return [level for level in deepest if level == n_stages - 1 or math.prod(grids[level]) <= max_positions]


def resolve_attention_levels(
    explicit: Sequence[int] | None,
    grids: Sequence[Sequence[int]] | None,
    n_stages: int,
    max_positions: int,
    max_levels: int,
    option: str,
) -> tuple[int, ...]:
    """The levels that get attention blocks, sorted: ``explicit`` (the user's ``option``, checked to be level
    indices) or else :func:`choose_attention_levels`."""
    if explicit is None:
        return tuple(choose_attention_levels(grids, n_stages, max_positions, max_levels))
    if not all(0 <= level < n_stages for level in explicit):
        raise ValueError(f"{option} {list(explicit)} must be level indices in 0..{n_stages - 1}")
    return tuple(sorted(explicit))
