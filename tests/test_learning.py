"""Every trainer learns: nnU-Net's ``initialize()`` builds its network, loss and optimizer
on a small U-Net plan, nnU-Net's ``train_step`` trains it on synthetic cases, and its segmentation of cases it did
not see clears a Dice bar that the same network untrained stays below.

In this process and on small patches, so that each trainer learns in seconds (2d) to tens of seconds (3d) on a
2-core CPU; the stock ``nnUNetv2_train`` path is exercised end to end by the reference trainer
(test_end_to_end.py), and per trainer by the ``slow`` run of that module.
"""

import numpy as np
import pytest
import torch
from helpers import ANY_PATCH_TRAINERS, harness_trainer_class, make_trainer, plan_from_layout
from nnunet_attention.trainers import TRAINERS
from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn

from nnunet_attention.plans_fabricator import dataset_json_for, plans_for
from nnunet_attention.synth import LABELS, SynthSpec, generate_case
from nnunet_attention.trainer_step import supervision_target

FOREGROUND = [value for value in LABELS.values() if value]
BATCH_SIZE = 4
TRAINING_CASES, HELD_OUT_CASES = 64, 16

#: per dimension: the synthetic case shape (array order) and spacing, the plan's per-stage strides and kernels
#: (3d: anisotropic, as nnU-Net plans thick-slice images), training steps, and the held-out Dice bar. Measured on
#: 2 cores: every trained network clears its bar with margin (2d: 0.76-0.93, 3d: 0.44-0.80), every untrained one
#: stays below 0.14
SETTINGS = {
    2: dict(shape=(32, 48), spacing=(1.0, 1.0), strides=[[1, 1], [2, 2], [2, 2], [2, 2]],
            kernels=[[3, 3]] * 4, steps=200, bar=0.6),
    3: dict(shape=(8, 24, 32), spacing=(3.0, 1.0, 1.0), strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
            kernels=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], steps=300, bar=0.3),
}
#: fewer 3d steps for the trainers that clear the bar with margin sooner (measured on 2 cores at 200 steps: MSGA
#: 0.61, MCANet 0.50; the others 0.22-0.26, below the bar, hence 300)
STEPS_3D = {"nnUNetTrainerMSGA": 200, "nnUNetTrainerMCANet": 200}
#: the plan's widths: 8 base features doubling per stage (the harness plans' 4 are too narrow for the Non-local
#: U-Net to learn the three labels in these steps)
FEATURES = [8, 16, 32, 64]

CASES = [(name, dims) for name in ANY_PATCH_TRAINERS for dims in (2, 3)]


def synthetic_cases(spec: SynthSpec, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` cases: images ``(count, 1, *shape)`` z-scored per case (nnU-Net's normalisation of non-CT images)
    and label maps ``(count, 1, *shape)``."""
    rng = np.random.default_rng(seed)
    images, labels = zip(*(generate_case(spec, rng) for _ in range(count)))
    images = torch.from_numpy(np.stack(images))
    mean = images.mean(dim=tuple(range(1, images.ndim)), keepdim=True)
    std = images.std(dim=tuple(range(1, images.ndim)), keepdim=True)
    return (images - mean) / std, torch.from_numpy(np.stack(labels)).long()[:, None]


def held_out_dice(trainer, images: torch.Tensor, labels: torch.Tensor) -> float:
    """nnU-Net's foreground mean Dice of the trainer's evaluation-mode network (deep supervision off, as the
    predictor runs it): per label the mean over the cases where reference or prediction hold it, then the mean
    over labels."""
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    with torch.no_grad():
        predicted = trainer.network(images).argmax(1, keepdim=True).numpy()
    trainer.network.train()
    trainer.set_deep_supervision_enabled(True)
    per_label = []
    for label in FOREGROUND:
        dice = []
        for reference, prediction in zip(labels.numpy() == label, predicted == label):
            tp, fp, fn, _ = compute_tp_fp_fn_tn(reference, prediction)
            dice.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan)
        per_label.append(np.nanmean(dice))
    return float(np.mean(per_label))


@pytest.mark.parametrize("trainer_name,spatial_dims", CASES)
def test_trained_network_clears_the_bar_its_untrained_network_cannot(trainer_name, spatial_dims, tmp_path,
                                                                     monkeypatch):
    settings = SETTINGS[spatial_dims]
    spec = SynthSpec(shape=settings["shape"], spacing=settings["spacing"])
    arch_kwargs = {**plan_from_layout(settings["strides"], settings["kernels"]), "features_per_stage": FEATURES}
    plans = plans_for(arch_kwargs, list(settings["shape"]), batch_size=BATCH_SIZE)
    trainer_class = harness_trainer_class(TRAINERS[trainer_name])
    torch.manual_seed(0)
    trainer = make_trainer(trainer_class, plans, dataset_json_for(1, len(LABELS)), tmp_path, monkeypatch)
    training_images, training_labels = synthetic_cases(spec, TRAINING_CASES, seed=0)
    held_out_images, held_out_labels = synthetic_cases(spec, HELD_OUT_CASES, seed=1)

    untrained = held_out_dice(trainer, held_out_images, held_out_labels)
    sampler = torch.Generator().manual_seed(0)
    steps = STEPS_3D.get(trainer_name, settings["steps"]) if spatial_dims == 3 else settings["steps"]
    for _ in range(steps):
        batch = torch.randint(0, TRAINING_CASES, (BATCH_SIZE,), generator=sampler)
        trainer.train_step({"data": training_images[batch],
                            "target": supervision_target(trainer, training_labels[batch])})
    trained = held_out_dice(trainer, held_out_images, held_out_labels)
    assert untrained < settings["bar"] < trained, f"untrained {untrained:.3f}, trained {trained:.3f}"
