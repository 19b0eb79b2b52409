"""nnU-Net trainers for the attention architectures: ``from nnunet_attention.trainers import nnUNetTrainerX``.

:data:`TRAINERS` maps every trainer's class name to its class.
"""

from .attention_unet import nnUNetTrainerAttentionUNet
from .base import TRAINERS, AttentionTrainerBase
from .mcanet import nnUNetTrainerMCANet
from .msga import nnUNetTrainerMSGA
from .mt_unet import nnUNetTrainerMTUNet
from .non_local_unet import nnUNetTrainerNonLocalUNet

__all__ = [
    "TRAINERS", "AttentionTrainerBase", "nnUNetTrainerAttentionUNet", "nnUNetTrainerMCANet", "nnUNetTrainerMSGA",
    "nnUNetTrainerMTUNet", "nnUNetTrainerNonLocalUNet",
]
