"""One configuration of an nnU-Net plan as one typed view: :class:`UNetPlan`, the only way into an architecture.

nnU-Net's planner writes, per configuration, the keyword arguments of ``PlainConvUNet`` (``n_conv_per_stage``)
or ``ResidualEncoderUNet`` (``n_blocks_per_stage``) and the patch size the network always runs at. The trainer
turns them into a :class:`UNetPlan` once (:meth:`UNetPlan.from_arch_kwargs` checks them, expands every per-axis
value, and refuses a patch the stages cannot run); every architecture takes that plan and builds from it: the
planned encoder nnU-Net would build (:meth:`UNetPlan.build_encoder`), the plan's conv blocks, and the grid of
each level at the plan's patch (:attr:`UNetPlan.grids`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim, maybe_convert_scalar_to_list
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import nn

from ..errors import UsageError

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


class PlanError(UsageError):
    """A plan (an ``nnUNetPlans.json`` configuration) that the networks cannot be built on; the message names the
    plan value and the fix. A user's mistake (a hand-edited plan), not a bug."""


@dataclass(frozen=True, eq=False)
class UNetPlan:
    """A U-Net configuration of an nnU-Net plan, every per-stage value one entry per stage and every per-axis
    value one entry per spatial axis.

    Stage (level) 0 is the highest resolution. ``strides[s]`` is the stride *into* stage ``s`` (stage 0's is
    usually all ones), so ``strides[s + 1]`` is the stride between level ``s`` and the level below it.
    ``encoder_depths`` are convs per stage (``PlainConvUNet`` plans) or residual blocks per stage (ResEnc
    plans, whose ``block``, ``bottleneck_channels`` and ``stem_channels`` are kept in ``residual_options``).
    ``decoder_convs[level]`` are the convs of the decoder stage that produces ``level`` (0 .. n_stages - 2; the
    plan's ``n_conv_per_stage_decoder`` lists them the other way round, lowest resolution first).
    """

    conv_op: type[nn.Module]
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    encoder_depths: tuple[int, ...]
    decoder_convs: tuple[int, ...]
    patch_size: tuple[int, ...]
    conv_bias: bool = False
    norm_op: type[nn.Module] | None = None
    norm_op_kwargs: dict | None = None
    dropout_op: type[nn.Module] | None = None
    dropout_op_kwargs: dict | None = None
    nonlin: type[nn.Module] | None = None
    nonlin_kwargs: dict | None = None
    residual_options: dict | None = None

    @classmethod
    def from_arch_kwargs(cls, arch_kwargs: dict[str, Any], patch_size: Sequence[int]) -> UNetPlan:
        """The plan of nnU-Net's ``arch_kwargs`` (op names already resolved to classes) at ``patch_size``.

        Raises a TypeError naming the key when the kwargs are not a plain or ResEnc U-Net plan, and a ValueError
        naming the plan value and the fix when ``patch_size`` cannot run through the stages.
        """
        _check_keys(arch_kwargs)
        n_stages, conv_op = arch_kwargs["n_stages"], arch_kwargs["conv_op"]
        residual = "n_blocks_per_stage" in arch_kwargs
        depth_key = "n_blocks_per_stage" if residual else "n_conv_per_stage"

        def per_axis(values: Any, name: str) -> tuple[tuple[int, ...], ...]:
            return tuple(tuple(int(v) for v in maybe_convert_scalar_to_list(conv_op, value))
                         for value in _per_stage(values, n_stages, name))

        plan = cls(
            conv_op=conv_op,
            features_per_stage=tuple(int(f) for f in _per_stage(arch_kwargs["features_per_stage"], n_stages,
                                                                "features_per_stage")),
            kernel_sizes=per_axis(arch_kwargs["kernel_sizes"], "kernel_sizes"),
            strides=per_axis(arch_kwargs["strides"], "strides"),
            encoder_depths=tuple(int(d) for d in _per_stage(arch_kwargs[depth_key], n_stages, depth_key)),
            decoder_convs=tuple(int(d) for d in _per_stage(arch_kwargs["n_conv_per_stage_decoder"], n_stages - 1,
                                                           "n_conv_per_stage_decoder"))[::-1],
            patch_size=tuple(int(p) for p in patch_size),
            conv_bias=bool(arch_kwargs.get("conv_bias", False)),
            norm_op=arch_kwargs.get("norm_op"),
            norm_op_kwargs=arch_kwargs.get("norm_op_kwargs"),
            dropout_op=arch_kwargs.get("dropout_op"),
            dropout_op_kwargs=arch_kwargs.get("dropout_op_kwargs"),
            nonlin=arch_kwargs.get("nonlin"),
            nonlin_kwargs=arch_kwargs.get("nonlin_kwargs"),
            residual_options={k: arch_kwargs[k] for k in RESIDUAL_ONLY_KEYS if k in arch_kwargs} if residual else None,
        )
        if len(plan.patch_size) != plan.spatial_dims:
            raise PlanError(f"patch_size {list(patch_size)} has {len(plan.patch_size)} axes but the plan's conv_op "
                             f"{conv_op.__name__} has {plan.spatial_dims}")
        _check_patch_fits(plan)
        return plan

    @property
    def n_stages(self) -> int:
        return len(self.features_per_stage)

    @property
    def spatial_dims(self) -> int:
        return convert_conv_op_to_dim(self.conv_op)

    @property
    def is_residual(self) -> bool:
        return self.residual_options is not None

    @property
    def grids(self) -> tuple[tuple[int, ...], ...]:
        """Spatial size of every level's feature map at the plan's patch, level 0 first."""
        grids, current = [], list(self.patch_size)
        for stride in self.strides:
            current = [c // s for c, s in zip(current, stride)]
            grids.append(tuple(current))
        return tuple(grids)

    @property
    def cumulative_strides(self) -> tuple[tuple[int, ...], ...]:
        """Per level, how many input voxels one of its voxels spans along each axis, level 0 first."""
        return tuple(tuple(math.prod(stride[axis] for stride in self.strides[: level + 1])
                           for axis in range(self.spatial_dims)) for level in range(self.n_stages))

    def first_level_at_stride(self, stride: int) -> int:
        """The first level whose cumulative stride reaches ``stride`` along some axis; ``n_stages`` if none does."""
        return next((level for level, strides in enumerate(self.cumulative_strides) if max(strides) >= stride),
                    self.n_stages)

    def first_stages(self, count: int) -> UNetPlan:
        """The plan of the first ``count`` stages (a shallower U-Net on the same patch), e.g. a convolutional stem."""
        if not 1 <= count <= self.n_stages:
            raise ValueError(f"a plan of {self.n_stages} stages has no first {count} stages")
        return dataclasses.replace(
            self, features_per_stage=self.features_per_stage[:count], kernel_sizes=self.kernel_sizes[:count],
            strides=self.strides[:count], encoder_depths=self.encoder_depths[:count],
            decoder_convs=self.decoder_convs[: count - 1],
        )

    def build_encoder(self, input_channels: int) -> PlainConvEncoder | ResidualEncoder:
        """The encoder nnU-Net's ``PlainConvUNet`` / ``ResidualEncoderUNet`` builds for this plan, returning the
        output of every stage (highest resolution first)."""
        common = dict(
            input_channels=input_channels, n_stages=self.n_stages, features_per_stage=list(self.features_per_stage),
            conv_op=self.conv_op, kernel_sizes=[list(k) for k in self.kernel_sizes],
            strides=[list(s) for s in self.strides], conv_bias=self.conv_bias, norm_op=self.norm_op,
            norm_op_kwargs=self.norm_op_kwargs, dropout_op=self.dropout_op, dropout_op_kwargs=self.dropout_op_kwargs,
            nonlin=self.nonlin, nonlin_kwargs=self.nonlin_kwargs, return_skips=True,
        )
        if self.is_residual:
            return ResidualEncoder(n_blocks_per_stage=list(self.encoder_depths), disable_default_stem=False,
                                   **common, **self.residual_options)
        return PlainConvEncoder(n_conv_per_stage=list(self.encoder_depths), **common)

    def conv_norm_nonlin(self, in_channels: int, out_channels: int, kernel_size: Sequence[int] | int = 1,
                         stride: Sequence[int] | int = 1, groups: int = 1,
                         conv_op: type[nn.Module] | None = None) -> nn.Sequential:
        """Conv (the plan's bias; 'same' padding for odd kernels, none for kernel = stride) -> the plan's norm ->
        the plan's nonlinearity: ``(B, in, *S)`` -> ``(B, out, *S / stride)``. No dropout (nnU-Net plans none).
        ``conv_op``: a subclass of the plan's conv op that computes it otherwise (default: the plan's)."""
        kernel = maybe_convert_scalar_to_list(self.conv_op, kernel_size)
        conv = (conv_op or self.conv_op)(
            in_channels, out_channels, tuple(kernel), tuple(maybe_convert_scalar_to_list(self.conv_op, stride)),
            padding=tuple((k - 1) // 2 for k in kernel), groups=groups, bias=self.conv_bias)
        return nn.Sequential(conv, *self.norm_nonlin(out_channels))

    def norm_nonlin(self, channels: int) -> nn.Sequential:
        """The plan's norm, then its nonlinearity (either left out where the plan has none): ``(B, C, *S)`` -> same."""
        layers = [] if self.norm_op is None else [self.norm_op(channels, **(self.norm_op_kwargs or {}))]
        if self.nonlin is not None:
            layers.append(self.nonlin(**(self.nonlin_kwargs or {})))
        return nn.Sequential(*layers)

    def decoder_convs_at(self, level: int, in_channels: int) -> StackedConvBlocks:
        """nnU-Net's decoder conv stage of ``level``: the plan's ``n_conv_per_stage_decoder`` convs with the level's
        kernel, ``in_channels`` -> the level's features."""
        return StackedConvBlocks(
            self.decoder_convs[level], self.conv_op, in_channels, self.features_per_stage[level],
            list(self.kernel_sizes[level]), 1, self.conv_bias, self.norm_op, self.norm_op_kwargs, self.dropout_op,
            self.dropout_op_kwargs, self.nonlin, self.nonlin_kwargs,
        )

    def deepest_levels(self, count: int, max_positions: int | None = None) -> tuple[int, ...]:
        """The deepest ``count`` levels, skipping those whose grid at the patch has more than ``max_positions``
        positions (the bottleneck is always kept)."""
        deepest = range(max(0, self.n_stages - count), self.n_stages)
        return tuple(level for level in deepest if level == self.n_stages - 1 or max_positions is None
                     or math.prod(self.grids[level]) <= max_positions)

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net's initialisation of one module (use with ``network.apply``): He with a=1e-2; for ResEnc plans
        also the last norm of each residual block set to 0."""
        InitWeights_He(1e-2)(module)
        if self.is_residual:
            init_last_bn_before_add_to_0(module)


def total_strides(strides: Sequence[Sequence[int]]) -> list[int]:
    """Per axis, the product of per-stage ``strides``: how many input voxels the deepest level's voxel spans, what
    a U-Net's patch must be a multiple of."""
    return [math.prod(int(stride[axis]) for stride in strides) for axis in range(len(strides[0]))]


def patch_multiples(total_strides: Sequence[int], patch_divisor: int = 1) -> list[int]:
    """Per axis, what a patch must be a multiple of to run through a U-Net of these total strides and through a
    network that needs every axis divisible by ``patch_divisor`` too: their least common multiple."""
    return [math.lcm(int(total), patch_divisor) for total in total_strides]


def rounded_up(patch: Sequence[int], multiples: Sequence[int]) -> list[int]:
    """``patch`` with every axis rounded up to its multiple."""
    return [math.ceil(int(size) / multiple) * multiple for size, multiple in zip(patch, multiples)]


def _per_stage(value: Any, count: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * count
    if len(values) != count:
        raise PlanError(f"plan value '{name}' has {len(values)} entries but needs {count} (one per stage)")
    return values


def _check_keys(arch_kwargs: dict[str, Any]) -> None:
    """Fail early, naming the key, if ``arch_kwargs`` are not a plain or ResEnc U-Net plan."""
    missing = sorted(COMMON_PLAN_KEYS - arch_kwargs.keys())
    if missing:
        raise TypeError(f"the plan's arch_kwargs lack {missing}; pass the arch_kwargs of an nnU-Net U-Net plan")
    depth_keys = [k for k in ENCODER_DEPTH_KEYS if k in arch_kwargs]
    if len(depth_keys) != 1:
        raise TypeError(
            f"the plan's arch_kwargs must hold exactly one of {list(ENCODER_DEPTH_KEYS)} "
            f"(PlainConvUNet or ResidualEncoderUNet plan), found {depth_keys}"
        )
    allowed = COMMON_PLAN_KEYS | OPTIONAL_PLAN_KEYS | set(depth_keys)
    if depth_keys == ["n_blocks_per_stage"]:
        allowed |= RESIDUAL_ONLY_KEYS
    unknown = sorted(arch_kwargs.keys() - allowed)
    if unknown:
        raise TypeError(f"unknown plan arch_kwargs {unknown}; expected a subset of {sorted(allowed)}")


def _check_patch_fits(plan: UNetPlan) -> None:
    """Fail before any forward pass, naming the plan values and the fix, where the patch cannot run through the
    plan's stages: an axis that its total stride does not divide (the decoder's upsampled maps would not match
    the skips), or, with instance normalisation, a stage of a single voxel (nothing to normalise). nnU-Net's
    planner never writes either; they come from hand-edited plans."""
    patch = plan.patch_size
    total_stride = total_strides(plan.strides)
    misfit = [axis for axis, (p, s) in enumerate(zip(patch, total_stride)) if p % s]
    if misfit:
        fitted = [max(s, round(p / s) * s) for p, s in zip(patch, total_stride)]
        raise PlanError(
            f"the plan's patch_size {list(patch)} is not divisible by the total stride {total_stride} of its "
            f"strides along axis {misfit}; every patch axis must be a multiple of its total stride (nnU-Net's "
            f"planner makes it so): set patch_size to e.g. {fitted} in nnUNetPlans.json or plan again with "
            f"nnUNetv2_plan_experiment"
        )
    instance_norm = isinstance(plan.norm_op, type) and issubclass(plan.norm_op, nn.modules.instancenorm._InstanceNorm)
    deepest = plan.grids[-1]
    if instance_norm and math.prod(deepest) == 1:
        raise PlanError(
            f"with patch_size {list(patch)} and strides {[list(s) for s in plan.strides]} the plan's deepest "
            f"stage is a single voxel {list(deepest)}, which instance normalisation cannot normalise; enlarge "
            f"patch_size or drop the last stage (n_stages and the last entry of each per-stage list) in "
            f"nnUNetPlans.json"
        )
