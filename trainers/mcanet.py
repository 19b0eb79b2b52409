"""Trainer for MCANet (Shao et al.) on nnU-Net's plans."""

from nnunet_attention.architectures import MCANet

from .base import AttentionTrainerBase, removal_control


class nnUNetTrainerMCANet(AttentionTrainerBase):
    """The planned encoder (to stride 32) with the paper's MCA decode head; one output at full resolution, so
    nnU-Net's deep supervision is switched off (its Dice+CE on that output), as the paper trains without it;
    nnU-Net's SGD and schedule."""

    architecture_class = MCANet


nnUNetTrainerMCANet_NoAttention = removal_control(nnUNetTrainerMCANet)
