"""The tools' training step is the trainer's: its network, deep supervision, loss (``_build_loss``), optimizer and
step, on a planned configuration without a dataset (:mod:`nnunet_attention.trainer_step`)."""

import copy

import pytest
import torch
from helpers import NARROW_ARCHITECTURE_KWARGS, make_plan
from nnunet_attention.trainers import nnUNetTrainerMCANet
from nnunet_attention.trainers.msga import MSGALoss
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn

from nnunet_attention.memory_estimate import training_step_peak_bytes
from nnunet_attention.planned_configuration import PlannedConfiguration
from nnunet_attention.plans_fabricator import dataset_json_for, plans_for
from nnunet_attention.registry import known_trainer_names, patch_divisor, trainer_class
from nnunet_attention.trainer_step import constructed_trainer, prepare_training_step, training_batch


def small_configuration(regions: bool = False, batch_dice: bool = True, patch_divisor: int = 1
                        ) -> PlannedConfiguration:
    arch_kwargs, patch = make_plan(2, 4, anisotropic=False, patch_divisor=patch_divisor)
    plans = plans_for(arch_kwargs, patch)
    plans["configurations"]["2d"]["batch_dice"] = batch_dice
    return PlannedConfiguration("small 2d", plans, "2d", dataset_json_for(1, 3, regions=regions), tuple(patch), "test")


def narrow(name: str) -> type:
    """The trainer at the CPU test width (MSGA's default width takes seconds per step)."""
    cls = trainer_class(name)
    options = NARROW_ARCHITECTURE_KWARGS.get(name)
    if not options:
        return cls
    return type(name, (cls,), {"architecture_kwargs": {**cls.architecture_kwargs, **options}})


def parameters_of(network: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in network.named_parameters()}


@pytest.mark.parametrize("name", known_trainer_names())
def test_the_step_is_the_trainers_train_step(name):
    """The same trainer, weights and batch: our step and nnU-Net's ``train_step`` give the same loss and the same
    updated weights (dropout seeded alike)."""
    configuration = small_configuration(patch_divisor=patch_divisor(name))
    with constructed_trainer(narrow(name), configuration) as trainer:
        torch.manual_seed(0)
        step = prepare_training_step(trainer, batch_size=2, amp=False, generator=torch.Generator().manual_seed(1))
        start = copy.deepcopy(trainer.network.state_dict()), copy.deepcopy(trainer.optimizer.state_dict())
        torch.manual_seed(2)
        ours = float(step())
        after_ours = parameters_of(trainer.network)
        trainer.network.load_state_dict(start[0])
        trainer.optimizer.load_state_dict(start[1])
        torch.manual_seed(2)
        theirs = float(trainer.train_step(step.batch)["loss"])
        after_theirs = parameters_of(trainer.network)
    assert ours == theirs
    assert any(not torch.equal(after_ours[key], start[0][key]) for key in after_ours)  # the step moved the weights
    assert all(torch.equal(after_ours[key], after_theirs[key]) for key in after_ours)


def test_each_trainers_step_uses_its_own_loss():
    """MCANet: nnU-Net's Dice+CE on its one output (deep supervision off), not MSGA's loss; MSGA: its loss; nnU-Net's
    U-Net: deep-supervised Dice+CE. The plan's batch_dice and a region-based dataset reach the loss."""
    losses = {}
    for name in ("nnUNetTrainer", "nnUNetTrainerMCANet", "nnUNetTrainerMSGA"):
        with constructed_trainer(narrow(name), small_configuration()) as trainer:
            prepare_training_step(trainer, batch_size=1, amp=False)
            losses[name] = trainer.loss
    assert type(losses["nnUNetTrainerMCANet"]) is DC_and_CE_loss
    assert isinstance(losses["nnUNetTrainerMSGA"], MSGALoss)
    assert isinstance(losses["nnUNetTrainer"], DeepSupervisionWrapper)
    with constructed_trainer("nnUNetTrainerMCANet", small_configuration(regions=True, batch_dice=False)) as trainer:
        step = prepare_training_step(trainer, batch_size=1, amp=False)
    assert isinstance(trainer.loss, DC_and_BCE_loss) and trainer.loss.dc.batch_dice is False
    assert step.batch["target"].shape[1] == 2  # one mask per region


class CountingLoss(nn.Module):
    """Wraps a trainer's loss and counts its calls."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss, self.calls = loss, 0

    def forward(self, output, target):
        self.calls += 1
        return self.loss(output, target)


class MCANetWithCountingLoss(nnUNetTrainerMCANet):
    def _build_loss(self):
        return CountingLoss(super()._build_loss())


def test_the_step_and_the_memory_estimate_take_the_loss_from_the_trainer():
    """A trainer whose ``_build_loss`` differs: the step runs that loss, and the estimate of a loss that holds more
    memory is larger."""
    with constructed_trainer(MCANetWithCountingLoss, small_configuration()) as trainer:
        step = prepare_training_step(trainer, batch_size=1, amp=False)
        step()
    assert isinstance(trainer.loss, CountingLoss) and trainer.loss.calls == 1

    class MCANetWithHeavyLoss(nnUNetTrainerMCANet):
        def _build_loss(self):
            plain = super()._build_loss()
            return lambda output, target: plain(output, target) + torch.zeros(64, 2**20).sum()  # 256 MiB more

    configuration = small_configuration()
    plain = training_step_peak_bytes(nnUNetTrainerMCANet, configuration, 1, half_precision=False)
    heavy = training_step_peak_bytes(MCANetWithHeavyLoss, configuration, 1, half_precision=False)
    assert heavy - plain >= 255 * 2**20  # the 256 MiB, less what the step freed before it


def test_batch_follows_the_trainers_deep_supervision_and_labels():
    configuration = small_configuration()
    with constructed_trainer("nnUNetTrainer", configuration) as trainer:
        batch = training_batch(trainer, torch.Generator().manual_seed(0))
        scales = trainer._get_deep_supervision_scales()
    patch = configuration.patch_size
    assert batch["data"].shape == (2, 1, *patch)
    assert [tuple(t.shape[2:]) for t in batch["target"]] == [tuple(round(p * s) for p, s in zip(patch, scale))
                                                             for scale in scales]
    assert set(batch["target"][0].unique().tolist()) <= {0.0, 1.0, 2.0}
    with constructed_trainer("nnUNetTrainerMCANet", configuration) as trainer:
        assert training_batch(trainer, batch_size=3)["target"].shape == (3, 1, *patch)


def test_constructing_a_trainer_leaves_nnunets_folders_alone(tmp_path, monkeypatch):
    """The trainer's log and logger go to a temporary folder; nnUNet_results is as it was, with nothing in it."""
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    with constructed_trainer("nnUNetTrainer", small_configuration()) as trainer:
        log_folder = trainer.output_folder
    assert not str(log_folder).startswith(str(tmp_path))
    assert list(tmp_path.iterdir()) == []
