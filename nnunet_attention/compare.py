"""``nnunet-attention compare``: trainers side by side on nnU-Net's cross-validation, with spread, paired tests,
removal controls, rank stability, a case gallery and one HTML report.

Reads what ``nnUNetv2_train`` leaves per fold (``fold_X/validation/summary.json``: per validation case and
label, Dice and nnU-Net's other metrics) for every trainer x configuration asked for, and writes into the output
folder:

- ``leaderboard.md`` / ``.csv`` / ``.json``: per model the mean Dice per label (named as in ``dataset.json``) and
  over labels (nnU-Net's foreground mean), the standard deviation over cases, the mean per fold, and the rank; for
  every model but the baseline the paired difference of per-case Dice to the baseline (a case's Dice: the mean
  over its labels) with its bootstrap 95% CI and Wilcoxon's test (:mod:`.compare_statistics`);
- with ``--controls``: ``controls.md`` / ``.csv``, each attention trainer beside its removal control
  (``nnUNetTrainerX_NoAttention``, the same network without its attention): the attention's contribution as a
  paired difference with its CI and test. The Wilcoxon p-values of the leaderboard and of the controls table are
  Holm-corrected together: they are the report's comparisons;
- ``rank_distribution.png`` (each model's rank over bootstrap resamples of the cases) and ``significance.png``
  (every pair's Wilcoxon p-value, Holm-corrected over the pairs) with ``rank_distribution.csv`` and
  ``significance.csv``;
- ``dice_per_case.png``, and ``gallery/``: the cases where the models disagree most, each model's prediction over
  the image (:mod:`.compare_gallery`);
- with ``--with-cost``: the benchmark's cost columns (:mod:`.compare_cost`) and ``dice_vs_cost.png``;
- with ``--boundary``: per model the mean HD95 (mm) and normalized surface Dice at a stated tolerance, computed per
  case by MONAI from the fold's validation predictions and the references;
- ``report.html``: all of it in one self-contained page (:mod:`.compare_report`).

Models are compared on the cases every one of them validated (the cross-validation set of the folds asked
for); what is missing (a fold not trained or not finished, cases that differ, a control not trained) is said,
not silently averaged. The command itself (reading, then writing every file) is :mod:`.compare_command`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .nnunet_layout import model_folder, model_folder_parts, validation_summary
from .registry import did_you_mean


@dataclass(frozen=True)
class Model:
    """One trained model: ``nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>``."""

    trainer: str
    plans: str
    configuration: str

    @property
    def name(self) -> str:
        return f"{self.trainer} {self.configuration}"

    def folder(self, results_folder: Path, dataset_name: str) -> Path:
        return model_folder(results_folder, dataset_name, self.trainer, self.plans, self.configuration)


def readable_names(models: list[Model]) -> dict[str, str]:
    """Model name -> how pictures show it: the trainer without nnU-Net's ``nnUNetTrainer`` prefix (nnU-Net's own
    U-Net as ``U-Net``), with the configuration and the plans where the models differ in them."""
    with_configuration = len({m.configuration for m in models}) > 1
    with_plans = len({m.plans for m in models}) > 1
    names = {}
    for model in models:
        short = model.trainer.removeprefix("nnUNetTrainer")
        parts = [f"U-Net{short}" if short == "" or short.startswith("_") else short]
        parts += [model.configuration] * with_configuration + [model.plans] * with_plans
        names[model.name] = " ".join(parts)
    return names


def read_validation(model: Model, results_folder: Path, dataset_name: str, folds: list[str]) -> tuple[
        pd.DataFrame, list[str]]:
    """Per validation case and label one row (model, fold, case, label, and nnU-Net's metrics), and a message
    per fold whose validation summary is missing."""
    rows, missing = [], []
    folder = model.folder(results_folder, dataset_name)
    if not folder.is_dir():
        siblings = folder.parent.glob(f"{model.trainer}__*__{model.configuration}")
        others = sorted(model_folder_parts(sibling)[1] for sibling in siblings)
        if others:
            hint = f"; it was trained with plans {', '.join(others)}: pass -p"
        else:  # a misspelt trainer: the closest one trained on this dataset
            trained = {model_folder_parts(sibling)[0] for sibling in folder.parent.glob("*__*__*")}
            closest = did_you_mean(model.trainer, sorted(trained)).strip()
            hint = f"; {closest}" if closest else ""
        return pd.DataFrame(), [f"{model.name}: no model folder {folder.name} in {folder.parent}{hint}"]
    for fold in folds:
        summary_file = validation_summary(folder, fold)
        if not summary_file.is_file():
            missing.append(f"{model.name}: fold {fold} has no validation summary ({summary_file}): not trained, "
                           f"or its training or validation did not finish (nnunet-attention train-grid runs what "
                           f"is missing)")
            continue
        for case in json.loads(summary_file.read_text())["metric_per_case"]:
            case_id = Path(case["reference_file"]).name.split(".")[0]
            for label, metrics in case["metrics"].items():
                rows.append({"model": model.name, "fold": fold, "case": case_id, "label": label, **metrics})
    return pd.DataFrame(rows), missing


def label_names(models: list[Model], results_folder: Path, dataset_name: str) -> dict[str, str]:
    """nnU-Net's label key in the summaries (``"1"``, or ``"(1, 2)"`` for a region) -> its name in the
    ``dataset.json`` of the first model folder that has one; empty where none has."""
    for model in models:
        dataset_json = model.folder(results_folder, dataset_name) / "dataset.json"
        if dataset_json.is_file():
            labels = json.loads(dataset_json.read_text())["labels"]
            return {str(tuple(v) if isinstance(v, list) else v): name for name, v in labels.items()}
    return {}


def per_case_dice(metrics: pd.DataFrame) -> pd.DataFrame:
    """``(case x model)``: each case's Dice, the mean over its labels (labels absent from reference and prediction,
    Dice NaN in nnU-Net's summary, left out)."""
    return metrics.pivot_table(index="case", columns="model", values="Dice", aggfunc="mean")


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_models` found: per-case Dice on the common cases, the leaderboard, the messages, and the
    controls table (empty without controls)."""

    per_case: pd.DataFrame
    leaderboard: pd.DataFrame
    messages: list[str]
    controls: pd.DataFrame = field(default_factory=pd.DataFrame)


def compare_models(metrics: pd.DataFrame, baseline: str, messages: list[str],
                   control_pairs: list[tuple[str, str]] = (), names_of_labels: dict[str, str] | None = None
                   ) -> Comparison:
    """The leaderboard of the models in ``metrics`` (rows as :func:`read_validation` gives them), on the cases all
    of them validated, against ``baseline`` (a model name); and for each ``(model, its control)`` of
    ``control_pairs`` the attention's contribution. Labels are shown by ``names_of_labels`` where given."""
    from .compare_statistics import holm, paired_difference, too_few_cases_message

    messages = list(messages)
    names_of_labels = names_of_labels or {}
    cases_per_model = metrics.groupby("model")["case"].apply(set)
    common = set.intersection(*cases_per_model)
    for model, cases in cases_per_model.items():
        if cases != common:
            messages.append(f"{model}: {len(cases - common)} of its {len(cases)} validation cases are not validated "
                            f"by every model; all models are compared on the {len(common)} common cases")
    few_cases = too_few_cases_message(len(common))
    if few_cases:
        messages.append(few_cases)
    few_cases_note = {"note": f"no CI: {len(common)} cases"} if few_cases else {}  # on every tested row
    metrics = metrics[metrics["case"].isin(common)]
    per_case = per_case_dice(metrics)
    per_label = metrics.pivot_table(index="model", columns="label", values="Dice", aggfunc="mean")
    rows = []
    for model in per_label.index:
        row = {"model": model, **{f"Dice {names_of_labels.get(label, f'label {label}')}": per_label.loc[model, label]
                                  for label in per_label.columns},
               "Dice": per_label.loc[model].mean(), "std over cases": per_case[model].std(ddof=1),
               "cases": len(common)}
        for boundary in ("HD95", "NSD"):
            if boundary in metrics:
                row[boundary] = metrics[metrics["model"] == model][boundary].mean()
        folds = metrics[metrics["model"] == model].groupby("fold")["Dice"].mean()
        row.update({f"fold {fold}": value for fold, value in folds.items()})
        if model != baseline and baseline in per_case:
            tested = paired_difference(per_case[model], per_case[baseline])
            row.update({"difference to baseline": tested.pop("difference"), **tested, **few_cases_note})
        rows.append(row)
    leaderboard = pd.DataFrame(rows).sort_values("Dice", ascending=False).reset_index(drop=True)
    leaderboard.insert(0, "rank", leaderboard.index + 1)
    if baseline not in per_case:
        messages.append(f"the baseline {baseline} has no validation results here: no differences or tests")
    controls = pd.DataFrame([
        {"model": model, "control": control, "Dice": per_case[model].mean(), "Dice control": per_case[control].mean(),
         "cases": len(common), **{("attention's contribution" if key == "difference" else key): value
                                  for key, value in paired_difference(per_case[model], per_case[control]).items()},
         **few_cases_note}
        for model, control in control_pairs])
    # the report's comparisons, Holm-corrected as one family: the leaderboard's against the baseline, the controls'
    tested = [table for table in (leaderboard, controls) if "Wilcoxon p" in table]
    corrected = iter(holm([p for table in tested for p in table["Wilcoxon p"].dropna()]))
    for table in tested:
        present = table["Wilcoxon p"].notna()
        table.loc[present, "Wilcoxon p (Holm)"] = [next(corrected) for _ in range(int(present.sum()))]
    return Comparison(per_case, leaderboard, messages, controls)


def control_pairs_of(models: list[Model]) -> tuple[list[Model], list[tuple[Model, Model]]]:
    """For ``compare --controls``: the models to read (those given, plus each attention trainer's removal control
    in the same plans and configuration, also for schedule variants: ``nnUNetTrainerX_5epochs`` pairs with
    ``nnUNetTrainerX_NoAttention_5epochs``) and the ``(model, control)`` pairs."""
    from .registry import control_of

    pairs = [(model, Model(control_of(model.trainer), model.plans, model.configuration)) for model in models
             if control_of(model.trainer)]
    return list(dict.fromkeys([*models, *(control for _, control in pairs)])), pairs


def markdown(table: pd.DataFrame) -> str:
    """A table as markdown, Dice and differences to 4 decimals, p-values to 2 significant digits."""
    def cell(column: str, value) -> str:
        if isinstance(value, float):
            if np.isnan(value):
                return ""
            return f"{value:.2g}" if column.startswith("Wilcoxon") else f"{value:.4f}"
        return str(value)

    columns = list(table.columns)
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    rows += ["| " + " | ".join(cell(c, row[c]) for c in columns) + " |" for _, row in table.iterrows()]
    return "\n".join(rows)


def boundary_metrics(prediction_file: Path, reference_file: Path, labels: list[int],
                     tolerance_mm: float) -> dict[int, dict[str, float]]:
    """Per label: HD95 (mm, the 95th percentile of the symmetric surface distances) and normalized surface Dice
    at ``tolerance_mm``, by MONAI's metrics in the image's spacing; NaN where reference or prediction is empty."""
    import warnings

    import SimpleITK as sitk
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    prediction_image = sitk.ReadImage(str(prediction_file))
    prediction = sitk.GetArrayFromImage(prediction_image)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(reference_file)))
    spacing = list(prediction_image.GetSpacing())[::-1]  # array axis order
    one_hot = [torch.from_numpy(np.stack([array == label for label in labels]))[None] for array in (prediction,
                                                                                                   reference)]
    with warnings.catch_warnings():  # MONAI warns for empty masks and returns NaN or inf, reported as NaN here
        warnings.simplefilter("ignore")
        hd95 = compute_hausdorff_distance(*one_hot, include_background=True, percentile=95, spacing=spacing)[0]
        nsd = compute_surface_dice(*one_hot, class_thresholds=[tolerance_mm] * len(labels), include_background=True,
                                   spacing=spacing)[0]
    return {label: {"HD95": float(h) if np.isfinite(float(h)) else np.nan, "NSD": float(n)}
            for label, h, n in zip(labels, hd95, nsd)}


def add_boundary_metrics(metrics: pd.DataFrame, models: list[Model], results_folder: Path, dataset_name: str,
                         tolerance_mm: float) -> pd.DataFrame:
    """``metrics`` with HD95 and NSD columns computed from each fold's validation predictions and the references
    nnU-Net validated against (the summary's file names)."""
    rows = []
    for model in models:
        for fold in metrics[metrics["model"] == model.name]["fold"].unique():
            summary = validation_summary(model.folder(results_folder, dataset_name), fold)
            for case in json.loads(summary.read_text())["metric_per_case"]:
                labels = [int(label) for label in case["metrics"]]
                prediction = summary.parent / Path(case["prediction_file"]).name
                per_label = boundary_metrics(prediction, Path(case["reference_file"]), labels, tolerance_mm)
                case_id = Path(case["reference_file"]).name.split(".")[0]
                rows += [{"model": model.name, "case": case_id, "label": str(label), **values}
                         for label, values in per_label.items()]
    return metrics.merge(pd.DataFrame(rows), on=["model", "case", "label"], how="left")
