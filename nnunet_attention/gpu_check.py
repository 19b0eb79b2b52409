"""``nnunet-attention gpu-check``: what to run first on a GPU machine, and one markdown report with every figure.

CI has no GPU, so the paths nnU-Net takes on one (CUDA, fp16 AMP, ``torch.compile``, the planned batch) are
measured here, in one command, each step against nnU-Net's own plain U-Net on the same plan:

1. ``environment``: the GPU, its memory, torch, CUDA, cuDNN and nnU-Net versions;
2. ``cuda-tests``: the test suite's CUDA-marked tests (``pytest -m cuda``), where the repository's ``tests/``
   lies beside the package (a clone);
3. ``benchmark``: the benchmark on the ACDC 2d and 3d_fullres presets at nnU-Net's planned batch, fp16 AMP,
   eager and compiled, with measured and estimated peak memory;
4. ``plan-verify``: ``plan`` for every trainer on the ACDC fingerprint, then one AMP training step of each planned
   configuration: ``max_memory_allocated`` beside the estimate and the target (what ``plan --verify`` does);
5. ``training``: one ``nnUNetv2_train`` per trainer on nnU-Net's ACDC 2d plan, timing epochs as nnU-Net's
   ``nnUNetTrainerBenchmark_5epochs_noDataLoading`` does (its class combined with each trainer; its fixed batch
   built by :func:`~nnunet_attention.trainer_step.training_batch`, so that trainers without deep supervision
   run too): the fastest of 5 epochs.

Each step has a time budget on one H100/H200 (:data:`STEPS`; about 8 minutes in all); ``--dry-run`` lists them and
runs nothing, so that the plan of the work is tested where no GPU is. A step that fails is reported as failed and
the others still run; the report replaces an older one only once complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_path
from .errors import UsageError

#: the dataset ID under which the check writes its fingerprint-only ACDC dataset (in its own temporary folders)
CHECK_DATASET_ID = 997
#: the benchmark's timed steps per network (after its two warm-up steps)
BENCHMARK_STEPS = 3
#: iterations per epoch of the training step's 5 epochs (nnU-Net's benchmark trainer keeps its 250)
TRAINING_ITERATIONS = 25


@dataclass(frozen=True)
class Step:
    """One step of the check: its name, its time budget on one H100/H200, what it measures, and how (``run``
    takes the check's working folder and returns the step's markdown)."""

    name: str
    budget_seconds: int
    measures: str
    run: Callable[[Path], str]


def _environment(_: Path) -> str:
    from importlib.metadata import version

    import torch

    properties = torch.cuda.get_device_properties(0)
    rows = [("GPU", f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} "
                    f"visible"),
            ("torch", torch.__version__), ("CUDA", str(torch.version.cuda)),
            ("cuDNN", str(torch.backends.cudnn.version())), ("nnU-Net", version("nnunetv2")),
            ("nnunet-attention", version("nnunet-attention"))]
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def repository_tests() -> Path | None:
    """The clone's ``tests/``: beside the package source (an editable install), else in the working folder (the
    check run from the clone's root after ``pip install .``); None where neither holds them."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (root / "tests" / "test_cuda.py").is_file():
            return root / "tests"
    return None


def _cuda_tests(_: Path) -> str:
    tests = repository_tests()
    if tests is None:
        return "skipped: no clone's `tests/` beside the package or in the working folder; run the check from a clone"
    completed = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                                str(tests)], cwd=tests.parent, capture_output=True, text=True,
                               timeout=3 * STEP_BUDGETS["cuda-tests"])
    summary = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else "(no output)"
    failures = [line for line in completed.stdout.splitlines() if line.startswith("FAILED")]
    return "\n".join([f"`pytest -m cuda`: {summary} (exit code {completed.returncode})", *[f"- {f}" for f in failures]])


def _benchmark(_: Path) -> str:
    from .benchmark import run_benchmark
    from .benchmark_report import markdown_table
    from .plan_presets import PLAN_PRESETS

    plans = [PLAN_PRESETS["acdc-2d"], PLAN_PRESETS["acdc-3d_fullres"]]
    results = run_benchmark(plans, "cuda", BENCHMARK_STEPS, with_inference=False)
    return (f"`nnunet-attention benchmark --preset acdc-2d acdc-3d_fullres --steps {BENCHMARK_STEPS} --no-inference "
            f"-device cuda` (planned batch, fp16 AMP; `+ compile`: the same step compiled):\n\n"
            + markdown_table(results))


def _fingerprint_folders(workdir: Path) -> dict[str, str]:
    """nnU-Net's three folders under ``workdir`` with the ACDC fingerprint as dataset :data:`CHECK_DATASET_ID`,
    set in this process' environment (nnU-Net reads them when it plans); returns them."""
    from .fingerprints import PRESET_FINGERPRINTS, write_fingerprint_dataset
    from .nnunet_layout import NNUNET_FOLDERS

    folders = {variable: str(workdir / variable) for variable in NNUNET_FOLDERS}
    if not (workdir / "nnUNet_raw").is_dir():
        write_fingerprint_dataset(PRESET_FINGERPRINTS["acdc"], CHECK_DATASET_ID, workdir / "nnUNet_raw",
                                  workdir / "nnUNet_preprocessed")
    os.environ.update(folders)
    return folders


