"""The command line: bad input gets a message naming the problem and exit code 2, no traceback."""

import subprocess
import sys

import pytest

from nnunet_attention.cli import main


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["synth", "--train", "3"], "at least 5 training cases"),
        (["synth", "--shape", "8", "64"], "too small"),
        (
            ["demo", "--trainer", "nnUNetTrainerDoesNotExist", "--device", "cpu"],
            "unknown trainer 'nnUNetTrainerDoesNotExist'",
        ),
    ],
)
def test_bad_input_exits_with_a_message(arguments, message, tmp_path, capsys):
    place = ["--raw", str(tmp_path)] if arguments[0] == "synth" else ["--workdir", str(tmp_path)]
    assert main([*arguments, *place]) == 2
    assert message in capsys.readouterr().err


def test_synth_writes_a_dataset_and_refuses_to_overwrite(tmp_path, capsys):
    arguments = [
        "synth",
        "--raw",
        str(tmp_path),
        "--dataset-id",
        "12",
        "--shape",
        "6",
        "24",
        "20",
        "--spacing",
        "3",
        "1",
        "1",
        "--channels",
        "2",
        "--train",
        "5",
        "--test",
        "1",
    ]
    assert main(arguments) == 0
    assert (tmp_path / "Dataset012_SynthAttention" / "imagesTr" / "train_004_0001.nii.gz").exists()
    assert main(arguments) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_attention_maps_refuses_a_folder_that_is_not_a_trained_model(tmp_path, capsys):
    (tmp_path / "model" / "fold_0").mkdir(parents=True)
    (tmp_path / "model" / "plans.json").write_text("{}")
    arguments = ["attention-maps", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-m", str(tmp_path / "model"),
                 "-f", "0", "1", "--device", "cpu"]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "missing dataset.json, fold_0/checkpoint_final.pth, fold_1/checkpoint_final.pth" in error
    assert not (tmp_path / "out").exists()


def run_cli(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    """``nnunet-attention ARGUMENTS`` as a user types it: a fresh process."""
    return subprocess.run([sys.executable, "-m", "nnunet_attention.cli", *arguments], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--shape", "0", "32", "32"], "--shape 0 32 32: a 3D dataset needs at least 2 slices"),
        (["--shape", "1", "32", "32"], "--shape 1 32 32: a 3D dataset needs at least 2 slices"),
        (["--shape", "4", "32", "32", "--spacing", "0", "1"], "--spacing needs as many values as --shape (3), got 2"),
        (["--shape", "32", "32", "--spacing", "0", "1"], "--spacing values must be positive"),
        (["--noise", "-1"], "--noise is a standard deviation and must be 0 or more"),
    ],
)
def test_synth_refuses_bad_options_before_writing_anything(arguments, message, tmp_path):
    result = run_cli("synth", "--raw", str(tmp_path), *arguments)
    assert result.returncode == 2
    assert f"nnunet-attention synth: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_synth_help_shows_every_default():
    help_text = " ".join(run_cli("synth", "--help").stdout.split())
    for default in ["(default: 990)", "(default: SynthAttention)", "(default: [96, 112])", "(default: 1)",
                    "(default: 20)", "(default: 6)", "(default: 0.25)", "(default: 0)", "(default: all 1)"]:
        assert default in help_text, default


def test_demo_checks_the_trainer_before_writing_or_running_anything(tmp_path):
    """A misspelled trainer fails at once, with the closest name, before synthesis, planning and preprocessing
    (which took 50 s on 2 cores before they were reached)."""
    workdir = tmp_path / "demo"
    result = run_cli("demo", "--trainer", "nnUNetTrainerMTUnet", "--device", "cpu", "--workdir", str(workdir))
    assert result.returncode == 2
    assert "unknown trainer 'nnUNetTrainerMTUnet': did you mean nnUNetTrainerMTUNet?" in result.stderr
    assert not workdir.exists()
