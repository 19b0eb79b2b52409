"""Trainer for the non-local U-Net on nnU-Net's plans."""

from nnunet_attention.architectures import NonLocalUNet

from .base import AttentionTrainerBase


class nnUNetTrainerNonLocalUNet(AttentionTrainerBase):
    """nnU-Net's planned U-Net with non-local blocks at the bottleneck and deep decoder stages; nnU-Net's loss
    (Dice+CE with deep supervision), SGD and schedule."""

    architecture_class = NonLocalUNet
