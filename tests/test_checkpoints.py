"""Checkpoints for every registered trainer, through nnU-Net's ``save_checkpoint`` / ``load_checkpoint``: a
round trip restores weights, optimizer and epoch; an interrupted write leaves the previous checkpoint intact;
a truncated, foreign or non-finite checkpoint fails with a message naming the file and the fix and is left
byte for byte as it was. ``nnUNetv2_train --c`` after an interrupted run is in test_end_to_end.py."""

import pytest
import torch
from helpers import harness_trainer_class, make_plan, make_trainer
from nnunet_attention.trainers import TRAINERS
from nnunet_attention.trainers.checkpoints import CheckpointError

from nnunet_attention.plans_fabricator import dataset_json_for, plans_for
from nnunet_attention.trainer_step import training_batch

NAMES = sorted(TRAINERS)


def trained_trainer(trainer_name: str, root, monkeypatch, seed: int = 0):
    """A trainer on a small 2D plan after one training step (so the optimizer has momentum to save)."""
    arch_kwargs, patch = make_plan(2, 4, anisotropic=False, patch_divisor=TRAINERS[trainer_name].patch_divisor)
    torch.manual_seed(seed)
    trainer = make_trainer(harness_trainer_class(TRAINERS[trainer_name]), plans_for(arch_kwargs, patch),
                           dataset_json_for(2, 3), root, monkeypatch)
    trainer.train_step(training_batch(trainer, torch.Generator().manual_seed(seed)))
    return trainer


@pytest.mark.parametrize("trainer_name", NAMES)
def test_round_trip_restores_weights_optimizer_and_epoch(trainer_name, tmp_path, monkeypatch):
    saved = trained_trainer(trainer_name, tmp_path / "saved", monkeypatch)
    saved.current_epoch = 6
    checkpoint = tmp_path / "checkpoint_latest.pth"
    saved.save_checkpoint(str(checkpoint))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".partial")] == []

    loaded = trained_trainer(trainer_name, tmp_path / "loaded", monkeypatch, seed=1)
    loaded.load_checkpoint(str(checkpoint))
    assert loaded.current_epoch == 7  # nnU-Net stores the epoch to continue with
    for key, value in saved.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value), key
    momentum = [state["momentum_buffer"] for state in loaded.optimizer.state_dict()["state"].values()]
    expected = [state["momentum_buffer"] for state in saved.optimizer.state_dict()["state"].values()]
    assert len(momentum) == len(expected) > 0 and all(torch.equal(a, b) for a, b in zip(momentum, expected))


@pytest.mark.parametrize("trainer_name", NAMES)
def test_interrupted_save_keeps_the_previous_checkpoint(trainer_name, tmp_path, monkeypatch):
    trainer = trained_trainer(trainer_name, tmp_path / "run", monkeypatch)
    checkpoint = tmp_path / "checkpoint_latest.pth"
    trainer.save_checkpoint(str(checkpoint))
    before = checkpoint.read_bytes()

    def interrupted_save(obj, path, *args, **kwargs):
        with open(path, "wb") as file:
            file.write(before[:100])  # a partial archive, then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(str(checkpoint))
    assert checkpoint.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["checkpoint_latest.pth"]


def damaged_copies(checkpoint, folder) -> dict[str, tuple]:
    """name -> (damaged file, what the error must say) for several kinds of damage to ``checkpoint``."""
    folder.mkdir()
    data = checkpoint.read_bytes()
    truncated, empty, foreign = folder / "truncated.pth", folder / "empty.pth", folder / "weights_only.pth"
    truncated.write_bytes(data[: len(data) // 2])
    empty.write_bytes(b"")
    loaded = torch.load(checkpoint, weights_only=False)
    torch.save(loaded["network_weights"], foreign)  # what -pretrained_weights takes, not a training checkpoint
    non_finite = folder / "diverged.pth"
    first_float = next(k for k, v in loaded["network_weights"].items() if torch.is_floating_point(v))
    loaded["network_weights"][first_float] = torch.full_like(loaded["network_weights"][first_float], float("nan"))
    torch.save(loaded, non_finite)
    return {"truncated": (truncated, "truncated or corrupt"), "empty": (empty, "truncated or corrupt"),
            "weights only": (foreign, "not a training checkpoint"), "non-finite": (non_finite, "non-finite")}


@pytest.mark.parametrize("trainer_name", NAMES)
def test_damaged_checkpoint_fails_clearly_and_stays_as_it_was(trainer_name, tmp_path, monkeypatch):
    trainer = trained_trainer(trainer_name, tmp_path / "run", monkeypatch)
    checkpoint = tmp_path / "checkpoint_latest.pth"
    trainer.save_checkpoint(str(checkpoint))
    for kind, (damaged, message) in damaged_copies(checkpoint, tmp_path / "damaged").items():
        before = damaged.read_bytes()
        with pytest.raises(CheckpointError, match=message) as error:
            trainer.load_checkpoint(str(damaged))
        assert str(damaged) in str(error.value), kind
        assert damaged.read_bytes() == before, kind


@pytest.mark.parametrize("trainer_name", NAMES)
def test_checkpoint_of_another_trainer_names_the_trainer_to_use(trainer_name, tmp_path, monkeypatch):
    writer = NAMES[(NAMES.index(trainer_name) + 1) % len(NAMES)]
    checkpoint = tmp_path / "checkpoint_final.pth"
    trained_trainer(writer, tmp_path / "writer", monkeypatch).save_checkpoint(str(checkpoint))
    reader = trained_trainer(trainer_name, tmp_path / "reader", monkeypatch)
    weights = {key: value.clone() for key, value in reader.network.state_dict().items()}
    with pytest.raises(CheckpointError, match=f"written by {writer}; its network weights do not fit {trainer_name}"
                                              f".*continue it with -tr {writer}"):
        reader.load_checkpoint(str(checkpoint))
    assert all(torch.equal(reader.network.state_dict()[key], value) for key, value in weights.items())
