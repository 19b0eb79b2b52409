"""Run the stock nnU-Net console commands in subprocesses, with settings for small runs.

The demo and the end-to-end tests go through exactly the commands a user types, so whatever works
here works from a shell.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .nnunet_layout import NNUNET_FOLDERS, console_command


class NNUNetCommandError(RuntimeError):
    """A stock nnU-Net command exited with an error; the message holds the command and its output tail."""


@contextlib.contextmanager
def nnunet_chatter_hidden() -> Iterator[io.StringIO]:
    """Inside, what nnU-Net's in-process trainer search prints (every folder and module it inspects) is kept off
    the console, and so is the warning that importing its trainers raises (timm uses the deprecated
    ``torch.jit.interface``). Yields the printed text. Errors still propagate with their own messages."""
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.filterwarnings("ignore", message="`torch.jit.interface` is deprecated", category=FutureWarning)
        yield printed


def nnunet_environment(workdir: str | os.PathLike, device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for nnU-Net commands with their three folders under ``workdir``.

    On CPU: single-process augmentation and preprocessing workers and no torch.compile (nnU-Net's defaults
    assume a GPU machine with many cores; on CPU the worker start-up and compile time dominate a short run).
    """
    workdir = Path(workdir).resolve()
    environment = dict(os.environ if base is None else base)
    environment.update({variable: str(workdir / variable) for variable in NNUNET_FOLDERS})
    if device == "cpu":
        environment.update(nnUNet_compile="false", nnUNet_def_n_proc="1", nnUNet_n_proc_DA="0")
    return environment


def predict_arguments(
    images: Path, output: Path, dataset_id: int, configuration: str, trainer: str, folds: str, device: str, *extra: str
) -> list:
    """``nnUNetv2_predict`` on a folder, with one preprocessing and one export worker (small runs only: nnU-Net's
    default worker pools take longer to start than a few cases take to predict)."""
    return ["nnUNetv2_predict", "-i", images, "-o", output, "-d", dataset_id, "-c", configuration, "-tr", trainer,
            "-f", *folds.split(), "-device", device, "-npp", "1", "-nps", "1", "--disable_progress_bar", *extra]


def evaluate_arguments(labels: Path, predictions: Path, plans_file: Path, summary_file: Path) -> list:
    """``nnUNetv2_evaluate_folder`` of ``predictions`` against ``labels``; the dataset.json is the labels' dataset's."""
    return ["nnUNetv2_evaluate_folder", labels, predictions, "-djfile", labels.parent / "dataset.json",
            "-pfile", plans_file, "-o", summary_file, "-np", "1"]


def run_nnunet_command(
    arguments: Sequence[str],
    environment: dict[str, str],
    log_file: str | os.PathLike,
    on_line: Callable[[str], None] | None = None,
) -> float:
    """Run one command, its output appended to ``log_file`` and each line passed to ``on_line`` (e.g. ``print``,
    or a filter that shows progress); return seconds taken.

    Raises NNUNetCommandError with the command line and the last lines of its output if it fails.
    """
    arguments = [str(a) for a in arguments]
    command = [*console_command(arguments[0]), *arguments[1:]]
    # nnU-Net's planner crashes with nnUNet_n_proc_DA=0; that setting is only for training.
    if arguments[0] != "nnUNetv2_train":
        environment = {k: v for k, v in environment.items() if k != "nnUNet_n_proc_DA"}
    start = time.perf_counter()
    tail: list[str] = []
    with open(log_file, "a") as log:
        log.write(f"$ {' '.join(arguments)}\n")
        log.flush()
        process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in process.stdout:
            log.write(line)
            tail = (tail + [line])[-40:]
            if on_line is not None:
                on_line(line)
        returncode = process.wait()
    if returncode != 0:
        raise NNUNetCommandError(
            f"`{' '.join(arguments)}` failed with exit code {returncode}; full log: {log_file}\n" + "".join(tail)
        )
    return time.perf_counter() - start
