"""Checks on nnU-Net checkpoints before a trainer resumes from one.

nnU-Net's ``load_checkpoint`` hands whatever ``torch.load`` finds to ``load_state_dict``: a truncated file fails
with a zip-reader message, another trainer's weights with a list of hundreds of keys. These checks fail first,
naming the file, what is wrong with it and what to do, and leave the file as it is.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

#: what every checkpoint nnU-Net's ``save_checkpoint`` writes holds and ``load_checkpoint`` reads
REQUIRED_KEYS = ("network_weights", "optimizer_state", "current_epoch", "trainer_name", "init_args", "logging")
#: prefixes a state-dict key gets from DDP and torch.compile wrappers (nnU-Net strips the first when loading)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names the file and the fix."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path``, memory-mapped (tensors are read lazily, so checking it costs little).

    Raises :class:`CheckpointError` if the file is not a complete ``torch.save`` archive (an interrupted write,
    a truncated copy), lacks what nnU-Net stores, or holds non-finite weights.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:  # torch raises RuntimeError, EOFError or pickle errors depending on the damage
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
            f"it is truncated or corrupt, e.g. from an interrupted copy. It is left as it is: move it away and "
            f"continue from another checkpoint of the fold (nnUNetv2_train --c takes checkpoint_final.pth, then "
            f"checkpoint_latest.pth, then checkpoint_best.pth), or train the fold again without --c"
        ) from error
    missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path} lacks {missing} of what nnU-Net's trainer saves; it is not a training checkpoint of "
            f"nnUNetv2_train. Use the checkpoint_*.pth of a model folder, or -pretrained_weights for weights only"
        )
    non_finite = [key for key, value in checkpoint["network_weights"].items()
                  if torch.is_floating_point(value) and not torch.isfinite(value).all()]
    if non_finite:
        raise CheckpointError(
            f"{path} holds non-finite network weights ({non_finite[:3]}{' ...' if len(non_finite) > 3 else ''}); "
            f"the file is corrupt or the run diverged. It is left as it is: continue from another checkpoint of "
            f"the fold or train it again without --c"
        )
    return checkpoint


def _unwrapped(key: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def check_weights_fit(checkpoint: dict[str, Any], network: nn.Module, trainer_name: str, path: str) -> None:
    """Raise :class:`CheckpointError` if the checkpoint's weights do not load into ``network`` (other keys or
    shapes), naming the trainer that wrote them; DDP and torch.compile prefixes on either side are ignored."""
    saved = {_unwrapped(key): tuple(value.shape) for key, value in checkpoint["network_weights"].items()}
    expected = {_unwrapped(key): tuple(value.shape) for key, value in network.state_dict().items()}
    missing = sorted(expected.keys() - saved.keys())
    unexpected = sorted(saved.keys() - expected.keys())
    reshaped = sorted(key for key in saved.keys() & expected.keys() if saved[key] != expected[key])
    if not (missing or unexpected or reshaped):
        return
    examples = [f"missing {key}" for key in missing[:2]] + [f"unexpected {key}" for key in unexpected[:2]] + [
        f"{key} {list(saved[key])} vs {list(expected[key])}" for key in reshaped[:2]]
    writer = checkpoint["trainer_name"]
    fix = (f"continue it with -tr {writer}, or train {trainer_name} without --c" if writer != trainer_name else
           "the plan or the trainer's architecture changed since it was written: restore them, or train the fold "
           "again without --c")
    raise CheckpointError(
        f"{path} was written by {writer}; its network weights do not fit {trainer_name}'s network "
        f"({len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape: "
        f"{'; '.join(examples)}). The file is left as it is: {fix}"
    )
