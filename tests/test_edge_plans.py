"""Edge plans nnU-Net can emit, for every registered trainer, through nnU-Net's own ``initialize()`` and
``train_step``: 3 and 8 stages, first-stage kernels [1, 3, 3] with strides [1, 2, 2], strides [2, 2, 1], a
deepest stage of 1-3 voxels along an axis, attention grids that are no multiple of MT-UNet's window, 1 to 4
input channels, 2 to 15 classes, ResEnc plans, region-based training. Plans that cannot run fail at
``initialize()`` with a message naming the plan value and the fix.
"""

import numpy as np
import pytest
import torch
from helpers import ANY_PATCH_TRAINERS, harness_trainer_class, make_trainer, plan_from_layout
from nnunet_attention.trainers import TRAINERS
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_attention.plan_matrix import patch_for_divisor
from nnunet_attention.plans_fabricator import cascade_plans_for, dataset_json_for, plans_for
from nnunet_attention.trainer_step import training_batch


def isotropic(spatial_dims: int, n_stages: int) -> list[list[int]]:
    return [[1] * spatial_dims] + [[2] * spatial_dims] * (n_stages - 1)


def threes(spatial_dims: int, n_stages: int) -> list[list[int]]:
    return [[3] * spatial_dims] * n_stages


#: id -> (strides, kernel_sizes, patch_size, input channels, classes, ResEnc plan)
EDGE_PLANS = {
    "2d-3-stages": (isotropic(2, 3), threes(2, 3), [12, 20], 1, 2, False),
    # deepest stage 1 x 3: 2D plans of large images have 7-8 stages
    "2d-8-stages-15-classes": (isotropic(2, 8), threes(2, 8), [128, 384], 4, 15, False),
    "3d-3-stages-resenc": (isotropic(3, 3), threes(3, 3), [8, 12, 20], 1, 2, True),
    # thin-slice axis stops at 4 voxels; deepest stage 1 x 1 x 2
    "3d-8-stages": ([[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2], [1, 2, 2]],
                    threes(3, 8), [4, 128, 256], 2, 3, False),
    "3d-strides-221": ([[1, 1, 1], [2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]],
                       [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [48, 80, 4], 3, 4, False),
    "3d-kernels-133-strides-122": ([[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                                   [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [4, 80, 48], 4, 5, True),
    # attention grids 7 x 11 and 14 x 22: no multiple of an attention window
    "2d-grids-not-window-multiples": (isotropic(2, 5), threes(2, 5), [112, 176], 1, 2, False),
}
CASES = [(name, plan) for name in ANY_PATCH_TRAINERS for plan in EDGE_PLANS]


def edge_plans(plan_id: str) -> tuple[dict, dict]:
    strides, kernels, patch, input_channels, num_classes, residual = EDGE_PLANS[plan_id]
    plans = plans_for(plan_from_layout(strides, kernels, residual), patch)
    return plans, dataset_json_for(input_channels, num_classes)


def check_one_step_and_prediction(trainer, patch: list[int], num_outputs: int) -> None:
    """One nnU-Net training step gives a finite loss and finite weights; the evaluation-mode network (deep
    supervision off, as the predictor runs it) gives one ``(B, num_outputs, *patch)`` tensor."""
    batch = training_batch(trainer, torch.Generator().manual_seed(0))
    loss = trainer.train_step(batch)["loss"]
    assert np.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in trainer.network.parameters())
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    with torch.no_grad():
        prediction = trainer.network(batch["data"])
    assert list(prediction.shape) == [batch["data"].shape[0], num_outputs, *patch]


@pytest.mark.parametrize("trainer_name,plan_id", CASES)
def test_edge_plan_trains_and_predicts(trainer_name, plan_id, tmp_path, monkeypatch):
    plans, dataset_json = edge_plans(plan_id)
    trainer = make_trainer(harness_trainer_class(TRAINERS[trainer_name]), plans, dataset_json, tmp_path, monkeypatch)
    check_one_step_and_prediction(trainer, EDGE_PLANS[plan_id][2], EDGE_PLANS[plan_id][4])


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_region_based_training_uses_sigmoid_outputs(trainer_name, spatial_dims, tmp_path, monkeypatch):
    """BraTS-like nested regions: one output per region, nnU-Net's Dice + BCE, a finite step."""
    strides = isotropic(spatial_dims, 4) if spatial_dims == 2 else EDGE_PLANS["3d-kernels-133-strides-122"][0][:4]
    kernels = threes(spatial_dims, 4)
    patch = patch_for_divisor([24, 40] if spatial_dims == 2 else [4, 32, 24], strides,
                              TRAINERS[trainer_name].patch_divisor)
    plans = plans_for(plan_from_layout(strides, kernels), patch)
    trainer = make_trainer(harness_trainer_class(TRAINERS[trainer_name]), plans,
                           dataset_json_for(2, num_classes=4, regions=True), tmp_path, monkeypatch)
    assert trainer.label_manager.has_regions and trainer.label_manager.num_segmentation_heads == 3
    losses = [m for m in trainer.loss.modules() if isinstance(m, DC_and_BCE_loss)]
    assert losses, f"{trainer_name} does not train regions with nnU-Net's Dice + BCE"
    check_one_step_and_prediction(trainer, patch, num_outputs=3)


#: plans that cannot run: (strides, patch, what our message names, how nnU-Net's own U-Net fails on them)
REFUSED_PLANS = {
    "patch-not-divisible-by-total-stride": (isotropic(2, 4), [24, 36], r"patch_size \[24, 36\] is not divisible",
                                            "Sizes of tensors must match"),
    "single-voxel-deepest-stage": (isotropic(3, 4), [8, 8, 8], r"deepest stage is a single voxel \[1, 1, 1\]",
                                   "Expected more than 1 spatial element"),
}


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
@pytest.mark.parametrize("refusal", sorted(REFUSED_PLANS))
def test_plan_that_cannot_run_fails_at_initialization_naming_the_value(trainer_name, refusal, tmp_path, monkeypatch):
    strides, patch, message, _ = REFUSED_PLANS[refusal]
    plans = plans_for(plan_from_layout(strides, threes(len(patch), len(strides))), patch)
    trainer = make_trainer(TRAINERS[trainer_name], plans, dataset_json_for(1, 2), tmp_path, monkeypatch,
                           initialize=False)
    with pytest.raises(ValueError, match=message) as refusal_error:
        trainer.initialize()
    assert "nnUNetPlans.json" in str(refusal_error.value)  # where to fix it


def test_refused_plans_really_break_the_plain_unet(tmp_path, monkeypatch):
    """The refusals are not over-cautious: nnU-Net's own U-Net on the same plans fails inside its forward pass."""
    for strides, patch, _, plain_unet_failure in REFUSED_PLANS.values():
        plans = plans_for(plan_from_layout(strides, threes(len(patch), len(strides))), patch)
        trainer = make_trainer(nnUNetTrainer, plans, dataset_json_for(1, 2), tmp_path, monkeypatch)
        with pytest.raises((RuntimeError, ValueError), match=plain_unet_failure):
            trainer.train_step(training_batch(trainer, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
def test_cascade_stage_takes_the_previous_stages_one_hot_segmentation_as_input(trainer_name, tmp_path, monkeypatch):
    """``3d_cascade_fullres``: nnU-Net appends the previous stage's segmentation, one-hot over the foreground
    labels, to the image channels; the network takes them all, trains one step and predicts."""
    strides, kernels = EDGE_PLANS["3d-kernels-133-strides-122"][0][:4], threes(3, 4)
    patch = patch_for_divisor([4, 32, 24], strides, TRAINERS[trainer_name].patch_divisor)
    input_channels, num_classes = 2, 4
    plans = cascade_plans_for(plan_from_layout(strides, kernels), patch)
    trainer = make_trainer(harness_trainer_class(TRAINERS[trainer_name]), plans,
                           dataset_json_for(input_channels, num_classes), tmp_path, monkeypatch,
                           configuration="3d_cascade_fullres")
    assert trainer.is_cascaded and trainer.num_input_channels == input_channels + num_classes - 1
    first_conv = next(m for m in trainer.network.modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.in_channels == input_channels + num_classes - 1
    check_one_step_and_prediction(trainer, patch, num_classes)
