"""``nnunet-attention train-grid`` and ``compare`` on real nnU-Net output: two trainers and the first one's removal
control, fold 0, trained briefly on the synthetic 2d dataset by the grid (stopped after its first job and run
again), then compared. The leaderboard's numbers are recomputed here from nnU-Net's summary files and scipy."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from nnunet_attention.trainers import CONTROLS, TRAINERS
from scipy import stats

from nnunet_attention.demo import DEMO_DATASETS, prepare_dataset
from nnunet_attention.nnunet_commands import nnunet_environment
from nnunet_attention.registry import control_of
from nnunet_attention.schedules import with_ext_trainer_folder, write_short_schedule_trainer
from nnunet_attention.synth import LABELS

pytestmark = pytest.mark.e2e

GRID_TRAINERS = ("nnUNetTrainerAttentionUNet", "nnUNetTrainerNonLocalUNet")
FOLDS = ("0",)
SPEC = DEMO_DATASETS["2d"]


def cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "nnunet_attention.cli", *arguments]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """The grid (the two trainers, then the first one's removal control) run once, killed (SIGKILL, as a crash or
    a cancelled job) right after its second job started, then run again to the end: (environment, the trainers'
    short-schedule names, first run's output, second run's output, the first job's summary modification time before
    the second run, the control's short-schedule name in a list)."""
    workdir = tmp_path_factory.mktemp("grid")
    environment = nnunet_environment(workdir, "cpu")
    prepare_dataset(SPEC, "2d", environment, workdir / "prepare.log")
    names, controls = ([write_short_schedule_trainer(workdir / "trainers", trainer, 1, 2, val_iterations=1, seed=0,
                                                     validation_mirroring=False) for trainer in trainers]
                       for trainers in ([TRAINERS[t] for t in GRID_TRAINERS],
                                        [CONTROLS[control_of(GRID_TRAINERS[0])]]))
    assert controls == [control_of(names[0])]  # paired by nnU-Net's variant naming
    environment = with_ext_trainer_folder(environment, workdir / "trainers")
    command = cli("train-grid", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", *names, *controls, "--folds", *FOLDS,
                  "--device", "cpu", "--logs", str(workdir / "logs"))
    first = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True, start_new_session=True)
    first_output = []
    for line in first.stdout:
        first_output.append(line)
        if f"{names[1]} 2d fold 0: starting" in line:
            os.killpg(first.pid, signal.SIGKILL)
            break
    first.wait()
    first_summary = fold_summary(environment, names[0], "0")
    finished_at = first_summary.stat().st_mtime
    second = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return environment, names, "".join(first_output), second.stdout, finished_at, controls


def fold_summary(environment, trainer: str, fold: str):
    from pathlib import Path

    return (Path(environment["nnUNet_results"]) / SPEC.folder_name / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"
            / "validation" / "summary.json")


def test_grid_runs_only_what_is_not_finished_after_a_kill(grid_run):
    environment, names, first, second, finished_at, controls = grid_run
    assert f"{names[0]} 2d fold 0: starting" in first
    assert f"{names[0]} 2d fold 0: finished, skipped" in second
    started = re.findall(r"\] (\S+ 2d fold \d): (?:starting|continuing)", second)
    assert started == [f"{name} 2d fold 0" for name in (names[1], *controls)]
    assert fold_summary(environment, names[0], "0").stat().st_mtime == finished_at  # not run again
    assert all(fold_summary(environment, name, "0").is_file() for name in (*names, *controls))
    assert f"all {len(names) + len(controls)} jobs of the grid are finished" in second


