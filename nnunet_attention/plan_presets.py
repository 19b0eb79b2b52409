"""Plans to benchmark on: read from an ``nnUNetPlans.json``, or built-in presets that mirror real nnU-Net plans.

A :class:`BenchmarkPlan` holds one configuration in nnU-Net's own plan format plus what the benchmark needs
besides (input channels, classes, the median case size), and rebuilds a ``PlansManager`` from it, so every
network is built exactly as its trainer builds it from a real plan.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ops of nnU-Net's default U-Net plans, per dimensionality
_OPS = {
    2: {"conv_op": "torch.nn.modules.conv.Conv2d", "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d"},
    3: {"conv_op": "torch.nn.modules.conv.Conv3d", "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d"},
}


def plain_unet_architecture(kernel_sizes: list, strides: list, max_features: int) -> dict[str, Any]:
    """The ``architecture`` entry nnU-Net's default planner writes for a PlainConvUNet with these stages
    (32 base features doubling per stage up to ``max_features``, 2 convs per stage, instance norm, leaky ReLU)."""
    n_stages = len(strides)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [min(32 * 2**i, max_features) for i in range(n_stages)],
            "conv_op": _OPS[len(strides[0])]["conv_op"],
            "kernel_sizes": kernel_sizes,
            "strides": strides,
            "n_conv_per_stage": [2] * n_stages,
            "n_conv_per_stage_decoder": [2] * (n_stages - 1),
            "conv_bias": True,
            "norm_op": _OPS[len(strides[0])]["norm_op"],
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


@dataclass(frozen=True)
class BenchmarkPlan:
    """One configuration of a plan.

    Attributes:
        name: what the plan is (``"ACDC 2d"``).
        configuration: the configuration's name in the plan.
        configuration_plan: the configuration entry as in ``nnUNetPlans.json`` (patch_size, batch_size,
            spacing, architecture, ...).
        input_channels, num_classes: from the dataset's dataset.json (classes incl. background).
        case_shape: voxels of a median case on the configuration's grid (for a 2d configuration: the
            median number of slices, then the 2D median size), used for the inference timing.
        source: where the numbers come from.
    """

    name: str
    configuration: str
    configuration_plan: dict[str, Any] = field(hash=False)
    input_channels: int
    num_classes: int
    case_shape: tuple[int, ...]
    source: str

    @property
    def patch_size(self) -> list[int]:
        return list(self.configuration_plan["patch_size"])

    @property
    def batch_size(self) -> int:
        return int(self.configuration_plan["batch_size"])

    def label(self, batch_size: int) -> str:
        return f"{self.name} {self.patch_size} b{batch_size}"

    def dataset_json(self) -> dict[str, Any]:
        return {
            "channel_names": {str(i): f"channel{i}" for i in range(self.input_channels)},
            "labels": {"background": 0, **{f"class{i}": i for i in range(1, self.num_classes)}},
            "file_ending": ".nii.gz",
        }

    def plans_manager(self):
        """nnU-Net's PlansManager for a plan holding only this configuration."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        spatial_dims = len(self.patch_size)
        plans = {
            "dataset_name": self.name,
            "plans_name": "nnUNetPlans",
            "transpose_forward": list(range(spatial_dims)),
            "transpose_backward": list(range(spatial_dims)),
            "label_manager": "LabelManager",
            "configurations": {self.configuration: self.configuration_plan},
        }
        return PlansManager(plans)

    @classmethod
    def from_plans_file(cls, plans_file: str | os.PathLike, configuration: str) -> BenchmarkPlan:
        """``configuration`` of an ``nnUNetPlans.json``; channels and classes from the dataset.json beside it
        (nnUNet_preprocessed/DatasetXXX/ and model folders hold both)."""
        from nnunetv2.utilities.label_handling.label_handling import LabelManager

        plans_file = Path(plans_file)
        plans = json.loads(plans_file.read_text())
        dataset_file = plans_file.with_name("dataset.json")
        if configuration not in plans.get("configurations", {}):
            raise ValueError(f"{plans_file} has no configuration {configuration!r}; it has "
                             f"{sorted(plans.get('configurations', {}))}")
        if not dataset_file.is_file():
            raise ValueError(f"no dataset.json beside {plans_file}: copy the dataset's dataset.json there (it gives "
                             f"the number of input channels and classes)")
        dataset_json = json.loads(dataset_file.read_text())
        configuration_plan = plans["configurations"][configuration]
        if "patch_size" not in configuration_plan:
            raise ValueError(f"configuration {configuration!r} of {plans_file} has no patch_size (a cascade or "
                             f"inheriting configuration); benchmark one of its concrete configurations")
        median = [round(v) for v in configuration_plan["median_image_size_in_voxels"]]
        if len(median) == 2:  # 2d configuration: the median number of slices comes from the original median shape
            median = [round(plans["original_median_shape_after_transp"][0]), *median]
        labels = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
        channels = dataset_json.get("channel_names", dataset_json.get("modality"))
        return cls(f"{plans['dataset_name']} {configuration}", configuration, configuration_plan, len(channels),
                   labels.num_segmentation_heads, tuple(median), str(plans_file))


def _preset(name: str, configuration: str, patch_size: list[int], batch_size: int, spacing: list[float],
            kernel_sizes: list, strides: list, max_features: int, input_channels: int, num_classes: int,
            case_shape: tuple[int, ...], source: str) -> BenchmarkPlan:
    configuration_plan = {
        "patch_size": patch_size, "batch_size": batch_size, "spacing": spacing,
        "median_image_size_in_voxels": list(case_shape[-len(patch_size):]),
        "architecture": plain_unet_architecture(kernel_sizes, strides, max_features),
    }
    return BenchmarkPlan(name, configuration, configuration_plan, input_channels, num_classes, tuple(case_shape),
                         source)


_SYNTHETIC = "nnU-Net 2.8.1's planner on synthetic datasets (nnunet-attention synth) of this size"


def _planned(dataset: str, statistics: str) -> str:
    return (f"nnU-Net 2.8.1's default ExperimentPlanner (nnUNetPlans, 8 GB target) on a fingerprint with {dataset}'s "
            f"{statistics}; the planner's output, not a copy of a published plan")


_ACDC = _planned("ACDC", "median size 9 x 237 x 208 voxels, spacing 10 x 1.5625 x 1.5625 mm with a quarter of the "
                 "volumes at 5 mm slice distance (the planner's anisotropic target spacing takes the 10th percentile)")
_ISO_3X3 = [[3, 3, 3]]

#: name -> plan. See each plan's ``source``. The real-data presets give nnU-Net's planned batch size; on a
#: small device pass ``--batch-size``.
PLAN_PRESETS: dict[str, BenchmarkPlan] = {
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
