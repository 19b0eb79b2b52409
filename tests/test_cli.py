"""The command line: bad input gets a message naming the problem and exit code 2, no traceback."""

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
