"""``compare``'s case gallery: the validation cases where the models disagree most, one picture per case.

A case's spread is the largest minus the smallest per-case Dice over the models. Each picture shows the case's
image (channel 0 of ``nnUNet_raw/<dataset>/imagesTr``), the reference, and each model's prediction as label
contours over the image, with the model's Dice on the case in its panel's title; in 3D the slice where the
predictions differ in the most voxels. The predictions are the ones nnU-Net wrote in each fold's validation
(``fold_X/validation/<case><file_ending>``), in the image's geometry, so image, reference and predictions share
their voxel grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .nnunet_layout import raw_training_image, validation_summary

if TYPE_CHECKING:  # numpy, pandas and matplotlib are imported where used: the CLI reads GALLERY_CASES at start-up
    import numpy as np
    import pandas as pd

#: cases shown by default
GALLERY_CASES = 6


def disagreement_cases(per_case: pd.DataFrame, count: int) -> list[str]:
    """The ``count`` cases of ``per_case`` (``case x model`` Dice) with the largest spread over the models, largest
    first (ties in case order)."""
    spread = per_case.max(axis=1) - per_case.min(axis=1)
    return list(spread.sort_values(ascending=False, kind="stable").index[:count])


def most_disagreeing_slice(segmentations: list[np.ndarray]) -> int:
    """The index along the first axis (SimpleITK's z) of the slice where the most voxels are not labelled alike
    by all ``segmentations`` (arrays of one shape); the first such slice on a tie."""
    import numpy as np

    stacked = np.stack(segmentations)
    differing = (stacked != stacked[:1]).any(axis=0)
    return int(differing.reshape(differing.shape[0], -1).sum(axis=1).argmax())


@dataclass(frozen=True)
class CaseFiles:
    """One case's image, reference and each model's validation prediction (model name -> file)."""

    image: Path
    reference: Path
    predictions: dict[str, Path]


def case_files(case: str, metrics: pd.DataFrame, model_folders: dict[str, Path], dataset_name: str,
               file_ending: str) -> CaseFiles | str:
    """Where ``case``'s files are (``metrics``: rows as ``read_validation`` gives them, which fold validated the case
    per model); a message saying what is missing instead."""
    image = raw_training_image(dataset_name, case, file_ending)
    if image is None or not image.is_file():
        return f"gallery: no image for case {case} ({image or 'nnUNet_raw is not set'})"
    predictions, reference = {}, None
    for model, folder in model_folders.items():
        fold = metrics[(metrics["model"] == model) & (metrics["case"] == case)]["fold"].iloc[0]
        validation = validation_summary(folder, fold).parent
        predictions[model] = validation / f"{case}{file_ending}"
        if not predictions[model].is_file():
            return f"gallery: {model} has no validation prediction of case {case} ({predictions[model]})"
        reference = reference or _reference_file(validation, case)
    return CaseFiles(image, reference, predictions)


def _reference_file(validation: Path, case: str) -> Path:
    """The reference nnU-Net validated ``case`` against (its summary's ``reference_file``)."""
    import json

    summary = json.loads((validation / "summary.json").read_text())
    return next(Path(entry["reference_file"]) for entry in summary["metric_per_case"]
                if Path(entry["reference_file"]).name.split(".")[0] == case)


def contour_labels(segmentations: list) -> list[int]:
    """The foreground labels in any of ``segmentations`` (arrays), sorted: each gets a contour colour and a legend
    entry; the background gets neither."""
    import numpy as np

    return sorted({int(value) for segmentation in segmentations for value in np.unique(segmentation)} - {0})


def panel_title(name: str, width: int = 22) -> str:
    """``name`` broken into lines of at most ``width`` characters where it has an underscore (a long trainer name
    on one line runs into its neighbours' titles)."""
    lines: list[str] = []
    for part in name.split("_"):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "_" + part
        else:
            lines.append(part if not lines else "_" + part)
    return "\n".join(lines)


def gallery_picture(case: str, files: CaseFiles, dice: dict[str, float], names: dict[str, str],
                    label_names: dict[str, str], path: Path) -> None:
    """The case's picture (see the module docstring): image, reference, then one panel per model."""
    import numpy as np
    import SimpleITK as sitk
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from .compare_pictures import DPI

    def read(file: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(file)))

    image, reference = read(files.image), read(files.reference)
    predictions = {model: read(file) for model, file in files.predictions.items()}
    if image.ndim == 2:  # a 2D image: one slice
        image, reference = image[None], reference[None]
        predictions = {model: array[None] for model, array in predictions.items()}
    z = most_disagreeing_slice(list(predictions.values()))
    shown = np.clip(image[z], *np.percentile(image[z], (1, 99)))
    labels = contour_labels([reference, *predictions.values()])
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    panels = [("image", None), ("reference", reference[z])] + [
        (f"{panel_title(names[model])}\nDice {dice[model]:.3f}", array[z]) for model, array in predictions.items()]
    figure = Figure(figsize=(2.6 * len(panels), 3.2))
    for axes, (title, segmentation) in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels):
        axes.imshow(shown, cmap="gray", interpolation="nearest")
        for label in labels if segmentation is not None else ():
            if (segmentation == label).any():
                axes.contour(segmentation == label, levels=[0.5], colors=[colours[label]], linewidths=1.0)
        axes.set_title(title, fontsize=8)
        axes.set_axis_off()
    handles = [Line2D([], [], color=colours[label], label=label_names.get(str(label), f"label {label}"))
               for label in labels]
    slice_note = f", slice {z} of {image.shape[0]}" if image.shape[0] > 1 else ""
    figure.legend(handles=handles, loc="lower center", ncol=max(1, len(handles)), fontsize=8, frameon=False)
    figure.suptitle(f"case {case}{slice_note}: Dice spread {max(dice.values()) - min(dice.values()):.3f}",
                    fontsize=9)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
