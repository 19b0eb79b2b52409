"""Attention architectures built from nnU-Net plans.

``ARCHITECTURES`` maps each architecture's name to its class; every class takes
``(input_channels, num_classes, deep_supervision, **plan_arch_kwargs, **its own kwargs)``.
"""

from .attention_unet import AttentionUNet
from .blocks.attention_probe import attention_probe_descriptions, capture_attention_maps
from .mcanet import MCANet
from .msga import MSGANet
from .mt_unet import MTUNet
from .non_local_unet import NonLocalUNet

ARCHITECTURES = {cls.__name__: cls for cls in (AttentionUNet, MCANet, MSGANet, MTUNet, NonLocalUNet)}

__all__ = [
    "ARCHITECTURES", "AttentionUNet", "MCANet", "MSGANet", "MTUNet", "NonLocalUNet", "attention_probe_descriptions",
    "capture_attention_maps",
]
