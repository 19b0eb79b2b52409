"""The trainer: nnU-Net's ``nnUNetTrainer`` with the scSE U-Net built on the plan (everything else is nnU-Net's)."""

from nnunet_attention.trainers.base import AttentionTrainerBase

from .network import SCSEUNet


class nnUNetTrainerSCSEUNet(AttentionTrainerBase):
    architecture_class = SCSEUNet
