"""Trainer for UNETR (Hatamizadeh et al.), MONAI's implementation, on nnU-Net's plans."""

from nnunet_attention.architectures import UNETRNet

from .base import AttentionTrainerBase, removal_control


class nnUNetTrainerUNETR(AttentionTrainerBase):
    """MONAI's UNETR on the plan's patch (every axis a multiple of 16: plan it with ``nnunet-attention plan -tr
    nnUNetTrainerUNETR``); one output at full resolution, so nnU-Net's deep supervision is switched off (its
    Dice+CE on that output); nnU-Net's SGD and schedule."""

    architecture_class = UNETRNet


nnUNetTrainerUNETR_NoAttention = removal_control(nnUNetTrainerUNETR)
