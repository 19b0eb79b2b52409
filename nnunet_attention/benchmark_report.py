"""The benchmark's outputs: the markdown table with every figure's ratio to nnU-Net's U-Net, the ratio chart, and
the saved files (``.md`` and ``.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .benchmark import Measurement
from .registry import REFERENCE_TRAINER, display_name

#: table columns: (header, Measurement attribute, format)
COLUMNS = (
    ("params (M)", "parameters", lambda v: f"{v / 1e6:.1f}"),
    ("GFLOPs / patch", "gflops", lambda v: f"{v:.1f}"),
    ("train step (s)", "step_seconds", lambda v: f"{v:.3f}"),
    ("GFLOPs / step s", "flop_rate", lambda v: f"{v:.1f}"),
    ("+ compile (s)", "compiled_step_seconds", lambda v: f"{v:.3f}"),
    ("peak memory (MiB)", "peak_mib", lambda v: f"{v:.0f}"),
    ("estimated peak (MiB)", "estimated_peak_mib", lambda v: f"{v:.0f}"),
    ("inference / case (s)", "inference_seconds", lambda v: f"{v:.2f}"),
)


def markdown_table(results: dict[str, dict[str, Measurement]]) -> str:
    """One row per plan and network; each measured figure followed by its ratio to the reference ("n/a" where
    the reference was not measured: an interrupted run)."""
    first = next(iter(next(iter(results.values())).values()))
    columns = [c for c in COLUMNS if getattr(first, c[1]) is not None]
    header = ["plan", "network"] + [part for title, _, _ in columns for part in (title, "x ref")]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for plan_label, measurements in results.items():
        reference = measurements.get(REFERENCE_TRAINER)
        for name, measurement in measurements.items():
            cells = [plan_label, display_name(name)]
            for _, attribute, formatted in columns:
                value = getattr(measurement, attribute)
                reference_value = getattr(reference, attribute) if reference else 0
                ratio = f"{value / reference_value:.2f}" if reference_value > 0 else "n/a"
                cells += [formatted(value), ratio]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_chart(results: dict[str, dict[str, Measurement]], path: Path) -> None:
    """Bar chart (PNG): per plan, each network's ratio to the reference for time, memory, FLOPs, inference."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2 * len(results)))
    figure.subplots_adjust(hspace=0.6)
    metrics = [("train step", "step_seconds"), ("peak memory", "peak_mib"), ("GFLOPs", "gflops"),
               ("inference", "inference_seconds")]
    for axes, (plan_label, measurements) in zip(np.atleast_1d(figure.subplots(len(results), 1)), results.items()):
        reference = measurements[REFERENCE_TRAINER]
        shown = [(title, attribute) for title, attribute in metrics if getattr(reference, attribute) is not None]
        names = [name for name in measurements if name != REFERENCE_TRAINER]
        width = 0.8 / len(shown)
        for i, (title, attribute) in enumerate(shown):
            ratios = [getattr(measurements[name], attribute) / max(getattr(reference, attribute), 1e-9)
                      for name in names]
            axes.bar(np.arange(len(names)) + i * width, ratios, width, label=title)
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_yscale("log")
        axes.set_xticks(np.arange(len(names)) + width * (len(shown) - 1) / 2,
                        [name.removeprefix("nnUNetTrainer") for name in names])
        axes.set_ylabel("x nnU-Net's U-Net (log)")
        axes.set_title(plan_label, fontsize=9)
        axes.legend(fontsize=7)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def write_report(output: Path, stem: str, report: str, results: dict[str, dict[str, Measurement]]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{stem}.md").write_text(report)
    (output / f"{stem}.json").write_text(json.dumps(
        {plan: {name: vars(m) for name, m in measured.items()} for plan, measured in results.items()}, indent=2))


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
