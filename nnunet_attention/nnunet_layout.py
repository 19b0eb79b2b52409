"""nnU-Net's folder layout, known here only: its three folders from the environment, a dataset's name from its
ID, where ``nnUNetv2_train`` writes a model and a fold, what it writes last, where a plans file lives, and where
its console commands are installed.

Nothing here imports torch; nnU-Net is imported only to turn a dataset ID into its name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UsageError

#: nnU-Net's three folders, as its commands read them from the environment
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: what nnU-Net writes last in a fold: its validation summary
FINISHED_MARKER = Path("validation") / "summary.json"
#: the checkpoints a fold folder may hold, the one ``--c`` resumes from among them
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


def nnunet_folder(variable: str) -> Path:
    """The folder in environment variable ``variable`` (one of :data:`NNUNET_FOLDERS`); a :class:`UsageError`
    saying what to set where it is not set."""
    value = os.environ.get(variable)
    if not value:
        raise UsageError(f"{variable} is not set: set {', '.join(NNUNET_FOLDERS)} as for nnUNetv2_train")
    return Path(value)


def results_folder() -> Path:
    """``$nnUNet_results``."""
    return nnunet_folder("nnUNet_results")


def dataset_name(dataset_id: int | str) -> str:
    """``Dataset027_ACDC`` for 27: the dataset folder nnU-Net finds in its raw, preprocessed or results folder; a
    :class:`UsageError` naming the folders it looked in where none has it."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(dataset_id)
    except RuntimeError as error:
        searched = ", ".join(f"{variable}={os.environ.get(variable, '(not set)')}" for variable in NNUNET_FOLDERS)
        raise UsageError(f"no dataset with ID {dataset_id} in nnU-Net's folders ({searched}); check -d and the "
                         f"three folders") from error


def model_folder(results: Path, dataset: str, trainer: str, plans: str, configuration: str) -> Path:
    """Where ``nnUNetv2_train`` writes a model: ``nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>``."""
    return results / dataset / f"{trainer}__{plans}__{configuration}"


def model_folder_parts(folder: Path) -> tuple[str, str, str]:
    """``(trainer, plans, configuration)`` of a model folder's name (see :func:`model_folder`)."""
    trainer, plans, configuration = folder.name.split("__")
    return trainer, plans, configuration


def fold_folder(model: Path, fold: int | str) -> Path:
    return model / f"fold_{fold}"


def validation_summary(model: Path, fold: int | str) -> Path:
    """The fold's ``validation/summary.json``: nnU-Net's per-case metrics of its validation, written last."""
    return fold_folder(model, fold) / FINISHED_MARKER


def raw_training_image(dataset: str, case: str, file_ending: str, channel: int = 0) -> Path | None:
    """``nnUNet_raw/<dataset>/imagesTr/<case>_<channel:04d><file_ending>``; None where ``nnUNet_raw`` is not set."""
    raw = os.environ.get("nnUNet_raw")
    return Path(raw) / dataset / "imagesTr" / f"{case}_{channel:04d}{file_ending}" if raw else None


def fold_state(model: Path, fold: int | str) -> str:
    """``"finished"`` (the validation summary exists), ``"interrupted"`` (a checkpoint without it: ``--c``
    continues, and reruns an interrupted validation) or ``"missing"``."""
    if validation_summary(model, fold).is_file():
        return "finished"
    folder = fold_folder(model, fold)
    return "interrupted" if any((folder / name).is_file() for name in CHECKPOINTS) else "missing"


def plans_file(dataset: str, plans: str) -> Path:
    """``nnUNet_preprocessed/<dataset>/<plans>.json``."""
    return nnunet_folder("nnUNet_preprocessed") / dataset / f"{plans}.json"


def console_command(name: str) -> list[str]:
    """How to start nnU-Net's console command ``name``: the script installed beside this Python where there is
    one (a virtual environment not on PATH), else the name for PATH to resolve."""
    script = Path(sys.executable).parent / name
    return [str(script) if script.exists() else name]