def _plan_verify(workdir: Path) -> str:
    from .nnunet_layout import dataset_name, plans_file
    from .planning import ESTIMATE_KEY, plan_for_trainer, training_step_peak_on_cuda
    from .registry import REFERENCE_TRAINER, attention_trainers

    _fingerprint_folders(workdir)
    rows = ["| trainer | configuration | patch | batch | estimated GB | measured GB | x U-Net's measured |",
            "|---|---|---|---|---|---|---|"]
    reference: dict[str, float] = {}
    for trainer in [REFERENCE_TRAINER, *sorted(attention_trainers())]:
        plans, plans_name = plan_for_trainer(CHECK_DATASET_ID, trainer, configurations=("2d", "3d_fullres"))
        for configuration in ("2d", "3d_fullres"):
            planned, peak_gb = training_step_peak_on_cuda(plans_file(dataset_name(CHECK_DATASET_ID), plans_name),
                                                          trainer, configuration)
            reference.setdefault(configuration, peak_gb)
            estimate = plans["configurations"][configuration][ESTIMATE_KEY]["gigabytes_at_planned_batch"]
            rows.append(f"| {trainer} | {configuration} | {' x '.join(map(str, planned.patch_size))} | "
                        f"{planned.batch_size} | {estimate:.1f} | {peak_gb:.1f} | "
                        f"{peak_gb / reference[configuration]:.2f} |")
    target = plans["attention_aware_planning"]["gpu_memory_target_in_gb"]
    return (f"`nnunet-attention plan -d ID -tr TRAINER` on the ACDC fingerprint (target {target} GB), then one fp16 "
            f"AMP training step of each planned configuration (`torch.cuda.max_memory_allocated`):\n\n"
            + "\n".join(rows))


_BENCHMARK_TRAINER = '''"""nnU-Net's epoch benchmark (5 epochs on one fixed batch, no data loading) with {base}'s
network and loss, by nnunet-attention gpu-check."""

import torch
from nnunetv2.training.nnUNetTrainer.variants.benchmarking.nnUNetTrainerBenchmark_5epochs import (
    nnUNetTrainerBenchmark_5epochs,
)
from nnunetv2.training.nnUNetTrainer.variants.benchmarking.nnUNetTrainerBenchmark_5epochs_noDataLoading import (
    nnUNetTrainerBenchmark_5epochs_noDataLoading,
)
from {module} import {base}

from nnunet_attention.trainer_step import training_batch


class {name}(nnUNetTrainerBenchmark_5epochs_noDataLoading, {base}):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # nnU-Net's benchmark set-up without its dummy batch, which it builds for deep supervision only
        nnUNetTrainerBenchmark_5epochs.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
        self._set_batch_size_and_oversample()
        self.dummy_batch = training_batch(self, batch_size=self.batch_size, device=self.device)
'''


def benchmark_trainer_name(trainer: str) -> str:
    return f"{trainer}_GPUCheckBenchmark"


