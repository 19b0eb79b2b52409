"""``nnunet-attention verify`` and the same check in ``plan``: a truncated file and a label value dataset.json does
not declare are named with what to do (exit code 2, no traceback) before anything is planned; a sound dataset
passes."""

import gzip
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_attention.cli import main
from nnunet_attention.dataset_check import file_damage
from nnunet_attention.nnunet_layout import NNUNET_FOLDERS
from nnunet_attention.synth import SynthSpec, write_dataset

DATASET_ID = 961


@pytest.fixture
def raw_dataset(tmp_path, monkeypatch) -> Path:
    """A small synthetic 2D dataset (5 training cases, 1 held out) in nnUNet_raw under ``tmp_path``."""
    for variable in NNUNET_FOLDERS:
        monkeypatch.setenv(variable, str(tmp_path / variable))
    spec = SynthSpec(dataset_id=DATASET_ID, name="Checked", shape=(24, 32), spacing=(1.0, 1.0), n_train=5, n_test=1)
    return Path(write_dataset(spec, tmp_path / "nnUNet_raw"))


def truncate(path: Path) -> None:
    """``path`` without its last 100 bytes: what an interrupted download leaves."""
    path.write_bytes(path.read_bytes()[:-100])


def test_file_damage_finds_truncated_and_foreign_files(tmp_path):
    """A complete NIfTI-1 (gzip and plain) and NIfTI-2 file pass; a cut gzip stream, a plain NIfTI shorter than
    its header declares, and files that are not what their name says are each named with why."""
    volume = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    for name in ("complete.nii.gz", "cut_stream.nii.gz", "complete.nii", "short_data.nii"):
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / name))
    nibabel.Nifti2Image(volume, np.eye(4)).to_filename(tmp_path / "nifti2.nii.gz")
    truncate(tmp_path / "cut_stream.nii.gz")
    truncate(tmp_path / "short_data.nii")
    (tmp_path / "text.nii.gz").write_text("not compressed")
    (tmp_path / "foreign.nii").write_bytes(gzip.compress(b"x" * 1000))
    declared = 352 + volume.size * 4  # NIfTI-1: 348-byte header, 4 extension bytes, float32 voxels

    assert file_damage(tmp_path / "complete.nii.gz") is None
    assert file_damage(tmp_path / "complete.nii") is None
    assert file_damage(tmp_path / "nifti2.nii.gz") is None
    assert file_damage(tmp_path / "cut_stream.nii.gz").startswith("truncated: its gzip stream ends before the end")
    assert file_damage(tmp_path / "short_data.nii") == (f"truncated: {declared - 100} bytes where its NIfTI header "
                                                        f"declares {declared} (an interrupted download or copy)")
    assert file_damage(tmp_path / "text.nii.gz").startswith("not a readable gzip file")
    assert file_damage(tmp_path / "foreign.nii") == "not a NIfTI file: its header is not NIfTI-1 or NIfTI-2"


def test_verify_passes_a_sound_dataset_and_names_a_label_dataset_json_lacks(raw_dataset, capsys):
    """nnU-Net's integrity check runs after the file check; a label value 7 (labels 0-3 declared), which would
    fail training deep in the Dice loss, is named with its file and what to do."""
    assert main(["verify", "-d", str(DATASET_ID), "-np", "1"]) == 0
    assert (f"Dataset{DATASET_ID}_Checked: 12 files read to their end; nnU-Net's integrity check passed"
            in capsys.readouterr().out)

    label_file = raw_dataset / "labelsTr" / "train_002.nii.gz"
    label = sitk.ReadImage(str(label_file))
    values = sitk.GetArrayFromImage(label)
    values[0, 0] = 7
    relabelled = sitk.GetImageFromArray(values)
    relabelled.CopyInformation(label)
    sitk.WriteImage(relabelled, str(label_file))
    assert main(["verify", "-d", str(DATASET_ID), "-np", "1"]) == 2
    message = capsys.readouterr().err
    assert f"Error: Unexpected labels found in file {label_file}." in message
    assert "Found: [0. 1. 2. 3. 7.]" in message
    assert "a label value must be one of dataset.json's \"labels\"" in message


def test_a_truncated_file_stops_verify_and_plan_before_planning(raw_dataset):
    """The console script's path: exit code 2, the file named, no traceback, and ``plan`` writes no plans."""
    truncate(raw_dataset / "imagesTr" / "train_003_0000.nii.gz")
    preprocessed = raw_dataset.parents[1] / "nnUNet_preprocessed" / raw_dataset.name
    preprocessed.mkdir(parents=True)
    (preprocessed / "dataset_fingerprint.json").write_text("{}")  # plan's own checks pass; the dataset's do not
    for command in (["verify", "-d", str(DATASET_ID)], ["plan", "-d", str(DATASET_ID), "-tr", "nnUNetTrainer"]):
        result = subprocess.run([sys.executable, "-m", "nnunet_attention.cli", *command], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith(f"nnunet-attention {command[0]}: error: 1 damaged file(s):\n  "
                                        f"{raw_dataset / 'imagesTr' / 'train_003_0000.nii.gz'}: truncated")
    assert sorted(path.name for path in preprocessed.iterdir()) == ["dataset_fingerprint.json"]
