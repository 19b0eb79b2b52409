"""A trainer's own network, loss, optimizer and training step on a planned configuration, without a dataset.

The benchmark, the memory estimate (and so the planner) and ``plan --verify`` all measure what ``nnUNetv2_train``
would run. They get it from the trainer itself: the trainer is constructed on the plan (:func:`constructed_trainer`,
its log and logger in a temporary folder), and its ``build_network_architecture``, ``enable_deep_supervision``,
``_build_loss()``, ``configure_optimizers()`` and grad scaler make the step. The step
(:class:`TrainerStep`) is ``nnUNetTrainer.train_step`` with one difference: fp16 autocast is a parameter rather
than "on CUDA only", so that the memory estimate can run CUDA's AMP step on fake CPU tensors (and the step returns
nothing: reading the loss back would synchronise, and fake tensors hold no value). ``tests/test_trainer_step.py``
holds it equal to ``train_step`` for every trainer.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .nnunet_commands import nnunet_chatter_hidden
from .planned_configuration import PlannedConfiguration
from .registry import trainer_class


@contextlib.contextmanager
def constructed_trainer(trainer: str | type, planned: PlannedConfiguration,
                        device: torch.device | str = "cpu") -> Iterator:
    """Trainer ``trainer`` (a name :func:`~nnunet_attention.registry.trainer_class` resolves, or a class)
    constructed on ``planned`` (fold 0), not initialized: nothing is read or written where nnU-Net's folders are;
    the log file nnU-Net's constructor opens lives in a temporary folder for as long as the context."""
    cls = trainer_class(trainer) if isinstance(trainer, str) else trainer
    with tempfile.TemporaryDirectory(prefix="nnunet_attention_trainer_") as results:
        previous = os.environ.get("nnUNet_results")
        os.environ["nnUNet_results"] = results
        try:
            with nnunet_chatter_hidden():  # nnU-Net's constructor prints its device and citation banner
                plans = {**copy.deepcopy(planned.plans), "continue_training": False}
                constructed = cls(plans, planned.configuration, 0, planned.dataset_json, torch.device(device))
        finally:
            if previous is None:
                del os.environ["nnUNet_results"]
            else:
                os.environ["nnUNet_results"] = previous
        yield constructed


def trainer_network(trainer, deep_supervision: bool | None = None) -> nn.Module:
    """The network ``trainer`` builds in ``initialize()`` (on the CPU, not compiled): with the trainer's deep
    supervision, or as given (nnU-Net's predictor builds it without)."""
    enabled = trainer.enable_deep_supervision if deep_supervision is None else deep_supervision
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    input_channels = determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager,
                                                  trainer.dataset_json)
    return trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, input_channels,
                                              trainer.label_manager.num_segmentation_heads, enabled)


def build_network(trainer: str | type, planned: PlannedConfiguration, for_training: bool = True) -> nn.Module:
    """The network ``trainer`` builds on ``planned``: for training (with the trainer's deep supervision) or for
    inference (without, as nnU-Net's predictor builds it)."""
    with constructed_trainer(trainer, planned) as constructed:
        return trainer_network(constructed, None if for_training else False)


def training_batch(trainer, generator: torch.Generator | None = None, intensity: float = 1.0,
                   batch_size: int | None = None, device: torch.device | str = "cpu") -> dict:
    """A batch as nnU-Net's data loader hands it to ``train_step``: random images ``(B, C, *patch)`` (times
    ``intensity``) and a random segmentation of the dataset's labels, as region masks for region-based training,
    downsampled per deep-supervision scale (a list, full resolution first) where the trainer supervises deeply.
    ``B``: ``batch_size``, by default the plan's."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    batch_size = batch_size or trainer.configuration_manager.batch_size
    patch = trainer.configuration_manager.patch_size
    channels = determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager, trainer.dataset_json)
    data = intensity * torch.randn(batch_size, channels, *patch, generator=generator)
    label_manager = trainer.label_manager
    labels = label_manager.all_labels
    segmentation = torch.randint(min(labels), max(labels) + 1, (batch_size, 1, *patch), generator=generator)
    if label_manager.has_regions:
        regions = [region if isinstance(region, (list, tuple)) else [region]
                   for region in label_manager.foreground_regions]
        segmentation = torch.cat([torch.isin(segmentation, torch.tensor(region)) for region in regions], dim=1)
    target = supervision_target(trainer, segmentation)
    move = lambda tensor: tensor.to(device)  # noqa: E731
    return {"data": move(data), "target": [move(t) for t in target] if isinstance(target, list) else move(target)}


def supervision_target(trainer, segmentation: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
    """``segmentation`` ``(B, 1 or regions, *patch)`` as ``train_step`` takes it: float, and where the trainer
    supervises deeply a list with one copy per deep-supervision scale (full resolution first), downsampled by
    nearest neighbour as nnU-Net's data loader does."""
    target = segmentation.float()
    scales = trainer._get_deep_supervision_scales()
    if scales is None:
        return target
    patch = target.shape[2:]
    return [F.interpolate(target, size=[round(p * s) for p, s in zip(patch, scale)], mode="nearest-exact")
            for scale in scales]


class TrainerStep:
    """One ``nnUNetTrainer.train_step`` of ``trainer`` on ``batch`` each call (see the module docstring): zero the
    gradients; forward and the trainer's loss under fp16 autocast where ``amp``; backward through the trainer's
    grad scaler where it has one (CUDA), gradient clipping at 12, the trainer's optimizer step."""

    def __init__(self, trainer, network: nn.Module, batch: dict, amp: bool):
        self.trainer, self.network, self.batch, self.amp = trainer, network, batch, amp

    def __call__(self) -> torch.Tensor:
        """Run the step; return the loss (not read back, so nothing synchronises)."""
        trainer, optimizer, scaler = self.trainer, self.trainer.optimizer, self.trainer.grad_scaler
        optimizer.zero_grad(set_to_none=True)
        device_type = self.batch["data"].device.type
        with torch.autocast(device_type, dtype=torch.float16, enabled=self.amp):
            loss = trainer.loss(self.network(self.batch["data"]), self.batch["target"])
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            optimizer.step()
        return loss.detach()


def prepare_training_step(trainer, batch_size: int, amp: bool, compile_network: bool = False,
                          generator: torch.Generator | None = None, network: nn.Module | None = None) -> TrainerStep:
    """Set ``trainer`` up as ``initialize()`` does (its network on its device, optionally ``torch.compile``d as
    nnU-Net compiles it on CUDA; its optimizer; its loss) and return its step on a random batch of
    ``batch_size``. ``network``: the trainer's network already built (default: built here)."""
    network = network if network is not None else trainer_network(trainer)  # built on the CPU
    if trainer.device.type != "cpu":  # (a no-op .to() would trip over the memory estimate's weak references)
        network = network.to(trainer.device)
    trainer.network = network
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    with nnunet_chatter_hidden():  # its compile decision is printed
        trainer.loss = trainer._build_loss()
    stepped = torch.compile(network) if compile_network else network
    batch = training_batch(trainer, generator, batch_size=batch_size, device=trainer.device)
    return TrainerStep(trainer, stepped, batch, amp)
