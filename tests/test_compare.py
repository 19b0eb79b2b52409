"""The comparison's statistics and boundary metrics on constructed inputs with known answers."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import stats

from nnunet_attention.compare import (
    Model,
    boundary_metrics,
    compare_models,
    control_pairs_of,
    read_validation,
    readable_names,
)
from nnunet_attention.compare_gallery import contour_labels, disagreement_cases, most_disagreeing_slice, panel_title
from nnunet_attention.compare_statistics import holm, rank_distribution, significance_matrix


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


@pytest.mark.parametrize("cases,interval", [(2, False), (9, False), (10, True)])
def test_below_ten_common_cases_no_interval_is_reported_and_the_rows_and_messages_say_why(cases, interval):
    """The overclaim this prevents: 2 cases, a "95% CI" of [0.040, 0.044] while Wilcoxon's p is 0.5."""
    base = np.linspace(0.70, 0.80, cases)
    better = base + 0.04 + np.linspace(0, 0.004, cases)
    comparison = compare_models(metrics_of({"base": list(base), "better": list(better)}), "base", [],
                                control_pairs=[("better", "base")])
    row, control = comparison.leaderboard.set_index("model").loc["better"], comparison.controls.iloc[0]
    assert row["Wilcoxon p"] == pytest.approx(stats.wilcoxon(better, base).pvalue)  # the test is still reported
    for table in (row, control):
        assert np.isnan(table["CI 95% low"]) != interval and np.isnan(table["CI 95% high"]) != interval
        assert (table.get("note") == f"no CI: {cases} cases") != interval
    said = [m for m in comparison.messages if m.startswith(f"only {cases} common cases: no bootstrap 95% CI")]
    assert bool(said) != interval
    assert ("cannot reach p < 0.05 (smallest p: 0.5)" in " ".join(said)) == (cases == 2)


def per_case_of(dice_per_model: dict[str, list[float]]) -> pd.DataFrame:
    frame = pd.DataFrame(dice_per_model)
    frame.index = [f"case{i}" for i in range(len(frame))]
    return frame


def test_the_controls_are_paired_and_holm_corrected_with_the_baseline_comparisons():
    """Two trainers and their controls: each trainer's contribution over its control is scipy's paired test on the
    same cases, and all four p-values of the report (two against the baseline, two against controls) form one Holm
    family."""
    generator = np.random.default_rng(1)
    base = generator.uniform(0.6, 0.8, 15)
    values = {"U": base, "A": base + 0.04 + generator.normal(0, 0.01, 15), "A_NoAttention": base + 0.01
              + generator.normal(0, 0.01, 15), "B": base + generator.normal(0, 0.02, 15),
              "B_NoAttention": base + generator.normal(0, 0.02, 15)}
    metrics = metrics_of({model: list(dice) for model, dice in values.items()})
    comparison = compare_models(metrics, "U", [], [("A", "A_NoAttention"), ("B", "B_NoAttention")])
    controls = comparison.controls.set_index("model")
    board = comparison.leaderboard.set_index("model")
    for model in ("A", "B"):
        control = f"{model}_NoAttention"
        assert controls.loc[model, "control"] == control
        contribution = (values[model] - values[control]).mean()
        assert controls.loc[model, "attention's contribution"] == pytest.approx(contribution)
        assert controls.loc[model, "Wilcoxon p"] == pytest.approx(stats.wilcoxon(values[model], values[control]).pvalue)
        assert controls.loc[model, "CI 95% low"] < controls.loc[model, "attention's contribution"] < controls.loc[
            model, "CI 95% high"]
    family = [stats.wilcoxon(values[m], base).pvalue for m in board.index if m != "U"]
    family += [stats.wilcoxon(values[m], values[f"{m}_NoAttention"]).pvalue for m in ("A", "B")]
    corrected = holm(family)
    assert list(board.drop("U")["Wilcoxon p (Holm)"]) == pytest.approx(corrected[:4])
    assert list(controls["Wilcoxon p (Holm)"]) == pytest.approx(corrected[4:])


def test_controls_pair_with_trainers_and_their_schedule_variants():
    models = [Model(t, "nnUNetPlans", "2d") for t in ("nnUNetTrainer_5epochs", "nnUNetTrainerMTUNet_5epochs",
                                                      "nnUNetTrainerMCANet")]
    read, pairs = control_pairs_of(models)
    assert [(m.trainer, c.trainer) for m, c in pairs] == [
        ("nnUNetTrainerMTUNet_5epochs", "nnUNetTrainerMTUNet_NoAttention_5epochs"),
        ("nnUNetTrainerMCANet", "nnUNetTrainerMCANet_NoAttention")]
    assert read == [*models, *(c for _, c in pairs)]


