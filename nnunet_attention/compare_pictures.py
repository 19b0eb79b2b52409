"""The pictures of ``compare`` (matplotlib, written as PNG): per-case Dice, Dice against cost, the rank
distribution over bootstrap resamples, and the pairwise significance matrix. Models are shown by their readable
names (:func:`~.compare.readable_names`), labels by their ``dataset.json`` names; value axes are fitted to the
data, with the range they show written on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: resolution of every picture
DPI = 110


def fitted_range(values: np.ndarray, lower: float = 0.0, upper: float = 1.0) -> tuple[float, float]:
    """An axis range around ``values`` with a 5% margin, within ``[lower, upper]`` (Dice's range)."""
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (lower, upper)
    margin = max(0.05 * (high - low), 0.01)
    return max(lower, low - margin), min(upper, high + margin)


def dice_box_plot(metrics: pd.DataFrame, names: dict[str, str], label_names: dict[str, str], path: Path) -> None:
    """Per label a panel: each model's per-case Dice as a box, the cases as jittered points over it; one value
    axis for all panels, fitted to the data."""
    from matplotlib.figure import Figure

    labels = sorted(metrics["label"].unique(), key=str)
    models = list(names)
    figure = Figure(figsize=(max(4.0, 1.6 * len(models)) * len(labels), 4.4))
    generator = np.random.default_rng(0)
    panels = np.atleast_1d(figure.subplots(1, len(labels), sharey=True))
    low, high = fitted_range(metrics["Dice"].to_numpy(dtype=float))
    panels[0].set_ylim(low, high)
    panels[0].set_ylabel(f"Dice per case (axis {low:.2f} to {high:.2f})")
    for axes, label in zip(panels, labels):
        values = [metrics[(metrics["label"] == label) & (metrics["model"] == m)]["Dice"].dropna().to_numpy()
                  for m in models]
        axes.boxplot(values, showfliers=False)
        for position, dice in enumerate(values, start=1):
            axes.scatter(position + generator.uniform(-0.15, 0.15, len(dice)), dice, s=8, alpha=0.6)
        axes.set_xticks(range(1, len(models) + 1), [names[m] for m in models], rotation=30, ha="right", fontsize=7)
        axes.set_title(label_names.get(label, f"label {label}"), fontsize=9)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")


def dice_vs_cost_plot(leaderboard: pd.DataFrame, names: dict[str, str], path: Path) -> None:
    """Mean Dice against the step-time and the memory ratio to nnU-Net's U-Net, one point per model."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2))
    low, high = fitted_range(leaderboard["Dice"].to_numpy(dtype=float))
    for axes, column in zip(figure.subplots(1, 2, sharey=True), ("train step x U-Net", "peak memory x U-Net")):
        axes.scatter(leaderboard[column], leaderboard["Dice"])
        for _, row in leaderboard.iterrows():
            axes.annotate(names[row["model"]], (row[column], row["Dice"]), fontsize=7)
        axes.axvline(1.0, color="grey", linewidth=0.8)
        axes.set_xlabel(column)
    figure.axes[0].set_ylim(low, high)
    figure.axes[0].set_ylabel(f"mean Dice, cross-validation (axis {low:.3f} to {high:.3f})")
    figure.savefig(path, dpi=DPI, bbox_inches="tight")


def rank_blob_plot(distribution: pd.DataFrame, names: dict[str, str], resamples: int, path: Path) -> None:
    """challengeR's blob plot: models across, ranks up, a dot per (model, rank) whose area is how often the model
    took that rank over the bootstrap resamples; the most frequent rank of each model ringed."""
    from matplotlib.figure import Figure

    models = list(distribution.index)
    figure = Figure(figsize=(max(4.0, 1.1 * len(models)), 3.8))
    axes = figure.subplots()
    for x, model in enumerate(models):
        frequencies = distribution.loc[model]
        axes.scatter([x] * len(frequencies), frequencies.index, s=600 * frequencies.to_numpy(), color="tab:blue",
                     alpha=0.7)
        axes.scatter([x], [frequencies.idxmax()], s=600 * frequencies.max(), facecolors="none", edgecolors="black")
    axes.set_xticks(range(len(models)), [names[m] for m in models], rotation=30, ha="right", fontsize=8)
    axes.set_yticks(distribution.columns)
    axes.set_ylim(len(models) + 0.6, 0.4)  # rank 1 on top
    axes.set_ylabel("rank (1 = best mean Dice)")
    axes.set_title(f"rank over {resamples} bootstrap resamples of the cases (dot area: frequency)", fontsize=9)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")


def significance_heatmap(matrix: pd.DataFrame, names: dict[str, str], path: Path) -> None:
    """Every pair's Holm-corrected Wilcoxon p-value as a heatmap, the value written in each cell."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    models = list(matrix.index)
    figure = Figure(figsize=(1.2 * len(models) + 2.5, 1.0 * len(models) + 1.2))
    axes = figure.subplots()
    shown = matrix.to_numpy(dtype=float)
    image = axes.imshow(np.clip(shown, 1e-4, 1.0), cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1.0))
    for (i, j), p in np.ndenumerate(shown):
        axes.text(j, i, "" if np.isnan(p) else f"{p:.2g}", ha="center", va="center", fontsize=8,
                  color="white" if p < 0.01 else "black")
    labels = [names[m] for m in models]
    axes.set_xticks(range(len(models)), labels, rotation=30, ha="right", fontsize=8)
    axes.set_yticks(range(len(models)), labels, fontsize=8)
    figure.colorbar(image, ax=axes, label="Wilcoxon p, Holm-corrected over all pairs")
    axes.set_title("paired tests on per-case Dice, every pair of models", fontsize=9)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
