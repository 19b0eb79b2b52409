"""The base of every architecture: a network built on one configuration's :class:`~.plan.UNetPlan`.

Every architecture takes ``(plan, input_channels, num_classes, deep_supervision, **its own options)``, keeps the
plan (``self.plan``: the trainer, the tools and the tests read the grids and strides from it) and initialises its
weights as nnU-Net does for the plan (:meth:`PlannedNetwork.initialize`, used with ``network.apply``).

Whether the network gives nnU-Net's multi-resolution deep supervision (one output per decoder level) is declared
once, by :attr:`PlannedNetwork.supports_deep_supervision`: the network refuses ``deep_supervision=True`` where it
is False, and the trainer (``trainers/base.py``) reads it from its ``architecture_class`` to switch nnU-Net's deep
supervision off.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .plan import UNetPlan


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

    def __init__(self, plan: UNetPlan, input_channels: int, num_classes: int, deep_supervision: bool):
        super().__init__()
        if deep_supervision and not self.supports_deep_supervision:
            raise ValueError(
                f"{type(self).__name__} has no multi-resolution deep supervision ({self.outputs_instead}); its "
                f"trainer switches nnU-Net's off: build it with deep_supervision=False"
            )
        self.plan = plan

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net's initialisation of one module for this plan (see :meth:`UNetPlan.initialize`)."""
        self.plan.initialize(module)
