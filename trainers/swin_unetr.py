"""Trainer for SwinUNETR (Hatamizadeh et al.), MONAI's implementation, on nnU-Net's plans."""

from nnunet_attention.architectures import SwinUNETRNet

from .base import AttentionTrainerBase, removal_control


class nnUNetTrainerSwinUNETR(AttentionTrainerBase):
    """MONAI's SwinUNETR on the plan's patch (every axis a multiple of 32: plan it with ``nnunet-attention plan -tr
    nnUNetTrainerSwinUNETR``); one output at full resolution, so nnU-Net's deep supervision is switched off (its
    Dice+CE on that output); nnU-Net's SGD and schedule."""

    architecture_class = SwinUNETRNet


nnUNetTrainerSwinUNETR_NoAttention = removal_control(nnUNetTrainerSwinUNETR)
