"""The side-by-side benchmark: exact FLOP counting, the registry as the list of networks, the presets and a
plans file building every trainer's network, and one small run through the command line."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from nnunet_attention.trainers import TRAINERS
from torch import nn

from nnunet_attention import cli
from nnunet_attention.benchmark import (
    Measurement,
    batch_size_for,
    cpu_batch_note,
    forward_flops,
    networks_per_patch,
    trainers_to_measure,
    untrustworthy_timings,
)
from nnunet_attention.benchmark_report import COLUMNS
from nnunet_attention.plan_presets import PLAN_PRESETS
from nnunet_attention.planned_configuration import PlannedConfiguration
from nnunet_attention.plans_fabricator import dataset_json_for, plain_unet_arch_kwargs, plans_for
from nnunet_attention.registry import REFERENCE_LABEL as REFERENCE
from nnunet_attention.registry import REFERENCE_TRAINER, patch_divisor
from nnunet_attention.trainer_step import build_network


class ConvThenAttention(nn.Module):
    """A 3x3 conv (1 -> 4 channels) and self-attention over its 64 positions with 2 heads of 2 channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2).reshape(x.shape[0], 64, 2, 2).transpose(1, 2)
        return F.scaled_dot_product_attention(tokens, tokens, tokens)


def test_forward_flops_count_convolutions_and_attention_exactly():
    conv = 2 * 4 * 9 * 8 * 8  # multiply-adds per output voxel and channel
    attention = 2 * (2 * 2 * 64 * 64 * 2)  # QK^T and AV, per head: 64 x 64 x 2 multiply-adds each
    assert forward_flops(ConvThenAttention(), torch.randn(1, 1, 8, 8)) == conv + attention


def test_every_registered_trainer_is_benchmarked_beside_the_reference():
    assert trainers_to_measure() == [REFERENCE_TRAINER, *sorted(TRAINERS)]
    control = "nnUNetTrainerMTUNet_NoAttention"  # a removal control is measured where it is asked for
    assert trainers_to_measure([control]) == [REFERENCE_TRAINER, control]
    with pytest.raises(ValueError, match="unknown 'nnUNetTrainerNope': registered: "):
        trainers_to_measure(["nnUNetTrainerNope"])
    with pytest.raises(ValueError, match="'nnUNetTrainerMcaNet': did you mean nnUNetTrainerMCANet\\? "):
        trainers_to_measure(["nnUNetTrainerMcaNet"])


@pytest.mark.parametrize("preset", sorted(PLAN_PRESETS))
def test_every_preset_builds_every_network(preset):
    plan = PLAN_PRESETS[preset]
    for name in trainers_to_measure():  # on the preset's patch rounded up to the network's multiple, if it has one
        network = build_network(name, plan.fitted_to(patch_divisor(name)), for_training=False)
        assert sum(p.numel() for p in network.parameters()) > 0, name


def test_a_network_that_needs_other_multiples_is_measured_beside_the_unet_on_its_rounded_patch():
    """Synthetic 2d (96 x 112): UNETR (multiples of 16) runs on the plan itself, SwinUNETR (32) on 96 x 128, each
    group with nnU-Net's U-Net measured on the same patch."""
    names = [REFERENCE_TRAINER, "nnUNetTrainerAttentionUNet", "nnUNetTrainerSwinUNETR", "nnUNetTrainerUNETR"]
    groups = networks_per_patch(PLAN_PRESETS["synthetic-2d"], names)
    assert [(plan.patch_size, measured) for plan, measured in groups] == [
        ([96, 112], [REFERENCE_TRAINER, "nnUNetTrainerAttentionUNet", "nnUNetTrainerUNETR"]),
        ([96, 128], [REFERENCE_TRAINER, "nnUNetTrainerSwinUNETR"]),
    ]
    assert groups[0][0] is PLAN_PRESETS["synthetic-2d"]


def test_the_cpu_batch_note_speaks_only_where_the_run_chose_the_batch():
    acdc = PLAN_PRESETS["acdc-2d"]  # planned batch 56
    assert "rather than its planned batch (ACDC 2d 56)" in cpu_batch_note([acdc], "cpu", None)
    assert cpu_batch_note([acdc], "cpu", 2) is None  # --batch-size 2: the user's choice, nothing to explain


