"""Trainer names, resolved one way for every tool: ours, nnU-Net's U-Net, and variants named after either.

nnU-Net names a schedule or setting variant after its trainer (``nnUNetTrainer_250epochs``,
``nnUNetTrainerMTUNet_5epochs_20iters``); the tools treat such a variant as the trainer it is named after when
they need its network (benchmark, planning, comparison costs). :data:`REFERENCE_TRAINER` is nnU-Net's own trainer,
whose network (the plan's U-Net) every ratio is taken against; :data:`REFERENCE_LABEL` is how tables show it.

Nothing here imports torch or nnU-Net at module level, so a command checks names before the heavy imports.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from .errors import UsageError

#: nnU-Net's own trainer: the plan's U-Net, the reference of every ratio
REFERENCE_TRAINER = "nnUNetTrainer"
#: how tables and pictures show the reference
REFERENCE_LABEL = "nnU-Net (planned U-Net)"


def display_name(trainer: str) -> str:
    """How tables and progress lines show a trainer's network: the reference by what it is, others by name."""
    return REFERENCE_LABEL if trainer == REFERENCE_TRAINER else trainer


class UnknownTrainerError(UsageError):
    """A trainer name that is neither ours, nor nnU-Net's, nor a variant named after one of them."""


#: what a removal control's name adds to its trainer's (``nnUNetTrainerX`` -> ``nnUNetTrainerX_NoAttention``)
CONTROL_SUFFIX = "_NoAttention"


def attention_trainers() -> dict[str, type]:
    """Class name -> class of every attention trainer of this package (:data:`nnunet_attention.trainers.TRAINERS`)."""
    from nnunet_attention.trainers import TRAINERS

    return TRAINERS


def our_trainers() -> dict[str, type]:
    """Class name -> class of every trainer this package registers: the attention trainers and their removal
    controls (:data:`nnunet_attention.trainers.CONTROLS`)."""
    from nnunet_attention.trainers import CONTROLS, TRAINERS

    return {**TRAINERS, **CONTROLS}


def control_of(name: str) -> str | None:
    """The removal control that pairs with trainer ``name``: ``nnUNetTrainerX_NoAttention`` for
    ``nnUNetTrainerX``, and for a variant named after it the control's variant of the same name
    (``nnUNetTrainerX_5epochs`` -> ``nnUNetTrainerX_NoAttention_5epochs``); None where ``name`` is not an attention
    trainer or a variant of one (nnU-Net's U-Net, a control)."""
    base = base_trainer(name)
    if base not in attention_trainers():
        return None
    return f"{base}{CONTROL_SUFFIX}{name.removeprefix(base)}"


def controlled_trainer(name: str) -> str | None:
    """For a removal control or a variant of one, the attention trainer whose attention it removes; else None."""
    base = base_trainer(name)
    trainer = base.removesuffix(CONTROL_SUFFIX) if base and base.endswith(CONTROL_SUFFIX) else None
    return trainer if trainer in attention_trainers() else None


def known_trainer_names() -> list[str]:
    """:data:`REFERENCE_TRAINER`, then our trainers sorted."""
    return [REFERENCE_TRAINER, *sorted(our_trainers())]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"did you mean X? "`` for the candidate closest to a misspelt ``name``; ``""`` when none is close. Names
    are compared without nnU-Net's common ``nnUNetTrainer`` prefix and ignoring case, so the prefix alone makes no
    name close."""

    def distinctive(trainer: str) -> str:
        return trainer.removeprefix("nnUNetTrainer").lower()

    names = {distinctive(candidate): candidate for candidate in candidates}
    close = difflib.get_close_matches(distinctive(name), list(names), n=1, cutoff=0.6)
    return f"did you mean {names[close[0]]}? " if close else ""


def base_trainer(name: str) -> str | None:
    """The known trainer ``name`` is, or is a variant of (the longest known name ``name`` starts with followed by
    ``_``); ``None`` for anything else."""
    bases = [known for known in known_trainer_names() if name == known or name.startswith(f"{known}_")]
    return max(bases, key=len) if bases else None


def require_base_trainers(names: Sequence[str]) -> list[str]:
    """The base trainer of every name (see :func:`base_trainer`); an :class:`UnknownTrainerError` naming each
    unknown name with the closest known one."""
    unknown = [name for name in names if base_trainer(name) is None]
    if unknown:
        hints = "".join(f"{name!r}: {did_you_mean(name, known_trainer_names())}" for name in unknown)
        raise UnknownTrainerError(f"unknown trainer(s) {hints}known: {', '.join(known_trainer_names())} (and their "
                                  f"variants named <trainer>_<variant>)")
    return [base_trainer(name) for name in names]


def patch_divisor(name: str) -> int:
    """What every patch axis of trainer ``name``'s network must divide by besides its U-Net plan's total stride
    (the architecture's ``patch_divisor``, e.g. 32 for SwinUNETR; 1 for nnU-Net's U-Net and most networks)."""
    return getattr(trainer_class(name), "patch_divisor", 1)


def trainer_class(name: str) -> type:
    """The class of trainer ``name``: ours or nnU-Net's by name, else nnU-Net's own lookup (its trainers and the
    folders in ``nnUNet_extTrainer``, where short-schedule variants live). An :class:`UnknownTrainerError` with the
    closest known name where none has it."""
    ours = our_trainers()
    if name in ours:
        return ours[name]
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if name == REFERENCE_TRAINER:
        return nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from .nnunet_commands import nnunet_chatter_hidden

    try:
        with nnunet_chatter_hidden():
            return recursive_find_trainer_class_by_name(name)
    except RuntimeError as error:
        raise UnknownTrainerError(
            f"unknown trainer {name!r}: {did_you_mean(name, known_trainer_names())}it is neither one of ours "
            f"({', '.join(sorted(ours))}) nor an nnU-Net trainer nor in nnUNet_extTrainer") from error
