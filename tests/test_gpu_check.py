"""``nnunet-attention gpu-check`` where no GPU is: its plan of the work (``--dry-run``), its refusal without CUDA,
and the benchmark trainer its training step writes (nnU-Net's 5-epoch benchmark combined with a trainer), run for
one step on the CPU."""

import importlib
import sys
from pathlib import Path

import pytest
import torch
from nnunet_attention.trainers import TRAINERS
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.benchmarking.nnUNetTrainerBenchmark_5epochs_noDataLoading import (
    nnUNetTrainerBenchmark_5epochs_noDataLoading,
)

from nnunet_attention import gpu_check
from nnunet_attention.cli import main
from nnunet_attention.plan_presets import PLAN_PRESETS


def test_dry_run_lists_every_step_with_its_budget_within_eight_minutes(tmp_path, capsys, monkeypatch):
    # a clone (the tests run from its root): the CUDA tests would run, installed editable or not
    assert gpu_check.repository_tests() == (Path(__file__).parent).resolve()
    monkeypatch.chdir(tmp_path)
    assert main(["gpu-check", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (budget")[0] for line in lines[:-1]] == [
        "1. environment", "2. cuda-tests", "3. benchmark", "4. plan-verify", "5. training"]
    assert lines[-1] == "total budget 480 s (8.0 minutes) on one H100/H200"
    assert sum(step.budget_seconds for step in gpu_check.STEPS) <= 8 * 60
    assert list(tmp_path.iterdir()) == []  # nothing run, nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")
def test_without_cuda_it_stops_at_once_and_writes_nothing(tmp_path, capsys):
    assert main(["gpu-check", "-o", str(tmp_path / "report")]) == 2
    assert "gpu-check measures on a CUDA GPU, but torch sees none" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("trainer", [nnUNetTrainer, TRAINERS["nnUNetTrainerMCANet"]], ids=lambda t: t.__name__)
def test_the_benchmark_trainer_trains_on_its_fixed_batch_with_or_without_deep_supervision(trainer, tmp_path,
                                                                                         monkeypatch):
    """nnU-Net's own class builds its fixed batch for deep supervision only (NotImplementedError otherwise); the
    written class builds it with training_batch, so MCANet (one output) runs too. CPU stands in for CUDA here
    (nnU-Net's benchmark class asserts that CUDA is available)."""
    name = gpu_check.write_benchmark_trainer(tmp_path / "trainers", trainer, iterations=2)
    monkeypatch.syspath_prepend(str(tmp_path / "trainers"))
    benchmark_class = getattr(importlib.import_module(name), name)
    assert issubclass(benchmark_class, nnUNetTrainerBenchmark_5epochs_noDataLoading)
    assert issubclass(benchmark_class, trainer)
    plan = PLAN_PRESETS["synthetic-2d"]
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    gpu_check.write_data_placeholder(tmp_path / "preprocessed" / plan.plans["dataset_name"] / "nnUNetPlans_2d")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    plans = {**plan.plans, "continue_training": False}  # what nnUNetv2_train adds
    benchmark = benchmark_class(plans, plan.configuration, 0, plan.dataset_json, torch.device("cpu"))
    assert (benchmark.num_epochs, benchmark.num_iterations_per_epoch) == (5, 2)
    target = benchmark.dummy_batch["target"]
    assert isinstance(target, list) == benchmark.enable_deep_supervision
    assert benchmark.dummy_batch["data"].shape == (2, 1, 96, 112)
    benchmark.initialize()
    loss = benchmark.train_step(benchmark.dummy_batch)["loss"]
    assert torch.isfinite(torch.as_tensor(loss))
    sys.modules.pop(name)
