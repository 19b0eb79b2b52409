"""The main job on a built-in default: synthetic data -> plan -> preprocess -> train -> predict -> evaluate.

Every step is the stock nnU-Net command, run in a subprocess with its three folders under ``workdir``;
training uses a short-schedule subclass of the chosen trainer. The console shows each step and one line per
training epoch (``training_output="epochs"``; ``"all"``: nnU-Net's whole output; ``"none"``); every command's
full output goes to ``workdir/demo.log``. Prints a per-label Dice table on the held-out cases, the mean Dice
on its last line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import registry
from .devices import resolve_device
from .errors import UsageError
from .nnunet_commands import (
    evaluate_arguments,
    nnunet_environment,
    predict_arguments,
    run_nnunet_command,
)
from .nnunet_layout import model_folder
from .schedules import with_ext_trainer_folder, write_short_schedule_trainer
from .synth import LABELS, SynthSpec, write_dataset
from .training_console import TrainingConsole

#: what the console shows of nnUNetv2_train
TRAINING_OUTPUTS = ("epochs", "all", "none")
#: the synthetic dataset the demo generates for each configuration
DEMO_DATASETS = {
    "2d": SynthSpec(dataset_id=990, name="SynthAttention2D", shape=(64, 80), spacing=(1.0, 1.0), n_train=20, n_test=6),
    "3d_fullres": SynthSpec(
        dataset_id=991, name="SynthAttention3D", shape=(16, 40, 48), spacing=(3.0, 1.0, 1.0), n_train=10, n_test=3
    ),
}


@dataclass(frozen=True)
class DemoResult:
    dice_per_label: dict[str, float]
    mean_dice: float
    seconds_per_step: dict[str, float]
    #: the command that writes the attention maps of the trained model for the held-out images
    attention_maps_command: str


def read_dice(summary_file: Path) -> tuple[dict[str, float], float]:
    """Per-label Dice and the foreground mean from the summary.json of ``nnUNetv2_evaluate_folder``."""
    summary = json.loads(summary_file.read_text())
    names = {str(value): name for name, value in LABELS.items()}
    per_label = {names.get(k, k): float(metrics["Dice"]) for k, metrics in summary["mean"].items()}
    return per_label, float(summary["foreground_mean"]["Dice"])


def format_dice_table(dice_per_label: dict[str, float], mean_dice: float) -> str:
    rows = ["| label | Dice |", "|---|---|"]
    rows += [f"| {name} | {dice:.4f} |" for name, dice in dice_per_label.items()]
    return "\n".join(rows) + f"\nmean Dice: {mean_dice:.4f}"


def prepare_dataset(
    spec: SynthSpec, configuration: str, environment: dict[str, str], log_file: Path
) -> dict[str, float]:
    """Generate ``spec`` into nnUNet_raw and plan + preprocess it for ``configuration``, skipping what exists.

    A preprocessed folder counts as done when it holds one properties .pkl per training case (nnU-Net
    writes it last per case). Returns the seconds each step took.
    """
    seconds = {}
    start = time.perf_counter()
    if not (Path(environment["nnUNet_raw"]) / spec.folder_name).exists():
        write_dataset(spec, environment["nnUNet_raw"])
    seconds["synth"] = time.perf_counter() - start
    preprocessed = Path(environment["nnUNet_preprocessed"]) / spec.folder_name / f"nnUNetPlans_{configuration}"
    if not (preprocessed.is_dir() and len(list(preprocessed.glob("*.pkl"))) == spec.n_train):
        seconds["plan+preprocess"] = run_nnunet_command(
            ["nnUNetv2_plan_and_preprocess", "-d", spec.dataset_id, "-c", configuration, "-npfp", "2", "-np", "2"],
            environment,
            log_file,
        )
    return seconds


def run_demo(
    trainer: str = "nnUNetTrainerAttentionUNet",
    configuration: str = "2d",
    epochs: int = 10,
    iterations: int = 20,
    device: str = "auto",
    workdir: str | Path = "nnunet_attention_demo",
    fold: str = "0",
    training_output: str = "epochs",
) -> DemoResult:
    if configuration not in DEMO_DATASETS:
        raise UsageError(f"configuration must be one of {sorted(DEMO_DATASETS)}, got {configuration!r}")
    if training_output not in TRAINING_OUTPUTS:
        raise UsageError(f"training_output must be one of {TRAINING_OUTPUTS}, got {training_output!r}")
    device = resolve_device(device)
    trainer_class = registry.trainer_class(trainer)  # before anything is written or run: a typo fails at once
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / "demo.log"
    spec = DEMO_DATASETS[configuration]
    environment = nnunet_environment(workdir, device)
    seconds: dict[str, float] = {}

    def step(title: str) -> None:
        print(f"[nnunet-attention demo] {title}", flush=True)

    def show_epochs(console: TrainingConsole, line: str) -> None:
        if (summary := console(line)) is not None:
            print(f"[nnunet-attention demo]   {summary}", flush=True)

    on_training_line = {"epochs": partial(show_epochs, TrainingConsole(epochs, fold)),
                        "all": partial(print, end="", flush=True), "none": None}[training_output]

    step(f"synthetic dataset {spec.folder_name} and its {configuration} plan (log: {log_file})")
    seconds.update(prepare_dataset(spec, configuration, environment, log_file))
    if "plan+preprocess" not in seconds:
        print(f"[nnunet-attention demo] reusing the plan and preprocessed data in {environment['nnUNet_preprocessed']}")
    raw_dataset = Path(environment["nnUNet_raw"]) / spec.folder_name

    trainer_folder = workdir / "trainers"
    short_trainer = write_short_schedule_trainer(trainer_folder, trainer_class, epochs, iterations)
    environment = with_ext_trainer_folder(environment, trainer_folder)
    step(f"nnUNetv2_train {spec.dataset_id} {configuration} {fold} -tr {short_trainer} -device {device}")
    seconds["train"] = run_nnunet_command(
        ["nnUNetv2_train", spec.dataset_id, configuration, fold, "-tr", short_trainer, "-device", device],
        environment,
        log_file,
        on_line=on_training_line,
    )

    predictions = workdir / "predictions" / f"{short_trainer}__{configuration}"
    step(f"nnUNetv2_predict held-out cases -> {predictions}")
    seconds["predict"] = run_nnunet_command(
        predict_arguments(raw_dataset / "imagesTs", predictions, spec.dataset_id, configuration, short_trainer, fold,
                          device),
        environment,
        log_file,
    )

    step("nnUNetv2_evaluate_folder")
    summary_file = predictions / "summary.json"
    seconds["evaluate"] = run_nnunet_command(
        evaluate_arguments(raw_dataset / "labelsTs", predictions, predictions / "plans.json", summary_file),
        environment,
        log_file,
    )
    dice_per_label, mean_dice = read_dice(summary_file)
    model = model_folder(Path(environment["nnUNet_results"]), spec.folder_name, short_trainer, "nnUNetPlans",
                         configuration)
    attention_maps_command = (f"nnunet-attention attention-maps -i {raw_dataset / 'imagesTs'} "
                              f"-o {workdir / 'attention_maps'} -m {model} -f {fold} -device {device}")
    return DemoResult(dice_per_label, mean_dice, seconds, attention_maps_command)
