"""Plans in nnU-Net's own format, made without a dataset: for the built-in presets, nnU-Net's patch-search
candidates, and the tests.

Everything the tools do with a plan goes through nnU-Net's ``PlansManager`` and a trainer constructed on it, so a
fabricated plan holds every key a trainer reads at construction and in its training step, written as nnU-Net's
planner writes them (op classes as import paths).
"""

from __future__ import annotations

import copy
from typing import Any

#: dataset name of fabricated plans
FABRICATED_DATASET_NAME = "Dataset999_Fabricated"
#: the plan keys whose values nnU-Net stores as import paths
REQUIRES_IMPORT = ("conv_op", "norm_op", "dropout_op", "nonlin", "block")
#: ops of nnU-Net's default U-Net plans, per dimensionality
_DEFAULT_OPS = {
    2: {"conv_op": "torch.nn.modules.conv.Conv2d", "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d"},
    3: {"conv_op": "torch.nn.modules.conv.Conv3d", "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d"},
}


def _import_path(value: Any) -> Any:
    return f"{value.__module__}.{value.__qualname__}" if isinstance(value, type) else value


def plain_unet_arch_kwargs(kernel_sizes: list, strides: list, max_features: int) -> dict[str, Any]:
    """The ``arch_kwargs`` nnU-Net's default planner writes for a PlainConvUNet with these stages (32 base
    features doubling per stage up to ``max_features``, 2 convs per stage, instance norm, leaky ReLU)."""
    n_stages, spatial_dims = len(strides), len(strides[0])
    return {
        "n_stages": n_stages,
        "features_per_stage": [min(32 * 2**i, max_features) for i in range(n_stages)],
        "conv_op": _DEFAULT_OPS[spatial_dims]["conv_op"],
        "kernel_sizes": kernel_sizes,
        "strides": strides,
        "n_conv_per_stage": [2] * n_stages,
        "n_conv_per_stage_decoder": [2] * (n_stages - 1),
        "conv_bias": True,
        "norm_op": _DEFAULT_OPS[spatial_dims]["norm_op"],
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }


def architecture_entry(arch_kwargs: dict[str, Any], residual: bool | None = None) -> dict[str, Any]:
    """A configuration's ``architecture`` entry for U-Net ``arch_kwargs`` (op classes or import paths):
    ``ResidualEncoderUNet`` where the kwargs have ``n_blocks_per_stage`` (or ``residual``), else
    ``PlainConvUNet``."""
    residual = "n_blocks_per_stage" in arch_kwargs if residual is None else residual
    network = "ResidualEncoderUNet" if residual else "PlainConvUNet"
    return {
        "network_class_name": f"dynamic_network_architectures.architectures.unet.{network}",
        "arch_kwargs": {key: _import_path(value) for key, value in arch_kwargs.items()},
        "_kw_requires_import": [key for key in REQUIRES_IMPORT if key in arch_kwargs],
    }


def configuration_entry(arch_kwargs: dict[str, Any], patch: list[int], configuration: str,
                        batch_size: int = 2, spacing: list[float] | None = None,
                        median_shape: list[int] | None = None) -> dict[str, Any]:
    """One configuration of ``nnUNetPlans.json`` whose U-Net has ``arch_kwargs``, at ``patch`` and ``batch_size``
    (spacing default 1 per axis, median image size default twice the patch)."""
    spatial_dims = len(patch)
    return {
        "data_identifier": f"nnUNetPlans_{configuration}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": batch_size,
        "patch_size": list(patch),
        "median_image_size_in_voxels": list(median_shape or [2 * p for p in patch]),
        "spacing": list(spacing or [1.0] * spatial_dims),
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities_kwargs": {},
        "batch_dice": True,
        "architecture": architecture_entry(arch_kwargs),
    }


def plans_for(arch_kwargs: dict[str, Any], patch: list[int], configuration: str | None = None, batch_size: int = 2,
              spacing: list[float] | None = None, median_shape: list[int] | None = None,
              dataset_name: str = FABRICATED_DATASET_NAME) -> dict[str, Any]:
    """An ``nnUNetPlans.json`` dict with the one configuration of :func:`configuration_entry` (named ``2d`` or
    ``3d_fullres`` by the patch unless ``configuration`` says)."""
    spatial_dims = len(patch)
    configuration = configuration or ("2d" if spatial_dims == 2 else "3d_fullres")
    median = list(median_shape or [2 * p for p in patch])
    return {
        "dataset_name": dataset_name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing or [1.0] * spatial_dims),
        "original_median_shape_after_transp": median,
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(range(spatial_dims)),
        "transpose_backward": list(range(spatial_dims)),
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {},
        "configurations": {configuration: configuration_entry(arch_kwargs, patch, configuration, batch_size, spacing,
                                                              median_shape)},
    }


def cascade_plans_for(arch_kwargs: dict[str, Any], patch: list[int]) -> dict[str, Any]:
    """Plans with nnU-Net's cascade: ``3d_lowres`` (next stage ``3d_cascade_fullres``), ``3d_fullres`` and
    ``3d_cascade_fullres``, which inherits ``3d_fullres`` and names ``3d_lowres`` its previous stage."""
    plans = plans_for(arch_kwargs, patch, configuration="3d_fullres")
    fullres = plans["configurations"]["3d_fullres"]
    plans["configurations"] = {
        "3d_lowres": {**copy.deepcopy(fullres), "data_identifier": "nnUNetPlans_3d_lowres",
                      "next_stage": "3d_cascade_fullres"},
        "3d_fullres": fullres,
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
    }
    return plans


def dataset_json_for(input_channels: int, num_classes: int, regions: bool = False) -> dict[str, Any]:
    """A ``dataset.json`` with labels ``0..num_classes-1``; with ``regions``, nnU-Net's region-based form: region
    ``i`` holds labels ``i..num_classes-1`` (nested regions as in BraTS), one sigmoid output per region."""
    labels: dict[str, Any] = {"background": 0}
    for label in range(1, num_classes):
        labels[f"class{label}"] = list(range(label, num_classes)) if regions else label
    dataset = {"channel_names": {str(i): f"channel{i}" for i in range(input_channels)}, "labels": labels,
               "numTraining": 0, "file_ending": ".nii.gz"}
    if regions:
        dataset["regions_class_order"] = list(range(1, num_classes))
    return dataset


def preset_configuration(name: str, configuration: str, patch_size: list[int], batch_size: int,
                         spacing: list[float], kernel_sizes: list, strides: list, max_features: int,
                         input_channels: int, num_classes: int, case_shape: tuple[int, ...], source: str):
    """A built-in preset (:mod:`nnunet_attention.plan_presets`) as a planned configuration of nnU-Net's default
    PlainConvUNet plan with these stages."""
    from .planned_configuration import PlannedConfiguration

    median = list(case_shape[-len(patch_size):])
    plans = plans_for(plain_unet_arch_kwargs(kernel_sizes, strides, max_features), patch_size, configuration,
                      batch_size, spacing, median, dataset_name=name)
    plans["original_median_shape_after_transp"] = list(case_shape)
    return PlannedConfiguration(name, plans, configuration, dataset_json_for(input_channels, num_classes),
                                tuple(case_shape), source)
