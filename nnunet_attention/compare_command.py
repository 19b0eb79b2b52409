"""``nnunet-attention compare`` from the models' folders to the output folder: read every model's validation,
compare (:mod:`.compare`, :mod:`.compare_statistics`), and write the tables, pictures, gallery and report (what
each file holds: :mod:`.compare`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .compare import (
    Comparison,
    Model,
    add_boundary_metrics,
    compare_models,
    control_pairs_of,
    label_names,
    markdown,
    read_validation,
    readable_names,
)
from .errors import UsageError


def run_compare(dataset_name: str, results_folder: Path, configurations: list[str], trainers: list[str], plans: str,
                folds: list[str], baseline_trainer: str, output: Path, cost_device: str | None = None,
                cost_steps: int = 3, boundary_tolerance_mm: float | None = None, controls: bool = False,
                gallery_cases: int = 6) -> Comparison:
    """Compare every trainer x configuration against ``baseline_trainer`` (in the first configuration) and write
    everything into ``output``: with ``controls`` each attention trainer beside its removal control; with
    ``cost_device`` the benchmark's cost columns; with ``boundary_tolerance_mm`` HD95 and NSD (MONAI);
    ``gallery_cases`` cases in the gallery. A UsageError where no model has results."""
    from . import compare_pictures as pictures
    from .compare_statistics import RANK_RESAMPLES, rank_distribution, significance_matrix

    models = [Model(trainer, plans, configuration) for configuration in configurations for trainer in trainers]
    pairs: list[tuple[Model, Model]] = []
    if controls:
        models, pairs = control_pairs_of(models)
    frames, messages = [], []
    for model in models:
        frame, missing = read_validation(model, results_folder, dataset_name, folds)
        messages += missing
        if not frame.empty:
            frames.append(frame)
    if not frames:
        raise UsageError("no validation results for any of these models: " + "; ".join(messages))
    metrics = pd.concat(frames, ignore_index=True)
    present = set(metrics["model"])
    for model, control in pairs:
        if model.name in present and control.name not in present:
            messages.append(f"{model.name}: its removal control {control.trainer} has no validation results; train "
                            f"it with nnunet-attention train-grid -tr {control.trainer} (the same -c, -p, -f)")
    pairs = [(m, c) for m, c in pairs if m.name in present and c.name in present]
    models = [m for m in models if m.name in present]
    if boundary_tolerance_mm is not None:
        metrics = add_boundary_metrics(metrics, models, results_folder, dataset_name, boundary_tolerance_mm)
    labels = label_names(models, results_folder, dataset_name)
    baseline = Model(baseline_trainer, plans, configurations[0]).name
    comparison = compare_models(metrics, baseline, messages, [(m.name, c.name) for m, c in pairs], labels)
    names = readable_names(models)
    output.mkdir(parents=True, exist_ok=True)
    if cost_device is not None:
        add_cost_columns(comparison, models, results_folder, dataset_name, cost_device, cost_steps)
        pictures.dice_vs_cost_plot(comparison.leaderboard.dropna(subset=["peak memory x U-Net"]), names,
                                   output / "dice_vs_cost.png")
    write_tables(comparison, output, folds, baseline)
    common = metrics[metrics["case"].isin(comparison.per_case.index)]
    pictures.dice_box_plot(common, names, labels, output / "dice_per_case.png")
    ranks = rank_distribution(comparison.per_case)
    ranks.to_csv(output / "rank_distribution.csv", index_label="model")
    pictures.rank_blob_plot(ranks, names, RANK_RESAMPLES, output / "rank_distribution.png")
    significance = significance_matrix(comparison.per_case)
    significance.to_csv(output / "significance.csv", index_label="model")
    pictures.significance_heatmap(significance, names, output / "significance.png")
    gallery = write_gallery(comparison, common, models, results_folder, dataset_name, names, labels,
                            output / "gallery", gallery_cases)
    write_html_report(comparison, output, dataset_name, configurations, plans, folds, baseline, names, gallery,
                      with_cost=cost_device is not None)
    return comparison


def add_cost_columns(comparison: Comparison, models: list[Model], results_folder: Path, dataset_name: str,
                     device: str, steps: int) -> None:
    """The leaderboard with the benchmark's cost columns (:mod:`.compare_cost`), NaN where not measured."""
    from .compare_cost import COST_COLUMNS, cost_of_models

    compared = [m for m in models if m.name in set(comparison.leaderboard["model"])]
    costs, cost_messages = cost_of_models(compared, results_folder, dataset_name, device, steps)
    comparison.messages.extend(cost_messages)
    for column, _, _ in COST_COLUMNS:
        comparison.leaderboard[column] = [costs.get(name, {}).get(column, np.nan)
                                          for name in comparison.leaderboard["model"]]


