"""What only a CUDA device can check, on the path nnU-Net users take there (``pytest -m cuda``; skipped without CUDA).

- Per trainer on nnU-Net's ACDC 2d plan (batch 2): one training step of the trainer itself (``train_step``: fp16
  autocast, nnU-Net's GradScaler, gradient clipping, SGD) with the network compiled as nnU-Net compiles it, is
  finite and moves the weights as the eager step does, within fp16 precision.
- SDPA's fused kernels (flash / memory-efficient) equal its math backend for every attention block of the package,
  with the masks and scales the blocks use, under fp16 autocast.
- One short ``nnUNetv2_train`` on CUDA with torch.compile on (nnU-Net's default) finishes and logs the compile.
"""

import copy

import pytest
import torch
from helpers import BLOCKS, FP16_TOLERANCE, block_and_half_input, largest_relative_error, make_trainer
from nnunet_attention.trainers import TRAINERS
from torch.nn.attention import SDPBackend, sdpa_kernel

from nnunet_attention.plan_presets import PLAN_PRESETS
from nnunet_attention.trainer_step import training_batch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

PRESET = "acdc-2d"
BATCH = 2


def acdc_trainer(trainer_name: str, compile_network: bool, root, monkeypatch):
    """The trainer at its paper's width on nnU-Net's ACDC 2d plan at batch 2, on CUDA, compiled or not, its weights
    seeded."""
    monkeypatch.setenv("nnUNet_compile", "true" if compile_network else "false")
    preset = PLAN_PRESETS[PRESET]
    plans = copy.deepcopy(preset.plans)
    plans["configurations"][preset.configuration]["batch_size"] = BATCH
    torch.manual_seed(0)
    return make_trainer(TRAINERS[trainer_name], plans, preset.dataset_json, root, monkeypatch, device="cuda")


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
def test_compiled_fp16_training_step_is_finite_and_equals_the_eager_step(trainer_name, tmp_path, monkeypatch):
    steps = {}
    for compiled in (False, True):
        trainer = acdc_trainer(trainer_name, compiled, tmp_path / str(compiled), monkeypatch)
        assert isinstance(trainer.network, torch._dynamo.eval_frame.OptimizedModule) == compiled
        network = getattr(trainer.network, "_orig_mod", trainer.network)
        before = {name: p.detach().clone() for name, p in network.named_parameters()}
        for module in network.modules():  # the same function in both runs: no random dropout masks
            if isinstance(module, torch.nn.modules.dropout._DropoutNd):
                module.p = 0.0
        loss = trainer.train_step(training_batch(trainer, torch.Generator().manual_seed(1)))["loss"]
        updates = {name: (p.detach() - before[name]).float() for name, p in network.named_parameters()}
        steps[compiled] = (float(loss), updates, before)
    (eager_loss, eager_updates, eager_before), (compiled_loss, compiled_updates, compiled_before) = steps.values()
    assert all(torch.equal(eager_before[name], compiled_before[name]) for name in eager_before)
    assert torch.isfinite(torch.tensor([eager_loss, compiled_loss])).all()
    assert abs(compiled_loss - eager_loss) <= FP16_TOLERANCE * abs(eager_loss)
    largest = max(float(update.abs().max()) for update in eager_updates.values())
    assert largest > 0
    for name, update in eager_updates.items():
        assert torch.isfinite(compiled_updates[name]).all(), name
        assert largest_relative_error(compiled_updates[name], update.double(), largest) < 5 * FP16_TOLERANCE, name


@pytest.mark.parametrize("block_id", sorted(BLOCKS))
def test_sdpa_fused_kernels_equal_the_math_backend(block_id):
    block, features = block_and_half_input(block_id, 1.0)
    block, features = block.cuda(), features.cuda()
    outputs = {}
    for backends in ([SDPBackend.MATH], [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        copy_of_block = copy.deepcopy(block)
        with sdpa_kernel(backends), torch.autocast("cuda", dtype=torch.float16), torch.no_grad():
            outputs[len(backends)] = copy_of_block(features).double()
    assert largest_relative_error(outputs[3], outputs[1]) < FP16_TOLERANCE


def test_short_nnunetv2_train_on_cuda_with_torch_compile(tmp_path):
    from nnunet_attention.demo import DEMO_DATASETS, prepare_dataset
    from nnunet_attention.nnunet_commands import nnunet_environment, run_nnunet_command
    from nnunet_attention.schedules import with_ext_trainer_folder, write_short_schedule_trainer

    trainer_name, spec = "nnUNetTrainerMTUNet", DEMO_DATASETS["2d"]
    environment = nnunet_environment(tmp_path, "cuda")
    environment.pop("nnUNet_compile", None)  # nnU-Net's default on CUDA: compile
    prepare_dataset(spec, "2d", environment, tmp_path / "prepare.log")
    short_trainer = write_short_schedule_trainer(tmp_path / "trainers", TRAINERS[trainer_name], 2, 10, seed=0)
    environment = with_ext_trainer_folder(environment, tmp_path / "trainers")
    log = tmp_path / "train.log"
    run_nnunet_command(["nnUNetv2_train", spec.dataset_id, "2d", "0", "-tr", short_trainer, "-device", "cuda"],
                       environment, log)
    assert "Using torch.compile" in log.read_text()
    model_folder = tmp_path / "nnUNet_results" / spec.folder_name / f"{short_trainer}__nnUNetPlans__2d"
    assert (model_folder / "fold_0" / "checkpoint_final.pth").is_file()


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
def test_plan_verify_measures_each_planned_step_within_the_target(trainer_name, tmp_path):
    """``nnunet-attention plan --verify`` on the ACDC fingerprint at 8 GB: one real fp16 AMP step of each planned
    configuration allocates at most the target (plus the half sample nnU-Net's batch rounding may add)."""
    import os
    import re
    import subprocess
    import sys

    from nnunet_attention.fingerprints import PRESET_FINGERPRINTS, write_fingerprint_dataset

    environment = {**os.environ, **{name: str(tmp_path / name) for name in
                                    ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    write_fingerprint_dataset(PRESET_FINGERPRINTS["acdc"], 927, tmp_path / "nnUNet_raw",
                              tmp_path / "nnUNet_preprocessed")
    result = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "plan", "-d", "927", "-tr", trainer_name,
                             "-c", "2d", "3d_fullres", "--verify"], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    peaks = [float(value) for value in re.findall(r"allocated at most ([\d.]+) GB", result.stdout)]
    assert len(peaks) == 2 and all(peak <= 8 * 1.25 for peak in peaks), result.stdout
