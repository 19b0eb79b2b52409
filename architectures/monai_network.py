"""The base of the networks taken from MONAI (``monai.networks.nets``), a well-kept library of the field, onto an
nnU-Net plan: SwinUNETR and UNETR.

What such a network takes from the plan is the spatial dimensionality, the patch, the dataset's channels and
classes; its encoder and decoder are MONAI's own, at MONAI's widths, with MONAI's initialisation (nnU-Net's He
initialisation of the plan's convolutions is not applied). Two things are changed so that nnU-Net can train it:

- MONAI's output block (``out``, a 1x1 convolution with bias) becomes a :class:`SegmentationOutput` with the same
  convolution under nnU-Net's name ``seg_layers``, which nnU-Net's ``-pretrained_weights`` loader leaves out (so a
  model fine-tunes to a dataset with another number of classes);
- its transformer blocks become the probed blocks of :mod:`.blocks.transformer_blocks` (same function and keys,
  the attention response exposed and removable).

MONAI's networks give one output at full resolution: no deep supervision (the trainer switches nnU-Net's off).
"""

from __future__ import annotations

from torch import nn

from .plan import UNetPlan
from .planned_network import PlannedNetwork


class SegmentationOutput(nn.Module):
    """MONAI's output block (1x1 convolution with bias, ``(B, features, *S)`` -> ``(B, classes, *S)``) under
    nnU-Net's name for the layers that give logits."""

    def __init__(self, plan: UNetPlan, features: int, num_classes: int):
        super().__init__()
        self.seg_layers = nn.ModuleList([plan.conv_op(features, num_classes, 1, bias=True)])

    def forward(self, features):
        return self.seg_layers[0](features)


class MonaiPlannedNetwork(PlannedNetwork):
    """A MONAI network on the plan (see the module docstring); subclasses build it and hand it to
    :meth:`adopt`."""

    supports_deep_supervision = False
    outputs_instead = "MONAI's network has one output, at full resolution"

    def adopt(self, network: nn.Module, output_features: int, num_classes: int) -> nn.Module:
        """``network`` with its ``out`` block replaced by a :class:`SegmentationOutput` of ``output_features``."""
        network.out = SegmentationOutput(self.plan, output_features, num_classes)
        return network

    def initialize(self, module: nn.Module) -> None:
        """Nothing: MONAI's networks initialise themselves as their authors do."""
