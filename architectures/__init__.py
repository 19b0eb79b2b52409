"""Attention architectures built from nnU-Net plans.

Every class takes ``(input_channels, num_classes, deep_supervision, **plan_arch_kwargs, **its own kwargs)``.
The registry of what is available is the trainers' (``nnunet_attention.trainers.TRAINERS``, each with its
``architecture_class``), filled automatically as trainers are defined.
"""

from .attention_unet import AttentionUNet
from .blocks.attention_probe import attention_probe_descriptions, capture_attention_maps
from .mcanet import MCANet
from .msga import MSGANet
from .mt_unet import MTUNet
from .non_local_unet import NonLocalUNet

__all__ = [
    "AttentionUNet", "MCANet", "MSGANet", "MTUNet", "NonLocalUNet", "attention_probe_descriptions",
    "capture_attention_maps",
]
