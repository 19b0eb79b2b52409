"""One base trainer: nnU-Net's ``nnUNetTrainer`` whose network is an attention architecture built on the plan.

A concrete trainer only names its ``architecture_class`` (and, where the paper needs it, extra
``architecture_kwargs`` or an optimizer override). Everything else (data loading, augmentation, Dice+CE
with deep supervision, SGD + poly schedule, AMP, DDP, torch.compile, validation, checkpoints) is
nnU-Net's. Every concrete trainer defined in :mod:`nnunet_attention.trainers` registers itself in
:data:`TRAINERS`, so tests and tools cover it without a hand-kept list, and declares its removal control
(:func:`removal_control`, registered in :data:`CONTROLS`) in one line.
"""

from __future__ import annotations

import os
import pydoc
from typing import Any, ClassVar

from nnunet_attention.architectures.attention_removal import remove_attention
from nnunet_attention.architectures.plan import PlanError, UNetPlan
from nnunet_attention.architectures.planned_network import PlannedNetwork
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_attention.atomic import atomic_path
from nnunet_attention.registry import CONTROL_SUFFIX

from .checkpoints import check_weights_fit, read_checkpoint

#: trainer class name -> class, filled by every concrete trainer of this package as it is defined
TRAINERS: dict[str, type[AttentionTrainerBase]] = {}
#: removal control class name -> class (``nnUNetTrainer<X>_NoAttention``), one per trainer of :data:`TRAINERS`
CONTROLS: dict[str, type[AttentionTrainerBase]] = {}

#: the plan architectures whose ``arch_kwargs`` our architectures understand
SUPPORTED_PLAN_ARCHITECTURES = (
    "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
)


def plan_from_configuration(configuration_manager: ConfigurationManager) -> UNetPlan:
    """The configuration's U-Net plan (``arch_kwargs`` with op names resolved to classes, and the patch size).

    Raises a ValueError naming the plan's architecture when it is not a plain or ResEnc U-Net plan, and what
    :meth:`UNetPlan.from_arch_kwargs` raises for plans that cannot run.
    """
    planned = configuration_manager.network_arch_class_name
    if planned not in SUPPORTED_PLAN_ARCHITECTURES:
        raise PlanError(
            f"this configuration of the plan names the architecture {planned}; attention trainers build on "
            f"U-Net plans ({', '.join(SUPPORTED_PLAN_ARCHITECTURES)}). "
            f"Use nnUNetPlans or one of the nnUNetResEncUNet*Plans (-p)."
        )
    kwargs = dict(configuration_manager.network_arch_init_kwargs)
    for key in configuration_manager.network_arch_init_kwargs_req_import:
        if kwargs.get(key) is not None:
            located = pydoc.locate(kwargs[key])
            if located is None:
                raise PlanError(f"the plan's arch_kwargs['{key}'] = {kwargs[key]!r} cannot be imported")
            kwargs[key] = located
    return UNetPlan.from_arch_kwargs(kwargs, configuration_manager.patch_size)