def write_tiny_plans(folder, dataset_json=True, batch_size=2):
    """A 2d plan of 3 stages on 32 x 32 patches (nnU-Net's format), with a dataset.json of 2 channels, 3 labels."""
    arch_kwargs = plain_unet_arch_kwargs([[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]], 64)
    plans = plans_for(arch_kwargs, [32, 32], "2d", batch_size, median_shape=[40, 36], dataset_name="Dataset123_Tiny")
    plans["original_median_shape_after_transp"] = [3, 40, 36]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    if dataset_json:
        dataset = {**dataset_json_for(2, 3), "channel_names": {"0": "T1", "1": "T2"}}
        (folder / "dataset.json").write_text(json.dumps(dataset))
    return folder / "nnUNetPlans.json"


def test_plans_file_gives_channels_classes_and_the_median_case(tmp_path):
    plan = PlannedConfiguration.from_plans_file(write_tiny_plans(tmp_path), "2d")
    assert (plan.input_channels, plan.num_classes, plan.case_shape) == (2, 3, (3, 40, 36))
    with pytest.raises(ValueError, match="has no configuration '3d_fullres'; it has \\['2d'\\]"):
        PlannedConfiguration.from_plans_file(tmp_path / "nnUNetPlans.json", "3d_fullres")


def test_benchmark_command_writes_a_table_with_ratios_and_a_chart_and_reports_progress(tmp_path, capsys):
    plans_file = write_tiny_plans(tmp_path / "plans", batch_size=4)
    trainer = "nnUNetTrainerAttentionUNet"
    arguments = ["benchmark", "-p", str(plans_file), "-c", "2d", "-tr", trainer,
                 "--steps", "1", "-device", "cpu", "--output", str(tmp_path / "out")]
    assert cli.main(arguments) == 0
    console = capsys.readouterr()
    assert ("on a CPU each plan runs at batch 2 rather than its planned batch (Dataset123_Tiny 2d 4)" in console.err
            and "Pass --batch-size N" in console.err)
    label = "Dataset123_Tiny 2d [32, 32] b2"
    progress = [line for line in console.err.splitlines() if line.startswith("[nnunet-attention benchmark] " + label)]
    assert [line.split(": ", 1)[1].rsplit(" in ", 1)[0] for line in progress] == [
        f"{REFERENCE} (1/2) ...", f"{REFERENCE} done", f"{trainer} (2/2) ...", f"{trainer} done"]
    table = [line for line in console.out.splitlines() if line.startswith("| Dataset123_Tiny")]
    assert [row.split(" | ")[1] for row in table] == [REFERENCE, trainer]
    measured = json.loads((tmp_path / "out" / "benchmark.json").read_text())["Dataset123_Tiny 2d [32, 32] b2"]
    reference_cells, trainer_cells = (row.strip("| ").split(" | ") for row in table)
    assert reference_cells[3::2] == ["1.00"] * 7  # every figure's ratio to itself
    ours, reference = Measurement(**measured[trainer]), Measurement(**measured[REFERENCE_TRAINER])
    shown = [attribute for _, attribute, _ in COLUMNS if getattr(ours, attribute) is not None]
    assert len(shown) == 7
    for attribute, ratio in zip(shown, trainer_cells[3::2]):  # the trainer's figure over the reference's
        assert ratio == f"{getattr(ours, attribute) / getattr(reference, attribute):.2f}", attribute
    plan = PlannedConfiguration.from_plans_file(plans_file, "2d")
    for name in (REFERENCE_TRAINER, trainer):
        expected_parameters = sum(p.numel() for p in build_network(name, plan).parameters())
        assert measured[name]["parameters"] == expected_parameters
        assert measured[name]["step_seconds"] > 0 and measured[name]["inference_seconds"] > 0
    assert (tmp_path / "out" / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "benchmark.md").read_text().count("| Dataset123_Tiny") == 2


def test_benchmark_refuses_a_plans_file_without_its_dataset_json(tmp_path, capsys):
    plans_file = write_tiny_plans(tmp_path, dataset_json=False)
    arguments = ["benchmark", "--plans", str(plans_file), "--configuration", "2d", "--device", "cpu"]  # old flags
    assert cli.main(arguments) == 2
    assert "no dataset.json beside" in capsys.readouterr().err


