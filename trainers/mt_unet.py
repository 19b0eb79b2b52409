"""Trainer for MT-UNet (Wang et al., ICASSP 2022) on nnU-Net's plans."""

from nnunet_attention.architectures import MTUNet

from .base import AttentionTrainerBase


class nnUNetTrainerMTUNet(AttentionTrainerBase):
    """nnU-Net's planned U-Net with Mixed Transformer Modules at the deep levels, sized from the plan's patch.

    Optimizer: nnU-Net's SGD (lr 1e-2, Nesterov momentum 0.99, poly schedule) and its Dice+CE with deep
    supervision; see the repository's closing notes for the measurement that kept them.
    """

    architecture_class = MTUNet
