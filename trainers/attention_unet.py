"""Trainer for Attention U-Net (Oktay et al. 2018) with nnU-Net's loss, optimizer and schedule."""

from nnunet_attention.architectures import AttentionUNet

from .base import AttentionTrainerBase


class nnUNetTrainerAttentionUNet(AttentionTrainerBase):
    """nnU-Net's planned U-Net with additive attention gates on the skips (all but the highest-resolution)."""

    architecture_class = AttentionUNet
