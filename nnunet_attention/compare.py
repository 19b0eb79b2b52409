"""``nnunet-attention compare``: trainers side by side on nnU-Net's cross-validation, with spread and paired tests.

Reads what ``nnUNetv2_train`` leaves per fold (``fold_X/validation/summary.json``: per validation case and
label, Dice and nnU-Net's other metrics) for every trainer x configuration asked for, and writes:

- ``leaderboard.md`` / ``.csv`` / ``.json``: per model the mean Dice per label and over labels (nnU-Net's
  foreground mean), the standard deviation over cases, the mean per fold, and the rank; for every model but
  the baseline, the mean paired difference of per-case Dice to the baseline (a case's Dice: the mean over its
  labels) with a bootstrap 95% confidence interval (scipy), Wilcoxon's signed-rank test on the same cases
  (scipy) and its p-value Holm-corrected over the comparisons (statsmodels);
- ``dice_per_case.png``: per label, each model's per-case Dice as a box with the cases as points;
- with ``--with-cost``: the benchmark's cost of each model's network on its own plan beside nnU-Net's U-Net
  (parameters, GFLOPs, step-time and peak-memory ratios) as columns, and ``dice_vs_cost.png``;
- with ``--boundary``: per model the mean HD95 (mm) and normalized surface Dice at a stated tolerance, over its
  cases and labels, computed per case by MONAI from the fold's validation predictions and the references.

Models are compared on the cases every one of them validated (the cross-validation set of the folds asked
for); what is missing (a fold not trained or not finished, cases that differ) is said, not silently averaged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UsageError
from .nnunet_layout import model_folder, model_folder_parts, validation_summary

#: bootstrap resamples of the confidence interval, and its seed (a leaderboard must not change between runs)
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 10_000, 0


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


def read_validation(model: Model, results_folder: Path, dataset_name: str, folds: list[str]) -> tuple[
        pd.DataFrame, list[str]]:
    """Per validation case and label one row (model, fold, case, label, and nnU-Net's metrics), and a message
    per fold whose validation summary is missing."""
    rows, missing = [], []
    folder = model.folder(results_folder, dataset_name)
    if not folder.is_dir():
        siblings = folder.parent.glob(f"{model.trainer}__*__{model.configuration}")
        others = sorted(model_folder_parts(sibling)[1] for sibling in siblings)
        hint = f"; it was trained with plans {', '.join(others)}: pass -p" if others else ""
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


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_models` found: per-case Dice on the common cases, the leaderboard, the messages."""

    per_case: pd.DataFrame
    leaderboard: pd.DataFrame
    messages: list[str]


def per_case_dice(metrics: pd.DataFrame) -> pd.DataFrame:
    """``(case x model)``: each case's Dice, the mean over its labels (labels absent from reference and prediction,
    Dice NaN in nnU-Net's summary, left out)."""
    return metrics.pivot_table(index="case", columns="model", values="Dice", aggfunc="mean")


def holm(p_values: list[float]) -> list[float]:
    from statsmodels.stats.multitest import multipletests

    return list(multipletests(p_values, method="holm")[1]) if p_values else []


def compare_models(metrics: pd.DataFrame, baseline: str, messages: list[str]) -> Comparison:
    """The leaderboard of the models in ``metrics`` (rows as :func:`read_validation` gives them), on the cases all
    of them validated, against ``baseline`` (a model name)."""
    from scipy import stats

    messages = list(messages)
    cases_per_model = metrics.groupby("model")["case"].apply(set)
    common = set.intersection(*cases_per_model)
    for model, cases in cases_per_model.items():
        if cases != common:
            messages.append(f"{model}: {len(cases - common)} of its {len(cases)} validation cases are not validated "
                            f"by every model; all models are compared on the {len(common)} common cases")
    metrics = metrics[metrics["case"].isin(common)]
    per_case = per_case_dice(metrics)
    per_label = metrics.pivot_table(index="model", columns="label", values="Dice", aggfunc="mean")
    rows = []
    for model in per_label.index:
        row = {"model": model, **{f"Dice label {label}": per_label.loc[model, label] for label in per_label.columns},
               "Dice": per_label.loc[model].mean(), "std over cases": per_case[model].std(ddof=1),
               "cases": len(common)}
        for boundary in ("HD95", "NSD"):
            if boundary in metrics:
                row[boundary] = metrics[metrics["model"] == model][boundary].mean()
        folds = metrics[metrics["model"] == model].groupby("fold")["Dice"].mean()
        row.update({f"fold {fold}": value for fold, value in folds.items()})
        if model != baseline and baseline in per_case:
            difference = (per_case[model] - per_case[baseline]).to_numpy()
            interval = stats.bootstrap((difference,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES,
                                       confidence_level=0.95, random_state=BOOTSTRAP_SEED).confidence_interval
            row.update({"difference to baseline": difference.mean(), "CI 95% low": interval.low,
                        "CI 95% high": interval.high,
                        "Wilcoxon p": stats.wilcoxon(per_case[model], per_case[baseline]).pvalue})
        rows.append(row)
    leaderboard = pd.DataFrame(rows).sort_values("Dice", ascending=False).reset_index(drop=True)
    leaderboard.insert(0, "rank", leaderboard.index + 1)
    if "Wilcoxon p" in leaderboard:
        tested = leaderboard["Wilcoxon p"].notna()
        leaderboard.loc[tested, "Wilcoxon p (Holm)"] = holm(leaderboard.loc[tested, "Wilcoxon p"].tolist())
    if baseline not in per_case:
        messages.append(f"the baseline {baseline} has no validation results here: no differences or tests")
    return Comparison(per_case, leaderboard, messages)


def dice_box_plot(metrics: pd.DataFrame, path: Path) -> None:
    """Per label a panel: each model's per-case Dice as a box, the cases as jittered points over it."""
    from matplotlib.figure import Figure

    labels = sorted(metrics["label"].unique(), key=str)
    models = sorted(metrics["model"].unique())
    figure = Figure(figsize=(max(4.0, 1.6 * len(models)) * len(labels), 4.2))
    generator = np.random.default_rng(0)
    panels = np.atleast_1d(figure.subplots(1, len(labels), sharey=True))
    panels[0].set_ylabel("Dice per case")
    panels[0].set_ylim(0, 1.02)  # Dice's whole range: panels and runs compare at a glance
    for axes, label in zip(panels, labels):
        values = [metrics[(metrics["label"] == label) & (metrics["model"] == m)]["Dice"].dropna().to_numpy()
                  for m in models]
        axes.boxplot(values, showfliers=False)
        for position, dice in enumerate(values, start=1):
            axes.scatter(position + generator.uniform(-0.15, 0.15, len(dice)), dice, s=8, alpha=0.6)
        axes.set_xticks(range(1, len(models) + 1), [m.removeprefix("nnUNetTrainer") for m in models], rotation=30,
                        ha="right", fontsize=7)
        axes.set_title(f"label {label}", fontsize=9)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def markdown(leaderboard: pd.DataFrame) -> str:
    """The leaderboard as a markdown table, Dice and differences to 4 decimals, p-values to 2 significant digits."""
    def cell(column: str, value) -> str:
        if isinstance(value, float):
            if np.isnan(value):
                return ""
            return f"{value:.2g}" if column.startswith("Wilcoxon") else f"{value:.4f}"
        return str(value)

    columns = list(leaderboard.columns)
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    rows += ["| " + " | ".join(cell(c, row[c]) for c in columns) + " |" for _, row in leaderboard.iterrows()]
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


#: cost columns: (column, benchmark Measurement attribute, relative to nnU-Net's U-Net)
COST_COLUMNS = (("params (M)", "parameters", False), ("GFLOPs / patch", "gflops", False),
                ("train step x U-Net", "step_seconds", True), ("peak memory x U-Net", "peak_mib", True))


def cost_of_models(models: list[Model], results_folder: Path, dataset_name: str, device: str,
                   steps: int) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per model the benchmark's cost on its own plan (the model folder's plans.json), each network in a fresh
    process beside nnU-Net's U-Net on the same plan: parameters, GFLOPs, step-time and memory ratios."""
    from .benchmark import run_benchmark
    from .planned_configuration import PlannedConfiguration
    from .registry import REFERENCE_TRAINER, base_trainer

    costs, messages = {}, []
    for configuration in dict.fromkeys(model.configuration for model in models):
        chosen = [m for m in models if m.configuration == configuration
                  and (m.folder(results_folder, dataset_name) / "plans.json").is_file()]
        if not chosen:
            continue
        plan = PlannedConfiguration.from_plans_file(chosen[0].folder(results_folder, dataset_name) / "plans.json",
                                                    configuration)
        networks = {m.name: base_trainer(m.trainer) for m in chosen}
        messages += [f"{name}: no registered network to measure its cost" for name, n in networks.items() if not n]
        ours = sorted({n for n in networks.values() if n and n != REFERENCE_TRAINER})
        measured = next(iter(run_benchmark([plan], device, steps, None, ours, with_inference=False).values()))
        for name, network in networks.items():
            if network:
                costs[name] = {column: getattr(measured[network], attribute)
                               / (getattr(measured[REFERENCE_TRAINER], attribute) if relative else 1)
                               for column, attribute, relative in COST_COLUMNS}
                costs[name]["params (M)"] /= 1e6
    return costs, messages


def dice_vs_cost_plot(leaderboard: pd.DataFrame, path: Path) -> None:
    """Mean Dice against the step-time and the memory ratio to nnU-Net's U-Net, one point per model."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2))
    for axes, column in zip(figure.subplots(1, 2, sharey=True), ("train step x U-Net", "peak memory x U-Net")):
        axes.scatter(leaderboard[column], leaderboard["Dice"])
        for _, row in leaderboard.iterrows():
            axes.annotate(row["model"].removeprefix("nnUNetTrainer"), (row[column], row["Dice"]), fontsize=7)
        axes.axvline(1.0, color="grey", linewidth=0.8)
        axes.set_xlabel(column)
    figure.axes[0].set_ylabel("mean Dice (cross-validation)")
    figure.savefig(path, dpi=110, bbox_inches="tight")


def run_compare(dataset_name: str, results_folder: Path, configurations: list[str], trainers: list[str], plans: str,
                folds: list[str], baseline_trainer: str, output: Path, cost_device: str | None = None,
                cost_steps: int = 3, boundary_tolerance_mm: float | None = None) -> Comparison:
    """Read every trainer x configuration, compare them against ``baseline_trainer`` (in the first configuration)
    and write the leaderboard and the plots into ``output``; with ``cost_device``, the benchmark's cost columns
    and a Dice-vs-cost plot; with ``boundary_tolerance_mm``, mean HD95 and normalized surface Dice at that
    tolerance (MONAI) per model. A ValueError where no model has results."""
    models = [Model(trainer, plans, configuration) for configuration in configurations for trainer in trainers]
    frames, messages = [], []
    for model in models:
        frame, missing = read_validation(model, results_folder, dataset_name, folds)
        messages += missing
        if not frame.empty:
            frames.append(frame)
    if not frames:
        raise UsageError("no validation results for any of these models: " + "; ".join(messages))
    metrics = pd.concat(frames, ignore_index=True)
    if boundary_tolerance_mm is not None:
        metrics = add_boundary_metrics(metrics, models, results_folder, dataset_name, boundary_tolerance_mm)
    comparison = compare_models(metrics, Model(baseline_trainer, plans, configurations[0]).name, messages)
    output.mkdir(parents=True, exist_ok=True)
    if cost_device is not None:
        compared = [m for m in models if m.name in set(comparison.leaderboard["model"])]
        costs, cost_messages = cost_of_models(compared, results_folder, dataset_name, cost_device, cost_steps)
        comparison.messages.extend(cost_messages)
        for column, _, _ in COST_COLUMNS:
            comparison.leaderboard[column] = [costs.get(name, {}).get(column, np.nan)
                                              for name in comparison.leaderboard["model"]]
        dice_vs_cost_plot(comparison.leaderboard.dropna(subset=[COST_COLUMNS[-1][0]]), output / "dice_vs_cost.png")
    comparison.leaderboard.to_csv(output / "leaderboard.csv", index=False)
    records = json.loads(comparison.leaderboard.to_json(orient="records", double_precision=15))
    (output / "leaderboard.json").write_text(json.dumps(
        {"leaderboard": records, "messages": comparison.messages, "folds": folds,
         "baseline": Model(baseline_trainer, plans, configurations[0]).name}, indent=2))
    (output / "leaderboard.md").write_text(markdown(comparison.leaderboard) + "\n\n"
                                           + "".join(f"- {message}\n" for message in comparison.messages))
    dice_box_plot(metrics[metrics["case"].isin(comparison.per_case.index)], output / "dice_per_case.png")
    return comparison
