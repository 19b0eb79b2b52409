"""``nnunet-attention train-grid``: the ``nnUNetv2_train`` jobs of a trainer x configuration x fold grid that are
not finished yet, one job per listed GPU at a time, or as a Slurm job array.

A job is *finished* when nnU-Net has written its fold's ``validation/summary.json`` (the last file of a
training), *interrupted* when a checkpoint exists without it (continued with nnU-Net's ``--c``, which also
reruns an interrupted validation), and *missing* otherwise. Running the grid again after it was stopped
therefore runs exactly what is not finished.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .nnunet_layout import console_command, dataset_name, fold_state, model_folder, results_folder


@dataclass(frozen=True)
class TrainingJob:
    """One ``nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER -p PLANS``."""

    dataset_id: int
    configuration: str
    trainer: str
    fold: str
    plans: str = "nnUNetPlans"

    def state(self, results: Path, dataset: str) -> str:
        """``"finished"``, ``"interrupted"`` or ``"missing"`` (see the module docstring)."""
        model = model_folder(results, dataset, self.trainer, self.plans, self.configuration)
        return fold_state(model, self.fold)

    def arguments(self, continue_training: bool, device: str | None = None) -> list[str]:
        arguments = ["nnUNetv2_train", str(self.dataset_id), self.configuration, self.fold, "-tr", self.trainer,
                     "-p", self.plans]
        if device is not None:
            arguments += ["-device", device]
        return arguments + (["--c"] if continue_training else [])

    @property
    def name(self) -> str:
        return f"{self.trainer} {self.configuration} fold {self.fold}"


def grid(dataset_id: int, configurations: Sequence[str], trainers: Sequence[str], folds: Sequence[str],
         plans: str = "nnUNetPlans") -> list[TrainingJob]:
    """Every job of the grid, trainer by trainer, then configuration, then fold."""
    return [TrainingJob(dataset_id, configuration, trainer, str(fold), plans)
            for trainer in trainers for configuration in configurations for fold in folds]


def run_jobs(jobs: Sequence[TrainingJob], slots: Sequence[str | None],
             launch: Callable[[TrainingJob, str | None], subprocess.Popen], poll_seconds: float = 1.0) -> list[str]:
    """Run ``jobs`` with at most one per slot at a time (a slot: a GPU index, or ``None`` for the device itself);
    ``launch(job, slot)`` starts one. Returns the names of the jobs that failed; the others keep running to the
    end. Ctrl-C stops the running jobs (their checkpoints stay; the next run continues them)."""
    pending, running, failed = list(jobs), {}, []
    free = list(slots)
    try:
        while pending or running:
            while pending and free:
                slot = free.pop(0)
                job = pending.pop(0)
                running[slot] = (job, launch(job, slot))
            time.sleep(poll_seconds)
            for slot, (job, process) in list(running.items()):
                if process.poll() is not None:
                    del running[slot]
                    free.append(slot)
                    if process.returncode != 0:
                        failed.append(job.name)
    finally:
        for _, process in running.values():
            process.terminate()
    return failed


def launcher(environment: dict[str, str], results: Path, dataset: str, device: str, log_folder: Path,
             report: Callable[[str], None]) -> Callable[[TrainingJob, str | None], subprocess.Popen]:
    """Starts a job as a subprocess: ``--c`` for an interrupted one; on a GPU slot with that GPU alone visible;
    its output appended to ``log_folder/<trainer>__<plans>__<configuration>_fold_<fold>.log``."""

    def launch(job: TrainingJob, slot: str | None) -> subprocess.Popen:
        continue_training = job.state(results, dataset) == "interrupted"
        job_environment = dict(environment)
        if slot is not None:
            job_environment["CUDA_VISIBLE_DEVICES"] = slot
        log_folder.mkdir(parents=True, exist_ok=True)
        log = log_folder / f"{job.trainer}__{job.plans}__{job.configuration}_fold_{job.fold}.log"
        report(f"{job.name}: {'continuing' if continue_training else 'starting'}"
               f"{'' if slot is None else f' on GPU {slot}'} (log: {log})")
        arguments = job.arguments(continue_training, device)
        command = [*console_command(arguments[0]), *arguments[1:]]
        with open(log, "a") as output:
            return subprocess.Popen(command, env=job_environment, stdout=output, stderr=subprocess.STDOUT)

    return launch


def slurm_script(jobs: Sequence[TrainingJob], partition: str | None = None, gpus_per_job: int = 1,
                 time_limit: str = "72:00:00") -> str:
    """A Slurm job-array script: array index ``i`` runs ``jobs[i]`` with ``--c`` (a fresh start when there is no
    checkpoint, a continuation otherwise, so a requeued or resubmitted task resumes)."""
    lines = ["#!/bin/bash", "#SBATCH --job-name=nnunet-attention-grid", f"#SBATCH --array=0-{len(jobs) - 1}",
             f"#SBATCH --gres=gpu:{gpus_per_job}", f"#SBATCH --time={time_limit}",
             "#SBATCH --output=nnunet_grid_%A_%a.log"]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += ["# nnUNet_raw, nnUNet_preprocessed and nnUNet_results must be set, and the environment with",
              "# nnunet-attention installed active, when this script is submitted (sbatch passes the environment).",
              "set -euo pipefail", "JOBS=("]
    lines += [f"  {shlex.quote(shlex.join(job.arguments(continue_training=True)))}" for job in jobs]
    lines += [")", 'eval "${JOBS[$SLURM_ARRAY_TASK_ID]}"', ""]
    return "\n".join(lines)


def run_grid(jobs: Sequence[TrainingJob], gpus: Sequence[str] | None, device: str, log_folder: Path,
             report: Callable[[str], None] = print) -> list[str]:
    """Run the jobs (of one dataset) that are not finished, one per GPU of ``gpus`` at a time (none: one at a
    time on ``device``); report the skipped ones. Returns the failed jobs' names."""
    results = results_folder()
    dataset = dataset_name(jobs[0].dataset_id)
    to_run = []
    for job in jobs:
        if job.state(results, dataset) == "finished":
            report(f"{job.name}: finished, skipped")
        else:
            to_run.append(job)
    launch = launcher(dict(os.environ), results, dataset, device, log_folder, report)
    return run_jobs(to_run, list(gpus) if gpus else [None], launch)
