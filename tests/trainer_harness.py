"""This package's trainers run in-process on a plan in nnU-Net's own format, without a dataset on disk.

For what a trainer does at ``initialize()`` (build the network from the plan, loss, optimizer), in nnU-Net's
``train_step`` and with its checkpoints, in a fraction of a second per trainer: ``nnUNetv2_train`` itself runs
in the end-to-end tests.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from plan_factory import NARROW_ARCHITECTURE_KWARGS

DATASET_NAME = "Dataset990_Harness"
#: the plan keys whose values nnU-Net stores as import paths
REQUIRES_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin", "block"]


def _import_path(value):
    return f"{value.__module__}.{value.__qualname__}" if isinstance(value, type) else value


def plans_for(arch_kwargs: dict, patch: list[int], configuration: str = "harness", batch_size: int = 2,
              plain: bool = True) -> dict:
    """An ``nnUNetPlans.json`` dict with one configuration whose U-Net has ``arch_kwargs`` (op classes allowed)."""
    spatial_dims = len(patch)
    network_class = "PlainConvUNet" if plain else "ResidualEncoderUNet"
    return {
        "dataset_name": DATASET_NAME,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0] * spatial_dims,
        "original_median_shape_after_transp": [2 * p for p in patch],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(range(spatial_dims)),
        "transpose_backward": list(range(spatial_dims)),
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {},
        "configurations": {configuration: {
            "data_identifier": f"nnUNetPlans_{configuration}",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": batch_size,
            "patch_size": list(patch),
            "median_image_size_in_voxels": [2 * p for p in patch],
            "spacing": [1.0] * spatial_dims,
            "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities_kwargs": {},
            "batch_dice": True,
            "architecture": {
                "network_class_name": f"dynamic_network_architectures.architectures.unet.{network_class}",
                "arch_kwargs": {key: _import_path(value) for key, value in arch_kwargs.items()},
                "_kw_requires_import": [key for key in REQUIRES_IMPORT if key in arch_kwargs],
            },
        }},
    }


def cascade_plans_for(arch_kwargs: dict, patch: list[int]) -> dict:
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


def dataset_json_for(input_channels: int, num_classes: int, regions: bool = False) -> dict:
    """Labels ``0..num_classes-1``; with ``regions``, nnU-Net's region-based form: region ``i`` holds labels
    ``i..num_classes-1`` (nested regions as in BraTS), one sigmoid output per region."""
    labels = {"background": 0}
    for label in range(1, num_classes):
        labels[f"class{label}"] = list(range(label, num_classes)) if regions else label
    dataset = {"channel_names": {str(i): f"channel{i}" for i in range(input_channels)}, "labels": labels,
               "numTraining": 0, "file_ending": ".nii.gz"}
    if regions:
        dataset["regions_class_order"] = list(range(1, num_classes))
    return dataset


def harness_trainer_class(trainer_class: type[nnUNetTrainer]) -> type[nnUNetTrainer]:
    """``trainer_class`` at the CPU test width (see NARROW_ARCHITECTURE_KWARGS), under its own name."""
    narrow = NARROW_ARCHITECTURE_KWARGS.get(trainer_class.__name__)
    if not narrow:
        return trainer_class
    attributes = {"architecture_kwargs": {**trainer_class.architecture_kwargs, **narrow}, "__module__": __name__}
    return type(trainer_class.__name__, (trainer_class,), attributes)


def make_trainer(trainer_class: type[nnUNetTrainer], plans: dict, dataset_json: dict, root: Path, monkeypatch,
                 initialize: bool = True, configuration: str | None = None, device: str = "cpu") -> nnUNetTrainer:
    """``trainer_class(plans, configuration, fold 0, dataset_json, device)`` with nnU-Net's folders under ``root``;
    initialized (network, loss, optimizer) unless ``initialize`` is False. ``configuration``: by default the plans'
    first."""
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(root / variable))
    trainer = construct_trainer(trainer_class, plans, dataset_json, root, configuration, device)
    if initialize:
        trainer.initialize()
    return trainer


def construct_trainer(trainer_class: type[nnUNetTrainer], plans: dict, dataset_json: dict, root: Path,
                      configuration: str | None = None, device: str = "cpu") -> nnUNetTrainer:
    """``trainer_class(plans, configuration, fold 0, dataset_json, device)``, not initialized, with a preprocessed
    folder under ``root`` for nnU-Net to find its dataset class in."""
    configuration = configuration or next(iter(plans["configurations"]))
    data_identifier = PlansManager(plans).get_configuration(configuration).data_identifier
    data_folder = root / "nnUNet_preprocessed" / DATASET_NAME / data_identifier
    data_folder.mkdir(parents=True, exist_ok=True)
    (data_folder / "case.b2nd").touch()  # nnU-Net picks its dataset class from the preprocessed files' ending
    return trainer_class({**copy.deepcopy(plans), "continue_training": False}, configuration, 0, dataset_json,
                         torch.device(device))


def training_batch(trainer: nnUNetTrainer, generator: torch.Generator, intensity: float = 1.0) -> dict:
    """A batch as nnU-Net's data loader gives it to ``train_step``: random images (times ``intensity``) and a
    random segmentation, as region masks for region-based training, downsampled per deep-supervision scale."""
    configuration = trainer.configuration_manager
    batch_size, patch = configuration.batch_size, configuration.patch_size
    data = intensity * torch.randn(batch_size, trainer.num_input_channels, *patch, generator=generator)
    labels = trainer.label_manager.all_labels
    segmentation = torch.randint(min(labels), max(labels) + 1, (batch_size, 1, *patch), generator=generator)
    if trainer.label_manager.has_regions:
        regions = trainer.label_manager.foreground_regions
        segmentation = torch.cat([torch.isin(segmentation, torch.tensor(_as_list(r))) for r in regions], dim=1)
    target = segmentation.float()
    scales = trainer._get_deep_supervision_scales()
    if scales is None:
        return {"data": data, "target": target}
    targets = [F.interpolate(target, size=[round(p * s) for p, s in zip(patch, scale)], mode="nearest-exact")
               for scale in scales]
    return {"data": data, "target": targets}


def _as_list(region) -> list[int]:
    return list(region) if isinstance(region, (list, tuple)) else [region]
