"""Networks that each break one promise of the architecture contract, for ``check-architecture``'s tests: each is
the Attention U-Net with one deliberate fault, importable as ``broken_networks:<Class>``."""

import dataclasses

import torch
from nnunet_attention.architectures.attention_unet import AttentionUNet
from torch import nn


class IgnoresPlanStrides(AttentionUNet):
    """Built as if every stage halved every axis: on a plan with [1, 2, 2] strides its deep-supervision outputs are
    not at nnU-Net's scales (or its grids do not even fit the patch)."""

    def __init__(self, plan, input_channels, num_classes, deep_supervision=False):
        halving = tuple((1,) * plan.spatial_dims if stage == 0 else (2,) * plan.spatial_dims
                        for stage in range(plan.n_stages))
        super().__init__(dataclasses.replace(plan, strides=halving), input_channels, num_classes, deep_supervision)


class BreaksTheGraph(AttentionUNet):
    """Branches on a tensor's value in Python: eager runs, ``torch.compile(fullgraph=True)`` cannot trace it."""

    def forward(self, x):
        if x.mean().item() > 1e9:
            x = x / 2
        return super().forward(x)


class OverflowsInHalfPrecision(AttentionUNet):
    """Scales the logits up and back down: exact in float32, inf under fp16 autocast (largest finite 65504)."""

    def forward(self, x):
        outputs = super().forward(x)
        rescale = lambda logits: (logits * 1e6) / 1e6  # noqa: E731
        return rescale(outputs) if isinstance(outputs, torch.Tensor) else [rescale(o) for o in outputs]


class HasAnUnusedParameter(AttentionUNet):
    """Holds a layer its forward never uses: nnU-Net's DistributedDataParallel stops on it."""

    def __init__(self, plan, input_channels, num_classes, deep_supervision=False):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        self.forgotten = nn.Linear(4, 4)
