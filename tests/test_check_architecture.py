"""``nnunet-attention check-architecture MODULE:CLASS``: the contract's checks on a researcher's network. A
registered trainer passes; each deliberately broken network of :mod:`broken_networks` fails the check for its fault,
with a line naming the check, the plan and the reason; mistakes in MODULE:CLASS are messages."""

import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_attention.architecture_contract import CHECKS
from nnunet_attention.cli import CONTRACT_CHECKS, main

TESTS = Path(__file__).parent


@pytest.fixture
def broken_networks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def test_the_command_names_every_check_of_the_contract():
    assert CONTRACT_CHECKS == tuple(CHECKS)


def test_a_registered_trainer_passes_the_quick_contract_through_the_console_script():
    """The path a user takes: the console script, a trainer by MODULE:CLASS, --quick; every line ok or skip."""
    result = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "check-architecture",
                             "nnunet_attention.trainers.attention_unet:nnUNetTrainerAttentionUNet", "--quick"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    checked = [line.split()[1] for line in lines[:-1]]
    assert sorted(set(checked)) == sorted(CHECKS)
    assert all(line.startswith("ok ") for line in lines[:-1]), result.stdout
    assert lines[-1] == (f"nnunet_attention.trainers.attention_unet:nnUNetTrainerAttentionUNet: {len(lines) - 1} "
                         f"passed, 0 failed, 0 not applicable")


#: broken network -> the check it fails, the plan it fails on, what the reason says
BROKEN = {
    "IgnoresPlanStrides": ("deep-supervision", "3d-5stages-anisotropic", "raised RuntimeError"),
    "BreaksTheGraph": ("compile", "3d-5stages-anisotropic",
                       "torch.compile(fullgraph=True) cannot trace it in one graph"),
    "OverflowsInHalfPrecision": ("fp16", "3d-5stages-anisotropic", "the loss under fp16 autocast is nan"),
    "MapsOffTheImageGrid": ("attention-maps", "2d-5stages", "map off_grid is on a [48, 79] grid, which does not "
                                                            "divide the patch [48, 80] along every axis"),
    "HasAnUnusedParameter": ("gradients", "3d-5stages-anisotropic",
                             "2 parameter(s) received no gradient in the training step (e.g. ['forgotten.weight', "
                             "'forgotten.bias'])"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_network_fails_the_check_for_its_fault(broken, broken_networks_importable, capsys):
    check, plan, reason = BROKEN[broken]
    assert main(["check-architecture", f"broken_networks:{broken}", "--quick", "--checks", check]) == 1
    lines = capsys.readouterr().out.splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert failures and failures[0].startswith(f"FAIL  {check:<18} {plan}: {reason}"), lines
    assert lines[-1].startswith(f"broken_networks:{broken}: ") and " failed" in lines[-1]


@pytest.mark.parametrize("subject,message", [
    ("broken_networks", "'broken_networks' is not MODULE:CLASS"),
    ("no_such_package.network:Net", "no module 'no_such_package' on the Python path"),
    ("broken_networks:BreaksTheGrahp", "module broken_networks has no BreaksTheGrahp; did you mean BreaksTheGraph?"),
    ("broken_networks:dataclasses", "'dataclasses' is neither a trainer"),
])
def test_a_mistake_in_module_class_is_a_message(subject, message, broken_networks_importable, capsys):
    assert main(["check-architecture", subject, "--quick"]) == 2
    assert message in capsys.readouterr().err


def test_on_a_preset_the_checks_run_on_that_plan_with_its_channels_and_classes(capsys):
    """The synthetic 2d preset (1 channel, 3 labels, patch 96 x 112) instead of the matrix."""
    assert main(["check-architecture", "nnunet_attention.trainers.non_local_unet:nnUNetTrainerNonLocalUNet",
                 "--preset", "synthetic-2d", "--checks", "output", "pretrained-weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["ok    output             synthetic 2d", "ok    pretrained-weights synthetic 2d"]


def test_quick_with_a_plan_of_ones_own_is_a_message(capsys):
    assert main(["check-architecture", "nnunet_attention.trainers.mcanet:nnUNetTrainerMCANet", "--quick",
                 "--preset", "acdc-2d"]) == 2
    assert "--quick picks plans of the matrix: give it, or -p/--preset, not both" in capsys.readouterr().err
