"""Trainer for the multi-scale self-guided attention network: nnU-Net's Dice+CE on every head plus the
paper's semantic and reconstruction terms."""


import torch
import torch.nn.functional as F
from nnunet_attention.architectures import MSGANet
from nnunet_attention.architectures.msga import MSGAOutputs
from torch import nn

from .base import AttentionTrainerBase, removal_control


class MSGALoss(nn.Module):
    """``Σ_heads seg(head, target) + 0.25 Σ_s MSE(code_s step 1, code_s step 2) + 0.1 Σ MSE(input, reconstruction)``
    for training outputs (the paper's sum); ``seg(logits, target)`` for the one tensor of evaluation mode.

    ``seg`` is nnU-Net's Dice+CE for the dataset (built by nnU-Net, deep supervision off). Nothing is detached,
    as in the authors' code. The sum over the 8 heads is not divided by their number (the paper's sum): divided,
    every step of nnU-Net's SGD would be 8 times smaller.
    """

    def __init__(self, segmentation_loss: nn.Module, semantic_weight: float = 0.25,
                 reconstruction_weight: float = 0.1):
        super().__init__()
        self.segmentation_loss = segmentation_loss
        self.semantic_weight = semantic_weight
        self.reconstruction_weight = reconstruction_weight

    def terms(self, outputs: MSGAOutputs, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three sums, unweighted: ``segmentation``, ``semantic``, ``reconstruction``."""
        return {
            "segmentation": sum(self.segmentation_loss(logits, target) for logits in outputs.logits),
            "semantic": sum(F.mse_loss(a.float(), b.float()) for a, b in outputs.semantic_pairs),
            "reconstruction": sum(F.mse_loss(r.float(), x.float()) for x, r in outputs.reconstruction_pairs),
        }

    def forward(self, outputs: MSGAOutputs | torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.segmentation_loss(outputs, target)
        terms = self.terms(outputs, target)
        total = (terms["segmentation"] + self.semantic_weight * terms["semantic"]
                 + self.reconstruction_weight * terms["reconstruction"])
        return total


class nnUNetTrainerMSGA(AttentionTrainerBase):
    """Planned encoder + multi-scale self-guided attention; nnU-Net's SGD, schedule and augmentation.

    nnU-Net's deep supervision is off (``MSGANet.supports_deep_supervision`` is False): the network has no
    multi-resolution outputs, its eight heads are all supervised at full resolution by :class:`MSGALoss`
    (nnU-Net's data loader then hands over the full-resolution target only).
    """

    architecture_class = MSGANet

    def _build_loss(self) -> nn.Module:
        return MSGALoss(super()._build_loss())


nnUNetTrainerMSGA_NoAttention = removal_control(nnUNetTrainerMSGA)
