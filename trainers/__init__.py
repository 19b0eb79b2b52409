"""nnU-Net trainers for the attention architectures: ``from nnunet_attention.trainers import nnUNetTrainerX``.

:data:`TRAINERS` maps every trainer's class name to its class; :data:`CONTROLS` every removal control's
(``nnUNetTrainerX_NoAttention``: the same network with its attention removed).
"""

from .attention_unet import nnUNetTrainerAttentionUNet, nnUNetTrainerAttentionUNet_NoAttention
from .base import CONTROLS, TRAINERS, AttentionTrainerBase
from .mcanet import nnUNetTrainerMCANet, nnUNetTrainerMCANet_NoAttention
from .msga import nnUNetTrainerMSGA, nnUNetTrainerMSGA_NoAttention
from .mt_unet import nnUNetTrainerMTUNet, nnUNetTrainerMTUNet_NoAttention
from .non_local_unet import nnUNetTrainerNonLocalUNet, nnUNetTrainerNonLocalUNet_NoAttention
from .swin_unetr import nnUNetTrainerSwinUNETR, nnUNetTrainerSwinUNETR_NoAttention
from .unetr import nnUNetTrainerUNETR, nnUNetTrainerUNETR_NoAttention

__all__ = [
    "CONTROLS", "TRAINERS", "AttentionTrainerBase", "nnUNetTrainerAttentionUNet",
    "nnUNetTrainerAttentionUNet_NoAttention", "nnUNetTrainerMCANet", "nnUNetTrainerMCANet_NoAttention",
    "nnUNetTrainerMSGA", "nnUNetTrainerMSGA_NoAttention", "nnUNetTrainerMTUNet", "nnUNetTrainerMTUNet_NoAttention",
    "nnUNetTrainerNonLocalUNet", "nnUNetTrainerNonLocalUNet_NoAttention", "nnUNetTrainerSwinUNETR",
    "nnUNetTrainerSwinUNETR_NoAttention", "nnUNetTrainerUNETR", "nnUNetTrainerUNETR_NoAttention",
]
