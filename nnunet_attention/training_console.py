"""What the demo shows of ``nnUNetv2_train``: one line per epoch, read from nnU-Net's own log lines.

nnU-Net prints, per epoch, timestamped lines (``Epoch 3``, ``train_loss ...``, ``val_loss ...``,
``Pseudo dice [...]``, ``Epoch time: 3.6 s``) among start-up chatter (the trainer search, its citation, the
plans, warnings of its dependencies). :class:`TrainingConsole` turns the epoch lines into one summary per
epoch and the end of training into two lines; everything else stays in the demo's log only.
"""

from __future__ import annotations

import re

#: ``2026-11-23 23:25:07.646392: train_loss 1.0256`` -> the message after the timestamp
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (.*)$")
NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


class TrainingConsole:
    """Feed it nnU-Net's training output line by line; it returns the lines to show (``None``: show nothing).

    Per epoch: ``epoch 4/10: train loss -0.528, val loss -0.409, pseudo Dice 0.803 0.7578 0.6025 (3.6 s)``; then
    ``training done, validating fold 0`` and ``validation Dice 0.9023`` (nnU-Net's mean over the fold's
    validation cases).

    Args:
        epochs: the schedule's number of epochs (for ``n/epochs``).
        fold: the fold being trained.
    """

    def __init__(self, epochs: int, fold: str):
        self.epochs, self.fold = epochs, fold
        self.epoch: dict[str, str] = {}

    def __call__(self, line: str) -> str | None:
        match = TIMESTAMPED.match(line.rstrip("\n"))
        if not match:
            return None
        message = match.group(1)
        if found := re.fullmatch(r"Epoch (\d+)", message):
            self.epoch = {"number": str(int(found.group(1)) + 1)}
        elif found := re.fullmatch(rf"(train_loss|val_loss) ({NUMBER})", message):
            self.epoch[found.group(1)] = found.group(2)
        elif message.startswith("Pseudo dice "):
            numbers = message.removeprefix("Pseudo dice ").replace("float32", "")  # [np.float32(0.63), ...]
            self.epoch["dice"] = " ".join(re.findall(rf"(?<![\w.])({NUMBER})(?![\w.])", numbers))
        elif found := re.fullmatch(rf"Epoch time: ({NUMBER}) s", message):
            epoch = self.epoch
            return (f"epoch {epoch.get('number', '?')}/{self.epochs}: train loss {epoch.get('train_loss', '?')}, "
                    f"val loss {epoch.get('val_loss', '?')}, pseudo Dice {epoch.get('dice', '?')} "
                    f"({float(found.group(1)):.1f} s)")
        elif message == "Training done.":
            return f"training done, validating fold {self.fold}"
        elif found := re.fullmatch(rf"Mean Validation Dice:\s+({NUMBER})", message):
            return f"validation Dice {float(found.group(1)):.4f}"
        return None
