"""Trainer for the Non-local U-Net (Wang, Zou, Shen, Ji, AAAI 2020) on nnU-Net's plans."""

from nnunet_attention.architectures import NonLocalUNet

from .base import AttentionTrainerBase, removal_control


class nnUNetTrainerNonLocalUNet(AttentionTrainerBase):
    """nnU-Net's planned U-Net with the paper's global aggregation blocks: the bottom block at the bottleneck and the
    up-sampling block as the first up-step; nnU-Net's loss (Dice+CE with deep supervision), SGD and schedule."""

    architecture_class = NonLocalUNet


nnUNetTrainerNonLocalUNet_NoAttention = removal_control(nnUNetTrainerNonLocalUNet)