def write_tables(comparison: Comparison, output: Path, folds: list[str], baseline: str) -> None:
    """``leaderboard.md`` / ``.csv`` / ``.json``, and with controls ``controls.md`` / ``.csv``."""
    comparison.leaderboard.to_csv(output / "leaderboard.csv", index=False)
    records = json.loads(comparison.leaderboard.to_json(orient="records", double_precision=15))
    controls = json.loads(comparison.controls.to_json(orient="records", double_precision=15))
    (output / "leaderboard.json").write_text(json.dumps(
        {"leaderboard": records, "controls": controls, "messages": comparison.messages, "folds": folds,
         "baseline": baseline}, indent=2))
    (output / "leaderboard.md").write_text(markdown(comparison.leaderboard) + "\n\n"
                                           + "".join(f"- {message}\n" for message in comparison.messages))
    if not comparison.controls.empty:
        comparison.controls.to_csv(output / "controls.csv", index=False)
        (output / "controls.md").write_text(markdown(comparison.controls) + "\n")


def write_gallery(comparison: Comparison, metrics: pd.DataFrame, models: list[Model], results_folder: Path,
                  dataset_name: str, names: dict[str, str], labels: dict[str, str], folder: Path,
                  count: int) -> list[Path]:
    """One picture per case where the models disagree most (:mod:`.compare_gallery`); what cannot be shown is
    said in the comparison's messages. Returns the pictures written."""
    from .compare_gallery import case_files, disagreement_cases, gallery_picture

    folders = {m.name: m.folder(results_folder, dataset_name) for m in models}
    file_ending = json.loads((next(iter(folders.values())) / "dataset.json").read_text())["file_ending"]
    folder.mkdir(exist_ok=True)
    written = []
    for case in disagreement_cases(comparison.per_case, count):
        files = case_files(case, metrics, folders, dataset_name, file_ending)
        if isinstance(files, str):
            comparison.messages.append(files)
            continue
        written.append(folder / f"{case}.png")
        gallery_picture(case, files, comparison.per_case.loc[case].to_dict(), names, labels, written[-1])
    return written


def write_html_report(comparison: Comparison, output: Path, dataset_name: str, configurations: list[str], plans: str,
                      folds: list[str], baseline: str, names: dict[str, str], gallery: list[Path],
                      with_cost: bool) -> None:
    """``report.html`` (:mod:`.compare_report`) from the tables and the pictures already in ``output``."""
    from .compare_report import table_html, write_report
    from .compare_statistics import RANK_RESAMPLES

    header = [f"dataset {dataset_name}; configurations {', '.join(configurations)}; plans {plans}; folds "
              f"{', '.join(folds)}",
              f"{len(comparison.per_case)} cases validated by every model; baseline {names.get(baseline, baseline)}",
              "models: " + "; ".join(f"{readable} = {name}" for name, readable in names.items()),
              *(f"left out: {message}" for message in comparison.messages)]
    sections = [("Leaderboard", table_html(comparison.leaderboard), [])]
    if not comparison.controls.empty:
        sections.append(("Is it the attention? Each trainer beside its removal control",
                         "<p>attention's contribution: the trainer's per-case Dice minus its control's (the same "
                         "network without its attention), paired on the same cases; Wilcoxon p-values Holm-corrected "
                         "together with the leaderboard's.</p>" + table_html(comparison.controls), []))
    sections += [
        ("Rank stability", "", [(output / "rank_distribution.png",
                                 f"each model's rank over {RANK_RESAMPLES} bootstrap resamples of the cases")]),
        ("Pairwise significance", "", [(output / "significance.png",
                                        "Wilcoxon signed-rank p-value of every pair, Holm-corrected over the pairs")]),
        ("Per-case Dice", "", [(output / "dice_per_case.png", "per label, each model's per-case Dice")]),
    ]
    if with_cost:
        sections.append(("Dice against cost", "", [(output / "dice_vs_cost.png",
                                                    "mean Dice against step-time and memory ratio to the U-Net")]))
    sections.append(("Cases where the models disagree most", "" if gallery else "<p>no gallery (see above)</p>",
                     [(picture, f"case {picture.stem}") for picture in gallery]))
    write_report(output / "report.html", f"Comparison on {dataset_name}", header, sections)