class AttentionTrainerBase(nnUNetTrainer):
    """nnU-Net trainer whose network is ``architecture_class`` built from the configuration's plan.

    Subclasses set ``architecture_class`` and optionally ``architecture_kwargs`` (the architecture's own
    options). The network is ``architecture_class(plan, input_channels, num_classes, deep_supervision,
    **architecture_kwargs)`` with ``plan`` the configuration's :class:`UNetPlan`. nnU-Net's
    ``__init__(plans, configuration, fold, dataset_json, device)`` is inherited unchanged.
    """

    architecture_class: ClassVar[type[PlannedNetwork] | None] = None
    architecture_kwargs: ClassVar[dict[str, Any]] = {}
    #: whether the network gives nnU-Net's multi-resolution deep-supervision outputs: the architecture's own
    #: declaration (:attr:`PlannedNetwork.supports_deep_supervision`), copied when a subclass names its
    #: ``architecture_class``; where False, nnU-Net's deep supervision is switched off and the network is supervised
    #: its own way
    supports_deep_supervision: ClassVar[bool] = True
    #: what every patch axis must be a multiple of besides the plan's total stride: the architecture's own
    #: declaration (:attr:`PlannedNetwork.patch_divisor`), copied like ``supports_deep_supervision``; the planner
    #: (``nnunet-attention plan``) plans patches that keep it
    patch_divisor: ClassVar[int] = 1
    #: for a removal control: the name of the trainer whose attention it removes (None for the trainers)
    controlled_trainer: ClassVar[str | None] = None

    @property
    def enable_deep_supervision(self) -> bool:
        """nnU-Net's switch, off whatever is set for networks without deep supervision: the network, the loss and
        the data loaders' targets are all set up from it (nnU-Net's ``__init__`` sets it True; nnU-Net's
        ``__init__`` signature stays the trainer's)."""
        return self._deep_supervision_requested and self.supports_deep_supervision

    @enable_deep_supervision.setter
    def enable_deep_supervision(self, enabled: bool) -> None:
        self._deep_supervision_requested = enabled

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """nnU-Net's toggle (it switches deep supervision off around its final validation); nothing to toggle for
        networks without deep supervision, which give one output in evaluation mode anyway."""
        if self.supports_deep_supervision:
            super().set_deep_supervision_enabled(enabled)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.architecture_class is not None:
            cls.supports_deep_supervision = cls.architecture_class.supports_deep_supervision
            cls.patch_divisor = cls.architecture_class.patch_divisor
        # Only the package's own trainers; user subclasses (e.g. short schedules) stay out of the registry.
        if cls.architecture_class is not None and cls.__module__.startswith("nnunet_attention.trainers"):
            (CONTROLS if cls.controlled_trainer else TRAINERS)[cls.__name__] = cls

    @classmethod
    def build_network_architecture(
        cls,
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        if cls.architecture_class is None:
            raise TypeError(f"{cls.__name__} sets no architecture_class; use one of {sorted(TRAINERS)}")
        plan = plan_from_configuration(configuration_manager)
        network = cls.architecture_class(
            plan, num_input_channels, num_output_channels, enable_deep_supervision, **cls.architecture_kwargs
        )
        network.apply(network.initialize)
        # a removal control (see removal_control): the same network with its attention removed
        return remove_attention(network) if cls.controlled_trainer else network

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written to a hidden sibling file that replaces ``filename`` only once complete,
        so an interruption never leaves a truncated checkpoint under a name ``--c`` would resume from."""
        if self.local_rank != 0 or self.disable_checkpointing:
            super().save_checkpoint(filename)  # writes nothing, logs why
            return
        with atomic_path(filename) as partial:
            super().save_checkpoint(str(partial))

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's resume, after checking that the file is a complete checkpoint whose weights fit this
        trainer's network (see :mod:`.checkpoints`); a bad file raises a ``CheckpointError`` and stays as it is."""
        if isinstance(filename_or_checkpoint, (str, os.PathLike)):
            if not self.was_initialized:
                self.initialize()
            checkpoint = read_checkpoint(filename_or_checkpoint)
            check_weights_fit(checkpoint, self.network, self.__class__.__name__, str(filename_or_checkpoint))
            filename_or_checkpoint = str(filename_or_checkpoint)
        super().load_checkpoint(filename_or_checkpoint)


def removal_control(trainer: type[AttentionTrainerBase]) -> type[AttentionTrainerBase]:
    """The removal control of ``trainer``: ``<trainer>_NoAttention``, the same network with its attention removed
    and everything else kept (plan, topology, convolutions, heads, loss, schedule). Assign it in the trainer's
    module under its own name, so nnU-Net's trainer lookup (``nnUNetv2_train -tr``) finds it::

        nnUNetTrainerX_NoAttention = removal_control(nnUNetTrainerX)
    """
    name = f"{trainer.__name__}{CONTROL_SUFFIX}"
    return type(name, (trainer,), {
        "__module__": trainer.__module__, "__qualname__": name, "controlled_trainer": trainer.__name__,
        "__doc__": f"Removal control of :class:`{trainer.__name__}`: its network with the attention removed "
                   f"(see nnunet_attention.architectures.attention_removal), all else the same.",
    })
