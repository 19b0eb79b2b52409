"""``nnunet-attention verify``: one check of a raw dataset before any GPU hour is spent on it.

Two kinds of damage pass nnU-Net unnoticed until deep into training, or not at all:

- A truncated ``.nii.gz`` (an interrupted download or copy) reads without complaint: SimpleITK pads the missing
  voxels with zeros, so nnU-Net's integrity check, its planning and its training all see a plausible image with a
  black part. Here every gzip-compressed file of the dataset (imagesTr, labelsTr, imagesTs, labelsTs) is read to
  its end-of-stream marker, and every NIfTI file must hold the bytes its header declares.
- A label value that ``dataset.json`` does not declare passes planning and preprocessing and fails in the Dice
  loss ("index 7 is out of bounds"). nnU-Net's own integrity check (``verify_dataset_integrity``: dataset.json's
  keys, the number of training cases, the channels of each case, labels against dataset.json, image and label
  shapes, spacings and NaNs) finds it, but only when asked and with "see the output above"; it runs here after
  the file check, and what it printed becomes the message.

:func:`verify_dataset` runs both and raises one :class:`~nnunet_attention.errors.UsageError` naming every
damaged file and what to do; ``plan`` runs it before planning.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import UsageError
from .nnunet_layout import dataset_name, nnunet_folder

#: the raw dataset's image and label folders, as nnU-Net names them
RAW_SUBFOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")
#: bytes read at a time from a compressed file
_CHUNK_BYTES = 1 << 24
#: the largest NIfTI header (NIfTI-2: 540 bytes; NIfTI-1: 348)
_NIFTI_HEADER_BYTES = 540
#: what nnU-Net's integrity check prints ahead of a finding
_NNUNET_FINDINGS = ("Error", "Images contain NaN", "Segmentation contains NaN", "Warning", "WARNING")


def dataset_files(raw_dataset: Path, file_ending: str) -> list[Path]:
    """The image and label files of a raw dataset folder: every file ending in ``file_ending`` in
    :data:`RAW_SUBFOLDERS`, sorted."""
    return sorted(path for subfolder in RAW_SUBFOLDERS if (raw_dataset / subfolder).is_dir()
                  for path in (raw_dataset / subfolder).iterdir() if path.name.endswith(file_ending))


def file_damage(path: Path) -> str | None:
    """Why ``path`` is damaged, or None: a ``.gz`` file is read to its end (a truncated or corrupt stream is
    damage), and a NIfTI file (``.nii`` or ``.nii.gz``) must hold at least the data its header declares."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                head = stream.read(_NIFTI_HEADER_BYTES)
                size = len(head) + sum(len(chunk) for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""))
        else:
            with open(path, "rb") as stream:
                head = stream.read(_NIFTI_HEADER_BYTES)
            size = path.stat().st_size
    except EOFError:
        return "truncated: its gzip stream ends before the end marker (an interrupted download or copy)"
    except (gzip.BadGzipFile, zlib.error) as error:
        return f"not a readable gzip file ({error})"
    if path.name.endswith((".nii", ".nii.gz")):
        declared = _nifti_declared_bytes(head)
        if declared is None:
            return "not a NIfTI file: its header is not NIfTI-1 or NIfTI-2"
        if size < declared:
            return (f"truncated: {size} bytes where its NIfTI header declares {declared} (an interrupted download "
                    f"or copy)")
    return None


def _nifti_declared_bytes(head: bytes) -> int | None:
    """Header and voxel data bytes a NIfTI file declares in its header ``head`` (its first bytes); None where
    ``head`` is no NIfTI header."""
    import nibabel

    for header_class in (nibabel.Nifti1Header, nibabel.Nifti2Header):
        if len(head) < header_class.sizeof_hdr:
            continue
        try:
            header = header_class.from_fileobj(io.BytesIO(head[:header_class.sizeof_hdr]), check=True)
        except nibabel.spatialimages.HeaderDataError:
            continue
        return int(header.get_data_offset()) + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
    return None


def damaged_files(paths: list[Path], num_threads: int) -> list[str]:
    """``"<path>: <why>"`` for each damaged file of ``paths`` (:func:`file_damage`), read by ``num_threads``
    threads (zlib decompresses without holding the GIL)."""
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        damage = list(pool.map(file_damage, paths))
    return [f"{path}: {why}" for path, why in zip(paths, damage) if why]


def require_complete_files(paths: list[Path], num_threads: int = 4) -> None:
    """A :class:`UsageError` naming every damaged file of ``paths`` (:func:`file_damage`)."""
    damaged = damaged_files(paths, num_threads)
    if damaged:
        raise UsageError(f"{len(damaged)} damaged file(s):\n  " + "\n  ".join(damaged)
                         + "\ncopy each of them again from its source (nnU-Net would read the missing voxels as "
                         "zeros)")