def with_default_sigint() -> None:
    """In the child before it starts: Ctrl-C's default, as at a terminal. A shell without job control (CI running
    the tests in the background) starts them with SIGINT ignored, and an ignored signal stays ignored through exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def benchmark_process(*arguments: str) -> subprocess.Popen:
    """``nnunet-attention benchmark ARGUMENTS`` as a user starts it at a terminal: a fresh process in its own
    process group (so a test can send Ctrl-C to the group as a terminal does), with Ctrl-C's default action."""
    return subprocess.Popen([sys.executable, "-m", "nnunet_attention.cli", "benchmark", *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=with_default_sigint)


def test_cpu_runs_the_presets_at_a_small_batch_unless_told_otherwise():
    acdc_2d = PLAN_PRESETS["acdc-2d"]
    assert acdc_2d.batch_size == 56
    assert batch_size_for(acdc_2d, "cpu", None) == 2
    assert batch_size_for(acdc_2d, "cuda", None) == 56
    assert batch_size_for(acdc_2d, "cpu", 8) == 8


def test_ctrl_c_keeps_the_rows_measured_and_ends_with_a_message_not_a_traceback(tmp_path):
    plans_file = write_tiny_plans(tmp_path / "plans")
    output = tmp_path / "out"
    process = benchmark_process("--plans", str(plans_file), "--configuration", "2d", "--trainers",
                                "nnUNetTrainerMSGA", "--steps", "200", "--no-inference", "--device", "cpu", "--output",
                                str(output))
    try:
        for line in process.stderr:  # Ctrl-C as the next network's process starts (it imports torch meanwhile)
            if "(2/2) ..." in line:
                os.killpg(process.pid, signal.SIGINT)
                break
        stdout, stderr = process.communicate(timeout=120)
    finally:  # a run that ignored Ctrl-C must not outlive the test
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "interrupted (Ctrl-C) after 1 network(s)" in stderr and "benchmark_interrupted.md" in stderr
    assert "Traceback" not in stderr, stderr
    rows = [row.split(" | ")[1] for row in stdout.splitlines() if row.startswith("| Dataset123_Tiny")]
    assert rows == [REFERENCE]
    assert "INTERRUPTED" in (output / "benchmark_interrupted.md").read_text()
    saved = json.loads((output / "benchmark_interrupted.json").read_text())["Dataset123_Tiny 2d [32, 32] b2"]
    assert list(saved) == [REFERENCE_TRAINER]
    assert saved[REFERENCE_TRAINER]["inference_seconds"] is None  # --no-inference
    assert not (output / "benchmark.md").exists() and not (output / "benchmark.json").exists()


def test_timings_from_a_busy_machine_or_with_scattered_steps_are_called_untrustworthy():
    def measured(spread):
        return Measurement(1, 1.0, 0.2, 10.0, None, 10.0, None, spread)

    steady = {"plan": {REFERENCE_TRAINER: measured(0.1), "nnUNetTrainerMTUNet": measured(None)}}
    assert untrustworthy_timings(steady, load_at_start=0.9, cores=2) == []
    assert untrustworthy_timings(steady, load_at_start=1.1, cores=2) == [
        "the machine was busy when the benchmark started (load average 1.1 on 2 cores)"]
    scattered = {"plan": {REFERENCE_TRAINER: measured(0.1), "nnUNetTrainerMTUNet": measured(0.8)}}
    assert untrustworthy_timings(scattered, load_at_start=0.0, cores=2) == [
        "the timed steps spread by more than 50% of their median for nnUNetTrainerMTUNet on plan (80%)"]



_STEP_FAULTS = """
import resource, sys, torch
from nnunet_attention.process_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.manual_seed(0)
network = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 32, 3, padding=1))
image = torch.randn(2, 1, 512, 512)
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    network(image).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sum(faults[2:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_cpu_measurement_reuses_freed_memory_instead_of_faulting_it_in_again():
    """Training steps 3-8 of a small conv net with 64 MiB activations (above glibc's largest dynamic mmap
    threshold): by default each step unmaps them when freed and faults their pages in again (~295,000 per step,
    measured); with keep_freed_memory (what the benchmark's CPU measurement sets) the steps reuse them (0 to
    49,000 faults over the six steps, measured)."""
    faults = {}
    for mode in ("default", "keep"):
        completed = subprocess.run([sys.executable, "-c", _STEP_FAULTS, mode], capture_output=True, text=True,
                                   check=True)
        applied, faults[mode] = completed.stdout.split()
        assert applied == {"default": "None", "keep": "True"}[mode]
    assert int(faults["default"]) > 1_000_000
    assert int(faults["keep"]) < 200_000