def test_slurm_script_is_bash_whose_array_indices_are_the_unfinished_jobs(grid_run, tmp_path):
    environment, names, *_ = grid_run
    script = tmp_path / "grid.sbatch"
    result = subprocess.run(cli("train-grid", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", *names, "--folds", "0",
                                "1", "--slurm", str(script)), env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-1" in text  # fold 0 is finished: fold 1 of each trainer remains
    listed = subprocess.run(["bash", "-c", f'eval "$(sed -n "/^JOBS=(/,/^)/p" {script})"; '
                             'for i in "${!JOBS[@]}"; do echo "$i ${JOBS[$i]}"; done'],
                            capture_output=True, text=True).stdout.splitlines()
    assert listed == [f"{i} nnUNetv2_train {SPEC.dataset_id} 2d 1 -tr {name} -p nnUNetPlans --c"
                      for i, name in enumerate(names)]


LABEL_NAMES = {str(value): name for name, value in LABELS.items()}


def summary_dice(environment, trainer: str) -> dict[tuple[str, str], float]:
    """(case, label) -> Dice over both folds, read straight from nnU-Net's summary files."""
    dice = {}
    for fold in FOLDS:
        for case in json.loads(fold_summary(environment, trainer, fold).read_text())["metric_per_case"]:
            name = os.path.basename(case["reference_file"]).split(".")[0]
            for label, metrics in case["metrics"].items():
                dice[(name, label)] = metrics["Dice"]
    return dice


def test_compare_leaderboard_equals_the_summaries_and_scipy(grid_run, tmp_path):
    environment, names, *_ = grid_run
    output = tmp_path / "comparison"
    result = subprocess.run(cli("compare", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", *names, "--folds", *FOLDS,
                                "--baseline", names[0], "-o", str(output)), env=environment, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    board = {row["model"]: row for row in json.loads((output / "leaderboard.json").read_text())["leaderboard"]}
    per_case = {}
    for name in names:
        dice = summary_dice(environment, name)
        labels = sorted({label for _, label in dice})
        cases = sorted({case for case, _ in dice})
        label_means = [np.nanmean([dice[(c, label)] for c in cases]) for label in labels]
        row = board[f"{name} 2d"]
        for label, mean in zip(labels, label_means):  # named as in dataset.json
            assert row[f"Dice {LABEL_NAMES[label]}"] == pytest.approx(mean, abs=1e-12)
        assert row["Dice"] == pytest.approx(np.mean(label_means), abs=1e-12)
        per_case[name] = np.array([np.nanmean([dice[(c, label)] for label in labels]) for c in cases])
        assert row["std over cases"] == pytest.approx(np.std(per_case[name], ddof=1), abs=1e-12)
        assert row["cases"] == len(cases) == SPEC.n_train * len(FOLDS) // 5  # nnU-Net's 5-fold split
    difference = per_case[names[1]] - per_case[names[0]]
    challenger = board[f"{names[1]} 2d"]
    assert challenger["difference to baseline"] == pytest.approx(difference.mean(), abs=1e-12)
    # 4 common cases (one fold): the paired test is reported, an interval is not, and the row and stderr say why
    assert challenger["CI 95% low"] is None and challenger["CI 95% high"] is None
    assert challenger["note"] == "no CI: 4 cases"
    assert "note: only 4 common cases: no bootstrap 95% CI below 10 cases" in result.stderr
    assert challenger["Wilcoxon p"] == pytest.approx(stats.wilcoxon(per_case[names[1]], per_case[names[0]]).pvalue)
    assert challenger["Wilcoxon p (Holm)"] == pytest.approx(challenger["Wilcoxon p"])  # one comparison
    ranks = sorted(board.values(), key=lambda row: row["rank"])
    assert [row["Dice"] for row in ranks] == sorted((row["Dice"] for row in ranks), reverse=True)

    from matplotlib.image import imread

    picture = imread(output / "dice_per_case.png")
    assert picture.shape[0] > 200 and picture.shape[1] > 400 and picture[..., :3].std() > 0.05
    assert (output / "leaderboard.csv").read_text().count("\n") == 3
    assert "| rank | model |" in (output / "leaderboard.md").read_text()


def test_compare_says_which_folds_are_missing(grid_run, tmp_path):
    environment, names, *_ = grid_run
    result = subprocess.run(cli("compare", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", *names, "--folds", "0", "1",
                                "--baseline", names[0], "-o", str(tmp_path / "out")), env=environment,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in names:
        assert f"{name} 2d: fold 1 has no validation summary" in result.stderr
    nothing = subprocess.run(cli("compare", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", "nnUNetTrainer",
                                 "--folds", "0", "-o", str(tmp_path / "none")), env=environment, capture_output=True,
                             text=True)
    assert nothing.returncode == 2 and "no validation results for any of these models" in nothing.stderr


def test_compare_with_cost_measures_each_models_network_on_its_plan(grid_run, tmp_path):
    from pathlib import Path

    from nnunet_attention.benchmark import forward_flops
    from nnunet_attention.planned_configuration import PlannedConfiguration
    from nnunet_attention.trainer_step import build_network

    environment, names, *_ = grid_run
    output = tmp_path / "comparison"
    result = subprocess.run(cli("compare", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", *names, "--folds", *FOLDS,
                                "--baseline", names[0], "-o", str(output), "--with-cost", "-device", "cpu",
                                "--cost-steps", "1", "--boundary", "1.0"),
                            env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    board = {row["model"]: row for row in json.loads((output / "leaderboard.json").read_text())["leaderboard"]}
    plans_file = fold_summary(environment, names[0], "0").parents[2] / "plans.json"
    plan = PlannedConfiguration.from_plans_file(Path(plans_file), "2d")
    for name, trainer in zip(names, GRID_TRAINERS):  # the model's network on its plan, counted here
        network = build_network(trainer, plan)
        parameters = sum(p.numel() for p in network.parameters())
        flops = forward_flops(network, torch.randn(1, plan.input_channels, *plan.patch_size))
        assert board[f"{name} 2d"]["params (M)"] == pytest.approx(parameters / 1e6)
        assert board[f"{name} 2d"]["GFLOPs / patch"] == pytest.approx(flops / 1e9)
        # ratios to nnU-Net's U-Net measured in the same run: not the U-Net's own (1.0), not unmeasured
        for ratio in ("peak memory x U-Net", "train step x U-Net"):
            assert 0.2 < board[f"{name} 2d"][ratio] < 20 and board[f"{name} 2d"][ratio] != 1.0, (name, ratio)
    assert (output / "dice_vs_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in board.values():  # boundary metrics from the validation predictions
        assert row["HD95"] > 0 and 0 <= row["NSD"] <= 1


def test_compare_names_the_plans_a_trainer_was_trained_with(grid_run, tmp_path):
    environment, names, *_ = grid_run
    result = subprocess.run(cli("compare", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", names[0], "-p",
                                "nnUNetPlans_MTUNet", "--folds", "0", "-o", str(tmp_path / "out")), env=environment,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{names[0]} 2d: no model folder {names[0]}__nnUNetPlans_MTUNet__2d" in result.stderr
    assert "it was trained with plans nnUNetPlans: pass -p" in result.stderr


def test_compare_with_controls_reports_the_attentions_contribution_in_one_html_report(grid_run, tmp_path):
    from html.parser import HTMLParser

    environment, names, *_, grid_controls = grid_run
    output = tmp_path / "comparison"
    result = subprocess.run(cli("compare", "-d", str(SPEC.dataset_id), "-c", "2d", "-tr", *names, "-f", *FOLDS,
                                "--baseline", names[0], "-o", str(output), "--controls", "--cases", "3"),
                            env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output / "leaderboard.json").read_text())
    assert len(report["leaderboard"]) == 3  # the two trainers and the control, read without being listed
    per_case = {}
    for name in [*names, *grid_controls]:
        dice = summary_dice(environment, name)
        cases = sorted({case for case, _ in dice})
        per_case[name] = np.array([np.nanmean([dice[(c, label)] for label in sorted(LABEL_NAMES) if
                                               (c, label) in dice]) for c in cases])
    controls = {row["model"]: row for row in report["controls"]}
    challengers = [name for name in [*names, *grid_controls] if name != names[0]]
    tests = {f"{name} 2d": stats.wilcoxon(per_case[name], per_case[names[0]]).pvalue for name in challengers}
    for name, control in zip(names, grid_controls):
        row = controls[f"{name} 2d"]
        assert row["control"] == f"{control} 2d"
        assert row["attention's contribution"] == pytest.approx((per_case[name] - per_case[control]).mean(), abs=1e-12)
        assert row["Wilcoxon p"] == pytest.approx(stats.wilcoxon(per_case[name], per_case[control]).pvalue)
        tests[f"{name} 2d vs control"] = row["Wilcoxon p"]
    # one Holm family: two comparisons against the baseline, one against the control
    from statsmodels.stats.multitest import multipletests

    corrected = dict(zip(tests, multipletests(list(tests.values()), method="holm")[1]))
    board = {row["model"]: row for row in report["leaderboard"]}
    for name in challengers:
        assert board[f"{name} 2d"]["Wilcoxon p (Holm)"] == pytest.approx(corrected[f"{name} 2d"])
    for name in names[:1]:
        assert controls[f"{name} 2d"]["Wilcoxon p (Holm)"] == pytest.approx(corrected[f"{name} 2d vs control"])
    untrained_control = control_of(names[1])  # the second trainer's control was not trained: said, not compared
    assert sorted(controls) == [f"{names[0]} 2d"]
    assert (f"{names[1]} 2d: its removal control {untrained_control} has no validation results; train it with "
            f"nnunet-attention train-grid -tr {untrained_control}") in " ".join(report["messages"])

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.text = [], []

        def handle_starttag(self, tag, attributes):
            if tag == "img":
                self.images.append(dict(attributes)["src"])

        def handle_data(self, data):
            self.text.append(data)

    page = Page()
    page.feed((output / "report.html").read_text())
    import base64

    pictures = [output / "rank_distribution.png", output / "significance.png", output / "dice_per_case.png",
                *sorted((output / "gallery").glob("*.png"))]
    assert len(pictures) == 6  # three gallery cases
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    assert embedded == {picture.read_bytes() for picture in pictures}
    text = " ".join(page.text)
    for label in ("ellipsoid", "inclusion", "cuboid"):
        assert f"Dice {label}" in text
    assert "attention's contribution" in text and f"{len(per_case[names[0]])} cases validated by every model" in text
