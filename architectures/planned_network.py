"""The base of every architecture: a network built on one configuration's :class:`~.plan.UNetPlan`.

Every architecture takes ``(plan, input_channels, num_classes, deep_supervision, **its own options)``, keeps the
plan (``self.plan``: the trainer, the tools and the tests read the grids and strides from it) and initialises its
weights as nnU-Net does for the plan (:meth:`PlannedNetwork.initialize`, used with ``network.apply``).

Whether the network gives nnU-Net's multi-resolution deep supervision (one output per decoder level) is declared
once, by :attr:`PlannedNetwork.supports_deep_supervision`: the network refuses ``deep_supervision=True`` where it
is False, and the trainer (``trainers/base.py``) reads it from its ``architecture_class`` to switch nnU-Net's deep
supervision off.

A network whose patch must divide by more than the plan's total stride (a transformer's token grid) declares it by
:attr:`PlannedNetwork.patch_divisor`: the network refuses other patches with a :class:`~.plan.PlanError` naming the
constraint, and ``nnunet-attention plan`` plans patches that keep it.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .plan import PlanError, UNetPlan, patch_multiples, rounded_up


class PlannedNetwork(nn.Module):
    """``nn.Module`` built on ``plan``; subclasses build their layers after ``super().__init__(...)``.

    Args:
        plan: the configuration's plan.
        input_channels, num_classes: from the dataset (the subclass uses them).
        deep_supervision: return nnU-Net's list of logits, highest resolution first; a ValueError saying what to
            do where the class sets :attr:`supports_deep_supervision` False.
    """

    #: whether the network has nnU-Net's multi-resolution deep supervision (one head per decoder level)
    supports_deep_supervision: ClassVar[bool] = True
    #: for networks without it: what their outputs are instead, for the refusal's message
    outputs_instead: ClassVar[str] = ""
    #: every patch axis must be a multiple of this (besides the plan's total stride), e.g. 32 for five 2x merges
    patch_divisor: ClassVar[int] = 1
    #: why, for the refusal's message
    patch_divisor_reason: ClassVar[str] = ""

    def __init__(self, plan: UNetPlan, input_channels: int, num_classes: int, deep_supervision: bool):
        super().__init__()
        self.require_runnable_patch(plan)
        if deep_supervision and not self.supports_deep_supervision:
            raise ValueError(
                f"{type(self).__name__} has no multi-resolution deep supervision ({self.outputs_instead}); its "
                f"trainer switches nnU-Net's off: build it with deep_supervision=False"
            )
        self.plan = plan

    @classmethod
    def require_runnable_patch(cls, plan: UNetPlan) -> None:
        """A :class:`PlanError` naming the constraint, a patch that keeps it and how to plan one, where an axis of
        the plan's patch is not a multiple of :attr:`patch_divisor` (a network with more constraints extends it)."""
        if not any(size % cls.patch_divisor for size in plan.patch_size):
            return
        fitting = rounded_up(plan.patch_size, patch_multiples(plan.cumulative_strides[-1], cls.patch_divisor))
        raise PlanError(
            f"{cls.__name__} needs every patch axis divisible by {cls.patch_divisor} ({cls.patch_divisor_reason}); "
            f"the plan's patch_size {list(plan.patch_size)} is not. Plan a patch that fits with `nnunet-attention "
            f"plan -d DATASET -tr <its trainer>` and train with the plans it writes (-p), or set patch_size to e.g. "
            f"{fitting} in the plans file"
        )

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net's initialisation of one module for this plan (see :meth:`UNetPlan.initialize`)."""
        self.plan.initialize(module)
