"""Trainer for Attention U-Net (Oktay et al. 2018) with nnU-Net's loss, optimizer and schedule."""

from nnunet_attention.architectures import AttentionUNet

from .base import AttentionTrainerBase, removal_control


class nnUNetTrainerAttentionUNet(AttentionTrainerBase):
    """nnU-Net's planned U-Net with the authors' multi-attention gating (two additive gates per skip, combined by a
    1x1 conv) on every skip but the highest-resolution one; nnU-Net's deep supervision replaces the side outputs."""

    architecture_class = AttentionUNet


nnUNetTrainerAttentionUNet_NoAttention = removal_control(nnUNetTrainerAttentionUNet)
