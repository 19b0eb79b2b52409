"""Determinism on CPU, for every registered trainer: with the same seed, nnU-Net's trainer builds the same
network and its first ``train_step`` (Dice + CE with deep supervision, SGD) gives the same loss and the same
weights; another seed gives another loss, so the check can fail."""

import numpy as np
import pytest
import torch
from helpers import harness_trainer_class, make_plan, make_trainer
from nnunet_attention.trainers import TRAINERS

from nnunet_attention.plans_fabricator import dataset_json_for, plans_for
from nnunet_attention.trainer_step import training_batch


def first_step(trainer_name: str, seed: int, root, monkeypatch) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """(loss of the first training step, weights after it), the network and the batch drawn from ``seed``."""
    arch_kwargs, patch = make_plan(2, 4, anisotropic=False, patch_divisor=TRAINERS[trainer_name].patch_divisor)
    torch.manual_seed(seed)
    trainer = make_trainer(harness_trainer_class(TRAINERS[trainer_name]), plans_for(arch_kwargs, patch),
                           dataset_json_for(2, 3), root / str(seed), monkeypatch)
    loss = trainer.train_step(training_batch(trainer, torch.Generator().manual_seed(seed)))["loss"]
    return loss, {key: value.clone() for key, value in trainer.network.state_dict().items()}


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
def test_same_seed_same_first_step(trainer_name, tmp_path, monkeypatch):
    loss, weights = first_step(trainer_name, 3, tmp_path / "first", monkeypatch)
    again_loss, again_weights = first_step(trainer_name, 3, tmp_path / "again", monkeypatch)
    assert loss == again_loss
    assert all(torch.equal(weights[key], again_weights[key]) for key in weights)
    other_loss, _ = first_step(trainer_name, 4, tmp_path / "other", monkeypatch)
    assert loss != other_loss
