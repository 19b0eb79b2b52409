"""Built-in plans to benchmark and test on: nnU-Net 2.8.1's planner output for real datasets' fingerprints and for
the synthetic datasets, as data (the stages, patch, batch, spacing, channels, classes and median case size of each);
:func:`~nnunet_attention.plans_fabricator.preset_configuration` turns one into a
:class:`~nnunet_attention.planned_configuration.PlannedConfiguration`.
"""

from __future__ import annotations

from .planned_configuration import PlannedConfiguration
from .plans_fabricator import preset_configuration as _preset

_SYNTHETIC = "nnU-Net 2.8.1's planner on synthetic datasets (nnunet-attention synth) of this size"


def _planned(dataset: str, statistics: str) -> str:
    return (f"nnU-Net 2.8.1's default ExperimentPlanner (nnUNetPlans, 8 GB target) on a fingerprint with {dataset}'s "
            f"{statistics}; the planner's output, not a copy of a published plan")


_ACDC = _planned("ACDC", "median size 9 x 237 x 208 voxels, spacing 10 x 1.5625 x 1.5625 mm with a quarter of the "
                 "volumes at 5 mm slice distance (the planner's anisotropic target spacing takes the 10th percentile)")
_ISO_3X3 = [[3, 3, 3]]

#: name -> plan. See each plan's ``source``. The real-data presets give nnU-Net's planned batch size; on a
#: small device pass ``--batch-size``.
PLAN_PRESETS: dict[str, PlannedConfiguration] = {
    "synthetic-2d": _preset(
        "synthetic 2d", "2d", [96, 112], 2, [1.0, 1.0], [[3, 3]] * 5,
        [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]], 512, 1, 4, (1, 96, 112), _SYNTHETIC + " (96 x 112)"),
    "synthetic-3d_fullres": _preset(
        "synthetic 3d_fullres", "3d_fullres", [20, 48, 56], 2, [3.0, 1.0, 1.0],
        [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], 320, 1, 4,
        (20, 48, 56), _SYNTHETIC + " (20 x 48 x 56 at 3 x 1 x 1 mm)"),
    "acdc-2d": _preset(
        "ACDC 2d", "2d", [256, 224], 56, [1.5625, 1.5625], [[3, 3]] * 6,
        [[1, 1]] + [[2, 2]] * 5, 512, 1, 4, (9, 237, 208), _ACDC),
    "acdc-3d_fullres": _preset(
        "ACDC 3d_fullres", "3d_fullres", [20, 256, 224], 4, [5.0, 1.5625, 1.5625], [[1, 3, 3]] + _ISO_3X3 * 5,
        [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]], 320, 1, 4, (18, 237, 208), _ACDC),
    "hippocampus-3d_fullres": _preset(
        "MSD Hippocampus 3d_fullres", "3d_fullres", [40, 56, 40], 9, [1.0, 1.0, 1.0], _ISO_3X3 * 4,
        [[1, 1, 1]] + [[2, 2, 2]] * 3, 320, 1, 3, (36, 50, 35),
        _planned("MSD Task04 Hippocampus", "median size 36 x 50 x 35 voxels at 1 mm isotropic")),
    "prostate-3d_fullres": _preset(
        "MSD Prostate 3d_fullres", "3d_fullres", [20, 320, 256], 2, [3.6, 0.625, 0.625],
        [[1, 3, 3], [1, 3, 3]] + _ISO_3X3 * 5,
        [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]], 320, 2, 3, (20, 320, 319),
        _planned("MSD Task05 Prostate", "median size 20 x 320 x 319 voxels at 3.6 x 0.625 x 0.625 mm, 2 channels")),
    "braintumour-3d_fullres": _preset(
        "MSD BrainTumour 3d_fullres", "3d_fullres", [128, 128, 128], 2, [1.0, 1.0, 1.0], _ISO_3X3 * 6,
        [[1, 1, 1]] + [[2, 2, 2]] * 5, 320, 4, 4, (138, 169, 138),
        _planned("MSD Task01 BrainTumour", "median size 138 x 169 x 138 voxels at 1 mm isotropic, 4 channels")),
}
