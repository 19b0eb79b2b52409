"""Attention architectures built from nnU-Net plans.

Every class is a :class:`~.planned_network.PlannedNetwork`: it takes ``(plan, input_channels, num_classes,
deep_supervision, **its own options)``, ``plan`` the configuration's :class:`~.plan.UNetPlan`
(``UNetPlan.from_arch_kwargs(arch_kwargs, patch_size)``).
The registry of what is available is the trainers' (``nnunet_attention.trainers.TRAINERS``, each with its
``architecture_class``), filled automatically as trainers are defined.
"""

from .attention_unet import AttentionUNet
from .blocks.attention_probe import capture_attention_maps
from .mcanet import MCANet
from .msga import MSGANet
from .mt_unet import MTUNet
from .non_local_unet import NonLocalUNet
from .plan import UNetPlan
from .planned_network import PlannedNetwork
from .swin_unetr import SwinUNETRNet
from .unetr import UNETRNet

__all__ = ["AttentionUNet", "MCANet", "MSGANet", "MTUNet", "NonLocalUNet", "PlannedNetwork", "SwinUNETRNet", "UNETRNet",
           "UNetPlan", "capture_attention_maps"]
