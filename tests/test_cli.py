"""The command line: bad input gets a message naming the problem and exit code 2, no traceback."""

import argparse
import subprocess
import sys

import pytest

from nnunet_attention.cli import build_parser, main
from nnunet_attention.cli_arguments import FLAGS


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


def test_attention_maps_of_a_model_folder_that_does_not_exist_say_so_with_the_closest_name(tmp_path, capsys):
    (tmp_path / "nnUNetTrainerMTUNet__nnUNetPlans__2d").mkdir()
    typo = tmp_path / "nnUNetTrainerMTUnet__nnUNetPlans__2d"
    arguments = ["attention-maps", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-m", str(typo), "-f", "0"]
    assert main(arguments) == 2
    assert (f"-m {typo}: no such folder. did you mean nnUNetTrainerMTUNet__nnUNetPlans__2d? Pass the folder "
            "nnUNetv2_train writes") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_attention_maps_of_a_removal_control_say_it_has_none(tmp_path, capsys):
    model = tmp_path / "nnUNetTrainerMTUNet_NoAttention_5epochs__nnUNetPlans__2d"
    arguments = ["attention-maps", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-m", str(model), "-f", "0"]
    assert main(arguments) == 2
    assert ("nnUNetTrainerMTUNet_NoAttention_5epochs is the removal control of nnUNetTrainerMTUNet: its attention is "
            "removed, so it has no attention maps") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def run_cli(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    """``nnunet-attention ARGUMENTS`` as a user types it: a fresh process."""
    return subprocess.run([sys.executable, "-m", "nnunet_attention.cli", *arguments], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_a_fresh_process_shows_a_mistake_as_one_message_without_traceback(tmp_path):
    """The console script's path: a user's mistake ends the process with exit code 2 and one message."""
    result = run_cli("synth", "--raw", str(tmp_path), "--noise", "-1")
    assert result.returncode == 2
    assert result.stderr.strip() == ("nnunet-attention synth: error: --noise is a standard deviation and must be 0 "
                                     "or more, got -1.0")
    assert list(tmp_path.iterdir()) == []


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
def test_synth_refuses_bad_options_before_writing_anything(arguments, message, tmp_path, capsys):
    assert main(["synth", "--raw", str(tmp_path), *arguments]) == 2
    assert f"nnunet-attention synth: error: {message}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_synth_help_shows_every_default():
    help_text = " ".join(subcommand_parsers()["synth"].format_help().split())
    for default in ["(default: 990)", "(default: SynthAttention)", "(default: [96, 112])", "(default: 1)",
                    "(default: 20)", "(default: 6)", "(default: 0.25)", "(default: 0)", "(default: all 1)"]:
        assert default in help_text, default


def test_demo_checks_the_trainer_before_writing_or_running_anything(tmp_path, capsys):
    """A misspelled trainer fails at once, with the closest name, before synthesis, planning and preprocessing
    (which took 50 s on 2 cores before they were reached)."""
    workdir = tmp_path / "demo"
    assert main(["demo", "--trainer", "nnUNetTrainerMTUnet", "--device", "cpu", "--workdir", str(workdir)]) == 2
    assert "unknown trainer 'nnUNetTrainerMTUnet': did you mean nnUNetTrainerMTUNet?" in capsys.readouterr().err
    assert not workdir.exists()


def subcommand_parsers() -> dict:
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(subparsers.choices)


def test_every_subcommand_spells_each_concept_with_nnunets_flags():
    """Where a subcommand takes a dataset, configuration, trainer, plans, fold or device, it takes nnU-Net's flag
    for it (``-d -c -tr -p -f -device``) and the long aliases, all meaning the same; no other flag names one."""
    every_flag = {flag: concept for concept, (flags, _) in FLAGS.items() for flag in flags}
    seen = set()
    for command, parser in subcommand_parsers().items():
        for action in parser._actions:
            concepts = {every_flag[flag] for flag in action.option_strings if flag in every_flag}
            assert len(concepts) <= 1, (command, action.option_strings)
            if concepts:
                concept = concepts.pop()
                assert set(FLAGS[concept][0]) <= set(action.option_strings), (command, action.option_strings)
                seen.add(concept)
    assert seen == set(FLAGS)
    assert {"-d", "-c", "-tr", "-p", "-f", "-device"} == {flags[0] for flags, _ in FLAGS.values()}


@pytest.mark.parametrize("old,new", [
    (["demo", "--trainer", "X", "--config", "3d_fullres", "--fold", "all", "--device", "cpu"],
     ["demo", "-tr", "X", "-c", "3d_fullres", "-f", "all", "-device", "cpu"]),
    (["synth", "--dataset-id", "12"], ["synth", "-d", "12"]),
    (["benchmark", "--plans", "p.json", "--configuration", "2d", "--trainers", "A", "B", "--device", "cpu"],
     ["benchmark", "-p", "p.json", "-c", "2d", "-tr", "A", "B", "-device", "cpu"]),
    (["train-grid", "-d", "1", "-c", "2d", "-tr", "A", "--folds", "0", "1", "--device", "cpu"],
     ["train-grid", "-d", "1", "-c", "2d", "-tr", "A", "-f", "0", "1", "-device", "cpu"]),
    (["compare", "-d", "1", "-c", "2d", "-tr", "A", "--folds", "0", "--cost-device", "cpu"],
     ["compare", "-d", "1", "-c", "2d", "-tr", "A", "-f", "0", "-device", "cpu"]),
    (["plan", "-d", "1", "-tr", "A", "-overwrite_plans_name", "P"], ["plan", "-d", "1", "-tr", "A", "-p", "P"]),
    (["attention-maps", "-i", "i", "-o", "o", "-m", "m", "--device", "cpu"],
     ["attention-maps", "-i", "i", "-o", "o", "-m", "m", "-device", "cpu"]),
])
def test_the_flags_earlier_versions_took_still_mean_the_same(old, new):
    assert build_parser().parse_args(old) == build_parser().parse_args(new)


def test_a_bug_inside_the_library_keeps_its_traceback(monkeypatch):
    """Only a user's mistake becomes a message: a ValueError raised by a bug propagates with its traceback."""
    from nnunet_attention import synth

    def broken(*args, **kwargs):
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(synth, "write_dataset", broken)
    with pytest.raises(ValueError, match="a bug, not the user's mistake"):
        main(["synth", "--raw", "somewhere"])


def test_every_option_with_a_default_says_it_and_no_help_shows_a_doubled_percent():
    for name, parser in subcommand_parsers().items():
        assert "%%" not in parser.format_help(), name
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in (action.help or ""), (name, action.option_strings, action.help)
