"""What nnU-Net's trainer lookup imports: point ``nnUNet_extTrainer`` at this folder (nnU-Net imports each module
here and searches it for the trainer named by ``-tr``)."""

from scse_unet.trainer import nnUNetTrainerSCSEUNet  # noqa: F401 - found by name