def test_readable_names_drop_the_prefix_and_add_what_differs():
    models = [Model("nnUNetTrainer_5epochs", "nnUNetPlans", "2d"), Model("nnUNetTrainerMTUNet", "nnUNetPlans", "2d"),
              Model("nnUNetTrainer", "nnUNetPlans", "3d_fullres")]
    assert list(readable_names(models).values()) == ["U-Net_5epochs 2d", "MTUNet 2d", "U-Net 3d_fullres"]
    assert list(readable_names(models[:2]).values()) == ["U-Net_5epochs", "MTUNet"]


def test_the_rank_distribution_is_seeded_and_its_mode_is_the_dominant_order():
    generator = np.random.default_rng(2)
    base = generator.uniform(0.5, 0.7, 20)
    per_case = per_case_of({"worst": base, "best": base + 0.2, "middle": base + 0.1 + generator.normal(0, 0.01, 20),
                            "close": base + 0.1 + generator.normal(0, 0.01, 20)})
    first, again = rank_distribution(per_case, resamples=300), rank_distribution(per_case, resamples=300)
    pd.testing.assert_frame_equal(first, again)
    assert np.allclose(first.sum(axis=1), 1.0)
    assert first.loc["best", 1] == 1.0 and first.loc["worst", 4] == 1.0  # dominates / is dominated on every case
    assert set(first.loc[["middle", "close"]].idxmax(axis=1)) <= {2, 3}
    assert 0 < first.loc["middle", 2] < 1  # the two close ones swap between resamples
    assert not first.equals(rank_distribution(per_case, resamples=300, seed=1))


def test_the_significance_matrix_is_scipys_wilcoxon_holm_corrected_over_every_pair():
    generator = np.random.default_rng(3)
    per_case = per_case_of({name: generator.uniform(0.5, 0.9, 12) for name in ("a", "b", "c", "d")})
    matrix = significance_matrix(per_case)
    pairs = [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    from statsmodels.stats.multitest import multipletests

    expected = multipletests([stats.wilcoxon(per_case[x], per_case[y]).pvalue for x, y in pairs], method="holm")[1]
    for (x, y), p in zip(pairs, expected):
        assert matrix.loc[x, y] == pytest.approx(p) and matrix.loc[y, x] == pytest.approx(p)
    assert np.isnan(np.diag(matrix.to_numpy())).all()


def test_the_gallery_shows_the_cases_of_largest_spread_at_the_slice_of_most_disagreement():
    per_case = per_case_of({"a": [0.9, 0.5, 0.8, 0.7], "b": [0.85, 0.9, 0.8, 0.2], "c": [0.9, 0.6, 0.81, 0.6]})
    assert disagreement_cases(per_case, 2) == ["case3", "case1"]  # spreads 0.5, 0.4, 0.05, 0.01
    assert disagreement_cases(per_case, 10) == ["case3", "case1", "case0", "case2"]
    first = np.zeros((5, 8, 8), dtype=np.uint8)
    second, third = first.copy(), first.copy()
    second[1, :2, :2] = 1  # 4 voxels differ on slice 1
    third[3, :3, :3] = 2  # 9 on slice 3
    assert most_disagreeing_slice([first, second, third]) == 3
    assert most_disagreeing_slice([first, first]) == 0


def test_gallery_panels_have_titles_that_fit_and_contours_only_for_the_foreground():
    name = "AttentionUNet_NoAttention_10epochs_16iters_seed0"
    lines = panel_title(name).split("\n")
    assert "".join(lines) == name and len(lines) == 3 and max(map(len, lines)) <= 22
    assert panel_title("U-Net") == "U-Net"
    reference = np.array([[0, 1], [1, 3]])
    assert contour_labels([reference, np.array([[0, 2], [0, 0]]), np.zeros((2, 2), int)]) == [1, 2, 3]


def test_a_misspelt_trainer_is_named_with_the_closest_one_trained_on_the_dataset(tmp_path):
    (tmp_path / "Dataset990_X" / "nnUNetTrainerMTUNet__nnUNetPlans__2d").mkdir(parents=True)
    frame, messages = read_validation(Model("nnUNetTrainerMTUnet", "nnUNetPlans", "2d"), tmp_path, "Dataset990_X",
                                      ["0"])
    assert frame.empty
    assert messages == [f"nnUNetTrainerMTUnet 2d: no model folder nnUNetTrainerMTUnet__nnUNetPlans__2d in "
                        f"{tmp_path / 'Dataset990_X'}; did you mean nnUNetTrainerMTUNet?"]