def verify_dataset(dataset_id: int, num_processes: int) -> list[str]:
    """Check raw dataset ``dataset_id`` (see the module docstring) with ``num_processes`` workers. Returns the
    report's lines (nnU-Net's warnings among them); a :class:`UsageError` saying what is wrong and what to do
    where anything is."""
    dataset = dataset_name(dataset_id)
    raw_dataset = nnunet_folder("nnUNet_raw") / dataset
    dataset_json_path = raw_dataset / "dataset.json"
    if not dataset_json_path.is_file():
        raise UsageError(f"{raw_dataset} has no dataset.json: nnU-Net needs one beside imagesTr and labelsTr "
                         f"(see nnU-Net's dataset_format documentation)")
    try:
        file_ending = json.loads(dataset_json_path.read_text())["file_ending"]
    except (json.JSONDecodeError, KeyError) as error:
        raise UsageError(f"{dataset_json_path} is not a dataset.json nnU-Net can read ({error!r}): it needs "
                         f"\"channel_names\", \"labels\", \"numTraining\" and \"file_ending\"") from error
    files = dataset_files(raw_dataset, file_ending)
    require_complete_files(files, num_processes)
    warnings = nnunet_integrity_check(raw_dataset, num_processes)
    return [*warnings, f"{dataset}: {len(files)} files read to their end; nnU-Net's integrity check passed "
                       f"(dataset.json, cases, channels, labels, shapes, spacings, NaNs)"]


def check_before_planning(dataset_id: int, num_processes: int) -> list[str]:
    """:func:`verify_dataset` where ``nnUNet_raw`` holds the dataset; else a line saying that planning goes on
    from the fingerprint alone (nnU-Net's planner needs no raw data)."""
    dataset = dataset_name(dataset_id)
    raw = os.environ.get("nnUNet_raw")
    if not raw or not (Path(raw) / dataset / "dataset.json").is_file():
        return [f"{dataset} is not in nnUNet_raw ({raw or 'not set'}): no dataset check; planning from its "
                f"fingerprint alone"]
    try:
        return verify_dataset(dataset_id, num_processes)
    except UsageError as error:
        raise UsageError(f"{error}\n(to plan without this check, e.g. where the raw images were removed after "
                         f"preprocessing: --no-dataset-check)") from error


def nnunet_integrity_check(raw_dataset: Path, num_processes: int) -> list[str]:
    """nnU-Net's ``verify_dataset_integrity`` of ``raw_dataset`` in a subprocess (its workers print what they
    find to the console they inherit). Returns its warnings; a :class:`UsageError` with its findings where it
    fails."""
    completed = subprocess.run([sys.executable, "-m", __name__, str(raw_dataset), str(num_processes)],
                               capture_output=True, text=True)
    findings = _findings(completed.stdout)
    warnings = [finding for finding in findings if finding.lower().startswith("warning")]
    if completed.returncode == _FAILED_EXIT_CODE:
        errors = [finding for finding in findings if finding not in warnings] or [completed.stderr.strip()]
        raise UsageError(f"nnU-Net's integrity check of {raw_dataset} failed:\n  " + "\n  ".join(errors)
                         + "\nfix the files or dataset.json named above (a label value must be one of dataset.json's "
                         "\"labels\"; images and labels must share shape and spacing) and verify again")
    if completed.returncode != 0:  # not a finding: a bug, with its traceback
        raise RuntimeError(f"nnU-Net's integrity check crashed (exit code {completed.returncode}):\n"
                           f"{completed.stdout}{completed.stderr}")
    return warnings


def _findings(printed: str) -> list[str]:
    """The findings in what nnU-Net's integrity check printed: each paragraph that starts like one of
    :data:`_NNUNET_FINDINGS`, on one line."""
    paragraphs, current = [], None
    for line in printed.splitlines():
        if line.startswith(_NNUNET_FINDINGS):
            current = [line.strip()]
            paragraphs.append(current)
        elif current is not None and line.strip():
            current.append(line.strip())
        else:
            current = None
    return [" ".join(paragraph) for paragraph in paragraphs]


_FAILED_EXIT_CODE = 3


def _run_nnunet_integrity_check(raw_dataset: str, num_processes: int) -> int:
    """The subprocess of :func:`nnunet_integrity_check`: nnU-Net's check; what it raises for the data (it asserts,
    or raises RuntimeError or FileNotFoundError) is printed on stderr with exit code :data:`_FAILED_EXIT_CODE`."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    try:
        verify_dataset_integrity(raw_dataset, num_processes)
    except (AssertionError, RuntimeError, FileNotFoundError) as finding:
        print(finding, file=sys.stderr)
        return _FAILED_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(_run_nnunet_integrity_check(sys.argv[1], int(sys.argv[2])))
