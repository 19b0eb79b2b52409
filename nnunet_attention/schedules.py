"""Short-schedule trainer variants, written as modules that the stock nnU-Net commands can find.

nnU-Net has no command-line option for the number of epochs; its convention is a trainer subclass per
schedule (``nnUNetTrainer_5epochs``). :func:`write_short_schedule_trainer` writes such a subclass of any
trainer into a folder, to be listed in ``nnUNet_extTrainer`` (see :func:`with_ext_trainer_folder`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

_TEMPLATE = '''"""{base} on a short schedule ({epochs} epochs x {iterations} iterations), by nnunet-attention."""

import random

import numpy
import torch
from {module} import {base}


class {name}({base}):{class_attributes}
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}{seeding}{validation}
'''

#: seeds every generator a CPU run draws from: the network's initialisation (built after __init__), and with
#: nnUNet_n_proc_DA=0 the sampling and augmentation, which then run in the training process
_SEEDING = """
        random.seed({seed})
        numpy.random.seed({seed})
        torch.manual_seed({seed})"""


#: the final validation without test-time mirroring (nnU-Net mirrors every patch along each allowed axis: 4x the
#: prediction time in 2d, 8x in 3d); training and its augmentation are unchanged, and so is the checkpoint
_VALIDATION_WITHOUT_MIRRORING = """

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.inference_allowed_mirroring_axes = None
        super().perform_actual_validation(save_probabilities)"""


def short_schedule_name(base_trainer: str, epochs: int, iterations: int) -> str:
    return f"{base_trainer}_{epochs}epochs_{iterations}iters"


def write_short_schedule_trainer(
    folder: str | os.PathLike,
    base_trainer: type,
    epochs: int,
    iterations: int,
    val_iterations: int | None = None,
    architecture_kwargs: dict | None = None,
    seed: int | None = None,
    validation_mirroring: bool = True,
) -> str:
    """Write ``<base>_<E>epochs_<I>iters`` (a subclass of ``base_trainer``) into ``folder``; return its name.

    ``architecture_kwargs`` (literals only) are merged over the base trainer's, e.g. a narrower network for a
    CPU smoke run; the name then ends in ``_custom``. ``seed`` seeds Python's, NumPy's and PyTorch's generators
    when the trainer is created: a CPU run with ``nnUNet_n_proc_DA=0`` is then repeatable on one machine (the name
    ends in ``_seed<N>``). Without ``validation_mirroring`` the final validation predicts without test-time
    mirroring (the name ends in ``_nomirror``), for runs whose validation only has to run, not to score best.
    """
    if epochs < 1 or iterations < 1:
        raise UsageError(f"epochs and iterations must be at least 1, got {epochs} and {iterations}")
    name = short_schedule_name(base_trainer.__name__, epochs, iterations) + ("_custom" if architecture_kwargs else "")
    name += ("" if seed is None else f"_seed{seed}") + ("" if validation_mirroring else "_nomirror")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = _TEMPLATE.format(
        base=base_trainer.__name__,
        module=base_trainer.__module__,
        name=name,
        class_attributes=architecture_kwargs_override(base_trainer.__name__, architecture_kwargs),
        epochs=epochs,
        iterations=iterations,
        val_iterations=val_iterations if val_iterations is not None else max(1, iterations // 2),
        seeding="" if seed is None else _SEEDING.format(seed=seed),
        validation="" if validation_mirroring else _VALIDATION_WITHOUT_MIRRORING,
    )
    (folder / f"{name}.py").write_text(source)
    return name


def architecture_kwargs_override(base_trainer_name: str, architecture_kwargs: dict | None) -> str:
    """Source of a class attribute that merges ``architecture_kwargs`` (literals) over the base trainer's, for a
    subclass written as a module; empty without ``architecture_kwargs``."""
    if not architecture_kwargs:
        return ""
    return f"\n    architecture_kwargs = {{**{base_trainer_name}.architecture_kwargs, **{architecture_kwargs!r}}}\n"


def with_ext_trainer_folder(environment: dict[str, str], folder: str | os.PathLike) -> dict[str, str]:
    """A copy of ``environment`` whose ``nnUNet_extTrainer`` also lists ``folder`` (kept entries first)."""
    entries = [p for p in environment.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if str(folder) not in entries:
        entries.append(str(folder))
    return {**environment, "nnUNet_extTrainer": os.pathsep.join(entries)}