def write_benchmark_trainer(folder: Path, trainer: type, iterations: int = TRAINING_ITERATIONS) -> str:
    """Write nnU-Net's ``nnUNetTrainerBenchmark_5epochs_noDataLoading`` combined with ``trainer`` into ``folder``
    (to be listed in ``nnUNet_extTrainer``); returns its class name."""
    name = benchmark_trainer_name(trainer.__name__)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(_BENCHMARK_TRAINER.format(
        base=trainer.__name__, module=trainer.__module__, name=name, iterations=iterations,
        val_iterations=max(1, iterations // 5)))
    return name


def write_data_placeholder(data_folder: Path) -> None:
    """The preprocessed data folder of a configuration, as the benchmark trainer needs it: ``initialize()`` reads
    the data format off its file names (``infer_dataset_class``), and no case is ever read (one fixed batch)."""
    data_folder.mkdir(parents=True, exist_ok=True)
    (data_folder / "no_case.b2nd").touch()


def _training(workdir: Path) -> str:
    from .nnunet_commands import run_nnunet_command
    from .nnunet_layout import dataset_name, model_folder, results_folder
    from .planning import plan_for_trainer
    from .registry import REFERENCE_TRAINER, attention_trainers, trainer_class
    from .schedules import with_ext_trainer_folder

    folders = _fingerprint_folders(workdir)
    plan_for_trainer(CHECK_DATASET_ID, REFERENCE_TRAINER, plans_name="nnUNetPlans", configurations=("2d",))
    dataset = dataset_name(CHECK_DATASET_ID)
    preprocessed = Path(folders["nnUNet_preprocessed"]) / dataset
    (preprocessed / "dataset.json").write_text((Path(folders["nnUNet_raw"]) / dataset / "dataset.json").read_text())
    write_data_placeholder(preprocessed / "nnUNetPlans_2d")
    environment = with_ext_trainer_folder({**os.environ, **folders}, workdir / "trainers")
    rows = ["| trainer | fastest epoch (s) | x U-Net |", "|---|---|---|"]
    reference = None
    for trainer in [REFERENCE_TRAINER, *sorted(attention_trainers())]:
        name = write_benchmark_trainer(workdir / "trainers", trainer_class(trainer))
        run_nnunet_command(["nnUNetv2_train", CHECK_DATASET_ID, "2d", "0", "-tr", name], environment,
                           workdir / f"{name}.log")
        result_file = model_folder(results_folder(), dataset, name, "nnUNetPlans", "2d") / "fold_0" / \
            "benchmark_result.json"
        (result,) = json.loads(result_file.read_text()).values()
        epoch = result["fastest_epoch"]
        if isinstance(epoch, str):  # nnU-Net's message for a run that crashed
            rows.append(f"| {trainer} | {epoch} (log: {name}.log) | |")
            continue
        reference = reference or epoch
        rows.append(f"| {trainer} | {epoch:.2f} | {epoch / reference:.2f} |")
    return (f"`nnUNetv2_train ID 2d 0 -tr <trainer>_GPUCheckBenchmark` on nnU-Net's ACDC 2d plan (nnU-Net's "
            f"defaults: fp16 AMP, `torch.compile`; 5 epochs of {TRAINING_ITERATIONS} iterations on one fixed "
            f"batch, as `nnUNetTrainerBenchmark_5epochs_noDataLoading`):\n\n" + "\n".join(rows))


#: the steps in order (see the module docstring)
STEPS = (
    Step("environment", 10, "GPU, memory, torch, CUDA, cuDNN and nnU-Net versions", _environment),
    Step("cuda-tests", 100, "the CUDA-marked tests (`pytest -m cuda`) of a clone's tests/", _cuda_tests),
    Step("benchmark", 150, "every trainer beside nnU-Net's U-Net on the ACDC 2d and 3d_fullres presets at the "
                           "planned batch: fp16 AMP step, compiled step, peak and estimated memory", _benchmark),
    Step("plan-verify", 70, "`plan` per trainer on the ACDC fingerprint; one AMP step per planned configuration: "
                            "measured peak beside the estimate", _plan_verify),
    Step("training", 150, "one `nnUNetv2_train` per trainer (compile, AMP), nnU-Net's 5-epoch benchmark timing on "
                          "the ACDC 2d plan", _training),
)
STEP_BUDGETS = {step.name: step.budget_seconds for step in STEPS}


def dry_run_lines() -> list[str]:
    """What ``gpu-check --dry-run`` prints: each step with its budget, and the total."""
    lines = [f"{number}. {step.name} (budget {step.budget_seconds} s): {step.measures}"
             for number, step in enumerate(STEPS, start=1)]
    total = sum(step.budget_seconds for step in STEPS)
    return [*lines, f"total budget {total} s ({total / 60:.1f} minutes) on one H100/H200"]


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise UsageError("gpu-check measures on a CUDA GPU, but torch sees none: run it on the GPU machine "
                         "(--dry-run lists its steps here)")


def run_gpu_check(output: Path, report: Callable[[str], None]) -> Path:
    """Run :data:`STEPS` on the GPU, announcing each through ``report``; write ``output/gpu_check.md`` (every
    step's markdown, its time beside its budget, a failed step's error) and return its path."""
    require_cuda()
    sections = ["# nnunet-attention gpu-check"]
    with tempfile.TemporaryDirectory(prefix="nnunet_attention_gpu_check_") as folder:
        saved_environment = dict(os.environ)
        try:
            for number, step in enumerate(STEPS, start=1):
                report(f"{number}/{len(STEPS)} {step.name} (budget {step.budget_seconds} s) ...")
                start = time.perf_counter()
                try:
                    body = step.run(Path(folder))
                except Exception:  # noqa: BLE001 - a failed step is reported with its traceback; the others run
                    body = f"**FAILED**:\n\n```\n{traceback.format_exc()}```"
                    report(f"{number}/{len(STEPS)} {step.name} FAILED (the report has the traceback)")
                seconds = time.perf_counter() - start
                report(f"{number}/{len(STEPS)} {step.name} done in {seconds:.0f} s")
                sections.append(f"## {number}. {step.name} ({seconds:.0f} s, budget {step.budget_seconds} s)\n\n"
                                f"{step.measures}.\n\n{body}")
        finally:
            os.environ.clear()
            os.environ.update(saved_environment)
    output.mkdir(parents=True, exist_ok=True)
    path = output / "gpu_check.md"
    with atomic_path(path) as partial:
        partial.write_text("\n\n".join(sections) + "\n")
    return path
