"""The demo's console view of ``nnUNetv2_train``: one line per epoch from nnU-Net 2.8.1's own output, the rest
left to the log."""

from nnunet_attention.training_console import TrainingConsole

#: nnUNetv2_train's output of a 2-epoch CPU run of the demo (start-up shortened)
NNUNET_TRAINING_OUTPUT = """\
.venv/lib/python3.11/site-packages/torch/jit/_script.py:1643: FutureWarning: `torch.jit.interface` is deprecated.
  warnings.warn(
Trainer 'nnUNetTrainerMTUNet_2epochs_16iters' not found in nnunetv2.training.nnUNetTrainer.
Searching in external trainer paths from environment variable 'nnUNet_extTrainer'...
Using device: cpu
2026-11-23 23:25:03.752348: do_dummy_2d_data_aug: False
2026-11-23 23:25:03.752890: This split has 16 training and 4 validation cases.
2026-11-23 23:25:03.778236: Unable to plot network architecture:
2026-11-23 23:25:03.778294: No module named 'hiddenlayer'
2026-11-23 23:25:03.781421:
2026-11-23 23:25:03.781478: Epoch 0
2026-11-23 23:25:03.781539: Current learning rate: 0.01
2026-11-23 23:25:07.646392: train_loss 1.0256
2026-11-23 23:25:07.646664: val_loss 0.3374
2026-11-23 23:25:07.646708: Pseudo dice [np.float32(0.6345), np.float32(0.1713), np.float32(0.1476)]
2026-11-23 23:25:07.646758: Epoch time: 3.87 s
2026-11-23 23:25:07.646785: Yayy! New best EMA pseudo Dice: 0.31779998540878296
2026-11-23 23:25:08.287180:
2026-11-23 23:25:08.287356: Epoch 1
2026-11-23 23:25:08.287469: Current learning rate: 0.0091
2026-11-23 23:25:11.867726: train_loss 0.0215
2026-11-23 23:25:11.868050: val_loss -0.0236
2026-11-23 23:25:11.868097: Pseudo dice [np.float32(0.7005), np.float32(0.697), np.float32(0.0772)]
2026-11-23 23:25:11.868148: Epoch time: 3.58 s
2026-11-23 23:25:11.868177: Yayy! New best EMA pseudo Dice: 0.3352000117301941
2026-11-23 23:25:49.906579: Training done.
perform_everything_on_device=True is only supported for cuda devices! Setting this to False
2026-11-23 23:25:49.916534: predicting train_003
2026-11-23 23:25:49.917297: train_003, shape torch.Size([1, 1, 64, 80]), rank 0
2026-11-23 23:25:57.538409: Validation complete
2026-11-23 23:25:57.538507: Mean Validation Dice:  0.9022809213330083
"""


def test_one_line_per_epoch_and_the_validation_dice_nothing_else():
    console = TrainingConsole(epochs=2, fold="0")
    shown = [summary for line in NNUNET_TRAINING_OUTPUT.splitlines(keepends=True)
             if (summary := console(line)) is not None]
    assert shown == [
        "epoch 1/2: train loss 1.0256, val loss 0.3374, pseudo Dice 0.6345 0.1713 0.1476 (3.9 s)",
        "epoch 2/2: train loss 0.0215, val loss -0.0236, pseudo Dice 0.7005 0.697 0.0772 (3.6 s)",
        "training done, validating fold 0",
        "validation Dice 0.9023",
    ]


def test_plain_number_lists_of_older_numpy_are_read_too():
    console = TrainingConsole(epochs=1, fold="all")
    for message in ("Epoch 0", "train_loss -0.5", "val_loss -0.25", "Pseudo dice [0.5, 0.25]"):
        assert console(f"2026-01-01 00:00:00.000001: {message}\n") is None
    assert console("2026-01-01 00:00:01.000001: Epoch time: 1.04 s\n") == (
        "epoch 1/1: train loss -0.5, val loss -0.25, pseudo Dice 0.5 0.25 (1.0 s)")
