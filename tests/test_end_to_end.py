"""End to end through the stock console commands, in subprocesses, as a user runs them.

``nnunet-attention demo`` runs nnUNetv2_plan_and_preprocess, nnUNetv2_train with a short-schedule
subclass of the trainer, nnUNetv2_predict on the held-out cases and nnUNetv2_evaluate_folder. The
held-out Dice must clear a bar that an untrained network cannot reach (checked in 2d on the same cases
with a network that has had a single training step).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from nnunet_attention.trainers import TRAINERS

from nnunet_attention.demo import DEMO_DATASETS
from nnunet_attention.nnunet_commands import (
    evaluate_arguments,
    nnunet_environment,
    predict_arguments,
    run_nnunet_command,
)
from nnunet_attention.schedules import short_schedule_name, with_ext_trainer_folder

pytestmark = pytest.mark.e2e

#: (epochs, iterations per epoch, held-out mean foreground Dice bar) per configuration. Measured on 2 CPU
#: cores with the Attention U-Net: 2d 0.96 trained vs 0.03 after one step; 3d_fullres 0.80 after 8x10
#: iterations (0.27 after 5x10).
SCHEDULES = {"2d": (6, 20, 0.6), "3d_fullres": (8, 10, 0.4)}
UNTRAINED_SCHEDULE = (1, 1)


def run_demo_command(trainer: str, configuration: str, epochs: int, iterations: int, workdir: Path) -> float:
    command = [sys.executable, "-m", "nnunet_attention.cli", "demo", "--trainer", trainer, "--config", configuration,
               "--epochs", str(epochs), "--iterations", str(iterations), "--device", "cpu", "--workdir", str(workdir),
               "--quiet"]
    # run outside the checkout: `python -m` puts the working directory first on sys.path, where the
    # source folder nnunet_attention/ would shadow the installed package under test
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=workdir.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"mean Dice: (\d\.\d+)", last_line)
    assert match, f"the demo's last line should be the mean Dice, got {last_line!r}"
    return float(match.group(1))


#: the trainer that also goes through every other stock command that reads a model folder
REFERENCE_TRAINER = "nnUNetTrainerAttentionUNet"
CASES = [(t, c) for t in sorted(TRAINERS) for c in sorted(SCHEDULES) if (t, c) != (REFERENCE_TRAINER, "2d")]


@pytest.mark.parametrize("trainer_name,configuration", CASES)
def test_trained_model_clears_the_bar(trainer_name, configuration, tmp_path):
    epochs, iterations, bar = SCHEDULES[configuration]
    assert run_demo_command(trainer_name, configuration, epochs, iterations, tmp_path) > bar


def test_reference_trainer_through_every_stock_command(tmp_path):
    """Train, predict, predict from the model folder, ensemble, evaluate, find the best configuration."""
    trainer_name, configuration = REFERENCE_TRAINER, "2d"
    epochs, iterations, bar = SCHEDULES[configuration]
    assert run_demo_command(trainer_name, configuration, epochs, iterations, tmp_path) > bar
    untrained = run_demo_command(trainer_name, configuration, *UNTRAINED_SCHEDULE, tmp_path / "untrained")
    assert untrained < bar

    # the same model folder serves the other stock commands that read it or its predictions
    spec = DEMO_DATASETS[configuration]
    short_trainer = short_schedule_name(trainer_name, epochs, iterations)
    environment = with_ext_trainer_folder(nnunet_environment(tmp_path, "cpu"), tmp_path / "trainers")
    raw = Path(environment["nnUNet_raw"]) / spec.folder_name
    results = Path(environment["nnUNet_results"]) / spec.folder_name
    model_folder = results / f"{short_trainer}__nnUNetPlans__{configuration}"
    log = tmp_path / "commands.log"
    sequential = ["-device", "cpu", "-npp", "1", "-nps", "1", "--save_probabilities", "--disable_progress_bar"]
    run_nnunet_command(["nnUNetv2_predict_from_modelfolder", "-i", raw / "imagesTs", "-o", tmp_path / "final",
                        "-m", model_folder, "-f", "0", *sequential], environment, log)
    run_nnunet_command(predict_arguments(raw / "imagesTs", tmp_path / "best", spec.dataset_id, configuration,
                                         short_trainer, "0", "cpu", "-chk", "checkpoint_best.pth",
                                         "--save_probabilities"), environment, log)
    run_nnunet_command(["nnUNetv2_ensemble", "-i", tmp_path / "final", tmp_path / "best", "-o", tmp_path / "ensemble",
                        "-np", "1"], environment, log)
    summary = tmp_path / "ensemble" / "summary.json"
    evaluation = evaluate_arguments(raw / "labelsTs", tmp_path / "ensemble", model_folder / "plans.json", summary)
    run_nnunet_command(evaluation, environment, log)
    assert json.loads(summary.read_text())["foreground_mean"]["Dice"] > bar
    run_nnunet_command(["nnUNetv2_find_best_configuration", spec.dataset_id, "-c", configuration, "-tr", short_trainer,
                        "-f", "0", "-np", "1"], environment, log)
    inference_information = json.loads((results / "inference_information.json").read_text())
    assert inference_information["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == short_trainer
