"""Datasets that exist only as nnU-Net's fingerprint (no image is ever read): enough for its experiment planner.

Each is described by the statistics stated in :mod:`nnunet_attention.plan_presets` for the preset of the same
name (median size and spacing per case, channels, classes, number of training cases).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fingerprint:
    """``cases``: (shape after cropping, spacing, how many such cases); ``channels``, ``labels`` incl.
    background."""

    name: str
    cases: tuple[tuple[tuple[int, ...], tuple[float, ...], int], ...]
    channels: int
    labels: int

    @property
    def n_training(self) -> int:
        return sum(count for _, _, count in self.cases)


#: the fingerprints of the real-data presets (see plan_presets.py for the statistics)
PRESET_FINGERPRINTS = {
    # ACDC: 9 x 237 x 208 at 10 mm slices, a quarter of the volumes at 5 mm (18 slices)
    "acdc": Fingerprint("ACDC", (((9, 237, 208), (10.0, 1.5625, 1.5625), 75),
                                 ((18, 237, 208), (5.0, 1.5625, 1.5625), 25)), 1, 4),
    "hippocampus": Fingerprint("Hippocampus", (((36, 50, 35), (1.0, 1.0, 1.0), 260),), 1, 3),
    "prostate": Fingerprint("Prostate", (((20, 320, 319), (3.6, 0.625, 0.625), 32),), 2, 3),
    "braintumour": Fingerprint("BrainTumour", (((138, 169, 138), (1.0, 1.0, 1.0), 484),), 4, 4),
}


def write_fingerprint_dataset(fingerprint: Fingerprint, dataset_id: int, raw: Path, preprocessed: Path) -> str:
    """``DatasetXXX_<name>``: its dataset.json in ``raw`` (cases listed, files never read) and its
    dataset_fingerprint.json in ``preprocessed``; returns the folder name."""
    folder = f"Dataset{dataset_id:03d}_{fingerprint.name}"
    shapes, spacings = [], []
    for shape, spacing, count in fingerprint.cases:
        shapes += [list(shape)] * count
        spacings += [list(spacing)] * count
    cases = {f"case_{i:04d}": {"images": [f"imagesTr/case_{i:04d}_{c:04d}.nii.gz" for c in range(fingerprint.channels)],
                               "label": f"labelsTr/case_{i:04d}.nii.gz"} for i in range(len(shapes))}
    dataset_json = {
        "channel_names": {str(c): f"MRI{c}" for c in range(fingerprint.channels)},
        "labels": {"background": 0, **{f"label{i}": i for i in range(1, fingerprint.labels)}},
        "numTraining": len(shapes), "file_ending": ".nii.gz", "overwrite_image_reader_writer": "SimpleITKIO",
        "dataset": cases,
    }
    intensities = {"max": 10.0, "mean": 1.0, "median": 1.0, "min": -1.0, "percentile_00_5": -0.5,
                   "percentile_99_5": 5.0, "std": 1.0}
    fingerprint_json = {
        "spacings": spacings, "shapes_after_crop": shapes, "median_relative_size_after_cropping": 1.0,
        "foreground_intensity_properties_per_channel": {str(c): intensities for c in range(fingerprint.channels)},
    }
    (raw / folder).mkdir(parents=True)
    (raw / folder / "dataset.json").write_text(json.dumps(dataset_json))
    (preprocessed / folder).mkdir(parents=True)
    (preprocessed / folder / "dataset_fingerprint.json").write_text(json.dumps(fingerprint_json))
    return folder
