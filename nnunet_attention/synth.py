"""A synthetic segmentation dataset in nnU-Net's raw format, built so that attention has work to do.

Each case holds, on a smoothly varying, noisy background:

- label 1 ``ellipsoid``: a large ellipse/ellipsoid of tissue intensity T;
- label 3 ``cuboid``: an axis-aligned box of the *same* intensity T, so only its shape tells it apart;
- label 2 ``inclusion``: small bright spheres *inside* the ellipsoid; identical bright spheres outside
  it are background (distractors), so only their context tells them apart.

Per case the contrast, offset, bias field and noise vary. Shapes are drawn in millimetres, so anisotropic
spacing gives physically round objects. Several channels show the same anatomy under different contrast
tables. Everything is reproducible from the seed. A held-out split is written to ``imagesTs`` with its
labels in ``labelsTs``. The dataset folder appears only when complete (written beside, then renamed).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

from .errors import UsageError

LABELS = {"background": 0, "ellipsoid": 1, "inclusion": 2, "cuboid": 3}
FILE_ENDING = ".nii.gz"
#: per channel, the intensity of (background, tissue of ellipsoid and cuboid, bright spheres)
CONTRAST_TABLES = np.array([[0.0, 1.0, 2.2], [1.0, 0.3, 1.6], [0.2, 1.4, 0.5], [0.6, 1.8, 0.0]])


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. ``shape`` and ``spacing`` are in array order (z, y, x) or (y, x)."""

    dataset_id: int = 990
    name: str = "SynthAttention"
    shape: tuple[int, ...] = (96, 112)
    spacing: tuple[float, ...] = (1.0, 1.0)
    n_channels: int = 1
    n_train: int = 20
    n_test: int = 6
    noise_std: float = 0.25
    seed: int = 0

    def __post_init__(self):
        """Refuse what would fail half-way through writing, or give a dataset nnU-Net cannot use; each message names
        the command-line option of ``nnunet-attention synth``."""
        shape = " ".join(map(str, self.shape))
        if len(self.shape) not in (2, 3):
            raise UsageError(f"--shape {shape}: give 2 values (Y X) or 3 (Z Y X)")
        if len(self.spacing) != len(self.shape):
            raise UsageError(f"--spacing needs as many values as --shape ({len(self.shape)}), got {len(self.spacing)}")
        if not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise UsageError(f"--spacing values must be positive (mm), got {' '.join(map(str, self.spacing))}")
        if min(self.shape[-2:]) < 16:
            raise UsageError(f"--shape {shape} is too small: in-plane axes (the last two) need at least 16 voxels")
        if len(self.shape) == 3 and self.shape[0] < 2:
            raise UsageError(f"--shape {shape}: a 3D dataset needs at least 2 slices along its first axis (nnU-Net "
                             f"plans no 3d configuration for one slice); for 2D give Y X")
        if not 1 <= self.n_channels <= len(CONTRAST_TABLES):
            raise UsageError(f"--channels must be between 1 and {len(CONTRAST_TABLES)}, got {self.n_channels}")
        if self.n_train < 5:
            raise UsageError(f"--train {self.n_train}: nnU-Net's 5-fold split needs at least 5 training cases")
        if self.n_test < 0:
            raise UsageError(f"--test must be 0 or more, got {self.n_test}")
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise UsageError(f"--noise is a standard deviation and must be 0 or more, got {self.noise_std}")
        if self.seed < 0:
            raise UsageError(f"--seed must be 0 or more, got {self.seed}")
        if not 1 <= self.dataset_id <= 999:
            raise UsageError(f"--dataset-id must be in 1..999 (nnU-Net's DatasetXXX), got {self.dataset_id}")
        if not re.fullmatch(r"[A-Za-z0-9-]+", self.name):
            raise UsageError(f"--name {self.name!r}: use letters, digits and '-' (it becomes the folder name "
                             f"Dataset{self.dataset_id:03d}_NAME)")

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"


def _physical_grid(shape: tuple[int, ...], spacing: tuple[float, ...]) -> list[np.ndarray]:
    return np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij", sparse=True)


