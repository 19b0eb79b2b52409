"""Trainer for MT-UNet (Wang et al., ICASSP 2022) on nnU-Net's plans."""

from nnunet_attention.architectures import MTUNet

from .base import AttentionTrainerBase, removal_control


class nnUNetTrainerMTUNet(AttentionTrainerBase):
    """MT-UNet as the authors' code builds it (the plan's conv stages as the stem, Mixed Transformer Modules in place
    of convolution at the three deepest levels at strides of at least 8), sized from the plan's patch.

    Optimizer: nnU-Net's SGD (lr 1e-2, Nesterov momentum 0.99, poly schedule) and its Dice+CE with deep
    supervision, not the paper's Adam 1e-4: they train it (documentation/trainers.md gives the demo's Dice).
    """

    architecture_class = MTUNet


nnUNetTrainerMTUNet_NoAttention = removal_control(nnUNetTrainerMTUNet)
