"""Networks that each break one promise of the architecture contract, for ``check-architecture``'s tests: each is
the Attention U-Net with one deliberate fault, importable as ``broken_networks:<Class>``."""

import dataclasses

import torch
from nnunet_attention.architectures.attention_unet import AttentionUNet
from nnunet_attention.architectures.blocks.attention_probe import AttentionProbe, name_attention_maps
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


class MapsOffTheImageGrid(AttentionUNet):
    """Exposes one more map, on the patch less one voxel along the last axis: a grid the patch is no whole multiple
    of, which attention-maps cannot line up with the image."""

    def __init__(self, plan, input_channels, num_classes, deep_supervision=False):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        self.off_grid_probe = AttentionProbe("the input's first channel, squashed, one voxel short")
        name_attention_maps(self.off_grid_probe, "off_grid")

    def forward(self, x):
        self.off_grid_probe(torch.sigmoid(x[:, :1, ..., :-1]))
        return super().forward(x)