def _ball(grid: list[np.ndarray], center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0


def _box(grid: list[np.ndarray], low: np.ndarray, high: np.ndarray) -> np.ndarray:
    inside = np.ones([1] * len(grid), dtype=bool)
    for g, lo, hi in zip(grid, low, high):
        inside = inside & (g >= lo) & (g <= hi)
    return inside


def _smooth_field(rng: np.random.Generator, grid: list[np.ndarray], extent: np.ndarray) -> np.ndarray:
    """A low-frequency multiplicative bias field around 1 (a sum of a few random cosines)."""
    field = 1.0
    for _ in range(3):
        frequency = rng.uniform(0.3, 1.2, len(grid)) * 2 * np.pi / extent
        phase = sum(g * f for g, f in zip(grid, frequency)) + rng.uniform(0, 2 * np.pi)
        field = field + 0.08 * np.cos(phase)
    return field


def generate_case(spec: SynthSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One case: image ``(channels, *shape)`` float32 and label map ``shape`` uint8."""
    grid = _physical_grid(spec.shape, spec.spacing)
    extent = np.array(spec.shape) * np.array(spec.spacing)
    ndim = len(spec.shape)
    labels = np.zeros(spec.shape, dtype=np.uint8)

    # Ellipsoid in one half of the field, cuboid of the same intensity in the other (halves along the last axis).
    left = rng.random() < 0.5
    half_low = np.zeros(ndim)
    half_high = extent.copy()
    half_high[-1] = extent[-1] / 2
    ellipsoid_center = rng.uniform(half_low + 0.3 * (half_high - half_low), half_low + 0.7 * (half_high - half_low))
    ellipsoid_radii = rng.uniform(0.22, 0.3, ndim) * extent * np.r_[np.ones(ndim - 1), 0.9]
    if not left:
        ellipsoid_center[-1] += extent[-1] / 2
    ellipsoid = _ball(grid, ellipsoid_center, ellipsoid_radii)
    labels[ellipsoid] = LABELS["ellipsoid"]

    cuboid_center = ellipsoid_center.copy()
    cuboid_center[-1] = extent[-1] - ellipsoid_center[-1]
    cuboid_half = rng.uniform(0.12, 0.2, ndim) * extent
    cuboid = _box(grid, cuboid_center - cuboid_half, cuboid_center + cuboid_half)
    labels[cuboid] = LABELS["cuboid"]

    # Bright spheres: inside the ellipsoid they are label 2, elsewhere distractors (background).
    sphere_radius = 0.05 * extent[-ndim:].min() + 1.5 * max(spec.spacing)
    spheres = np.zeros(spec.shape, dtype=bool)
    for _ in range(rng.integers(1, 4)):
        offset = rng.normal(size=ndim)
        offset *= rng.uniform(0, 0.55) / np.linalg.norm(offset)
        inclusion = _ball(grid, ellipsoid_center + offset * ellipsoid_radii, np.full(ndim, sphere_radius))
        labels[inclusion & ellipsoid] = LABELS["inclusion"]
        spheres |= inclusion
    for _ in range(rng.integers(1, 4)):
        center = rng.uniform(0.1, 0.9, ndim) * extent
        distractor = _ball(grid, center, np.full(ndim, sphere_radius)) & ~ellipsoid & ~cuboid
        spheres |= distractor

    tissue = np.zeros(spec.shape, dtype=np.int64)
    tissue[ellipsoid | cuboid] = 1
    tissue[spheres & (labels != LABELS["cuboid"])] = 2
    bias = _smooth_field(rng, grid, extent)
    channels = []
    for table in CONTRAST_TABLES[: spec.n_channels]:
        contrast, offset = rng.uniform(0.7, 1.4), rng.uniform(-0.3, 0.3)
        clean = table[tissue] * contrast + offset
        channels.append(clean * bias + rng.normal(0, spec.noise_std, spec.shape))
    return np.stack(channels).astype(np.float32), labels


def _write_image(array: np.ndarray, spacing: tuple[float, ...], path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in reversed(spacing)])  # SimpleITK orders axes x, y(, z)
    sitk.WriteImage(image, str(path), useCompression=True)


def _write_cases_and_dataset_json(spec: SynthSpec, folder: Path) -> None:
    """Every case of ``spec`` and its dataset.json into ``folder`` (nnU-Net's raw layout)."""
    rng = np.random.default_rng(spec.seed)
    splits = [("imagesTr", "labelsTr", "train", spec.n_train), ("imagesTs", "labelsTs", "test", spec.n_test)]
    for image_dir, label_dir, prefix, count in splits:
        (folder / image_dir).mkdir(parents=True)
        (folder / label_dir).mkdir()
        for index in range(count):
            case = f"{prefix}_{index:03d}"
            image, labels = generate_case(spec, rng)
            for channel, channel_image in enumerate(image):
                _write_image(channel_image, spec.spacing, folder / image_dir / f"{case}_{channel:04d}{FILE_ENDING}")
            _write_image(labels, spec.spacing, folder / label_dir / f"{case}{FILE_ENDING}")
    generate_dataset_json(
        str(folder),
        channel_names={c: f"contrast{c}" for c in range(spec.n_channels)},
        labels=LABELS,
        num_training_cases=spec.n_train,
        file_ending=FILE_ENDING,
        dataset_name=spec.folder_name,
        description="nnunet-attention synthetic data: " + json.dumps(asdict(spec)),
        license="CC0 (generated)",
        converted_by="nnunet-attention synth",
    )


def write_dataset(spec: SynthSpec, raw_folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the dataset into ``raw_folder/DatasetXXX_Name`` and return that folder.

    Raises FileExistsError if the folder exists and ``overwrite`` is False.
    """
    target = Path(raw_folder) / spec.folder_name
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists; pass overwrite=True (--overwrite) or choose another --dataset-id")
    # written under a hidden name outside nnU-Net's DatasetXXX_ namespace (nnU-Net finds a dataset by that prefix),
    # removed again if anything fails, renamed once complete
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write_cases_and_dataset_json(spec, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target
