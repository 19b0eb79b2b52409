"""Trainer for MCANet (Shao et al.) on nnU-Net's plans."""

from nnunet_attention.architectures import MCANet
from nnunet_attention.architectures.mcanet import deep_supervision_levels
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .base import AttentionTrainerBase


class nnUNetTrainerMCANet(AttentionTrainerBase):
    """nnU-Net's planned encoder with the MCA decode head, carried to full resolution.

    Deep supervision covers the levels the head produces (E1's level up to full resolution), so the
    deep-supervision scales are nnU-Net's, cut to those levels; targets and loss weights follow them.
    """

    architecture_class = MCANet

    def _get_deep_supervision_scales(self):
        scales = nnUNetTrainer._get_deep_supervision_scales(self)
        if scales is None:
            return None
        return scales[: deep_supervision_levels(len(self.configuration_manager.pool_op_kernel_sizes))]
