"""The comparison's statistics and boundary metrics on constructed inputs with known answers."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import stats

from nnunet_attention.compare import boundary_metrics, compare_models, holm


def write_mask(array: np.ndarray, spacing: tuple[float, float], path) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_boundary_metrics_are_in_millimetres_of_the_images_spacing(tmp_path):
    reference = np.zeros((20, 20), dtype=np.uint8)
    reference[5:15, 5:15] = 1
    shifted = np.roll(reference, 2, axis=1)  # 2 columns = 1 mm at 0.5 mm spacing
    write_mask(reference, (0.5, 0.5), tmp_path / "reference.nii.gz")
    write_mask(reference, (0.5, 0.5), tmp_path / "same.nii.gz")
    write_mask(shifted, (0.5, 0.5), tmp_path / "shifted.nii.gz")
    write_mask(np.zeros_like(reference), (0.5, 0.5), tmp_path / "empty.nii.gz")
    same = boundary_metrics(tmp_path / "same.nii.gz", tmp_path / "reference.nii.gz", [1], 1.0)[1]
    assert same == {"HD95": 0.0, "NSD": 1.0}
    moved = boundary_metrics(tmp_path / "shifted.nii.gz", tmp_path / "reference.nii.gz", [1], 1.0)[1]
    assert moved["HD95"] == pytest.approx(1.0) and moved["NSD"] == pytest.approx(1.0)
    strict = boundary_metrics(tmp_path / "shifted.nii.gz", tmp_path / "reference.nii.gz", [1], 0.4)[1]
    assert 0 < strict["NSD"] < 1
    assert np.isnan(boundary_metrics(tmp_path / "empty.nii.gz", tmp_path / "reference.nii.gz", [1], 1.0)[1]["HD95"])


def metrics_of(dice_per_model: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": model, "fold": "0", "case": f"case{i}", "label": "1", "Dice": dice}
                         for model, values in dice_per_model.items() for i, dice in enumerate(values)])


def test_paired_tests_on_the_common_cases_holm_corrected():
    """Three models, one of which lacks a case: all are compared on the 11 common cases; each p-value is scipy's
    Wilcoxon on those pairs, Holm-corrected over the two comparisons; the CI brackets the mean difference."""
    generator = np.random.default_rng(0)
    base = generator.uniform(0.7, 0.8, 12)
    better = base + 0.05 + generator.normal(0, 0.01, 12)
    same = base + generator.normal(0, 0.01, 12)
    metrics = metrics_of({"base": list(base), "better": list(better), "same": list(same)})
    metrics = metrics[~((metrics["model"] == "same") & (metrics["case"] == "case11"))]  # one case not validated
    comparison = compare_models(metrics, "base", [])
    board = comparison.leaderboard.set_index("model")
    assert comparison.leaderboard["model"][0] == "better" and list(comparison.leaderboard["rank"]) == [1, 2, 3]
    assert comparison.leaderboard["Dice"].is_monotonic_decreasing
    assert (board["cases"] == 11).all()
    assert any("1 of its 12 validation cases are not validated by every model" in m for m in comparison.messages)
    p_values = [stats.wilcoxon(values[:11], base[:11]).pvalue for values in (better, same)]
    assert list(board.loc[["better", "same"], "Wilcoxon p"]) == pytest.approx(p_values)
    assert list(board.loc[["better", "same"], "Wilcoxon p (Holm)"]) == pytest.approx(holm(p_values))
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    difference = (better - base)[:11].mean()
    assert board.loc["better", "difference to baseline"] == pytest.approx(difference)
    assert board.loc["better", "CI 95% low"] < difference < board.loc["better", "CI 95% high"]
