"""SwinUNETR (Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic Segmentation of Brain Tumors in MRI
Images", BrainLes 2021) on an nnU-Net plan: MONAI's implementation (``monai.networks.nets.SwinUNETR``).

A Swin Transformer encoder (2x patch embedding, four stages of two shifted-window attention blocks, each stage
ending in a 2x patch merging: tokens at 1/2 ... 1/32 of the patch) feeds a convolutional decoder through
residual conv blocks at every resolution, as in the paper. From the plan it takes the spatial dimensionality, the
patch (every axis a multiple of 32, for the five 2x reductions: :attr:`SwinUNETRNet.patch_divisor`; not 32
along every axis, which would leave a single voxel for instance normalisation), the
dataset's channels and classes. MONAI's default width (``feature_size`` 24; the paper's 48 is an option) and
window (7). The attention map of each block is the response its window attention adds to each token
(``window_attention_stage{s}_block{b}``, on the grid of stage ``s``, 1/2**s of the patch).
"""

from __future__ import annotations

import math

import torch
from monai.networks.nets import SwinUNETR

from .blocks.attention_probe import name_attention_maps
from .blocks.transformer_blocks import ProbedSwinBlock
from .monai_network import MonaiPlannedNetwork
from .plan import PlanError, UNetPlan


class ShapeCheckedSwinUNETR(SwinUNETR):
    """MONAI's SwinUNETR whose input-size check (run on every forward) is plain Python on the shape: MONAI's runs
    in numpy, which ``torch.compile`` (nnU-Net compiles the network by default) cannot trace in one graph and the
    planner's fake-tensor estimate cannot run. Same condition and message."""

    def _check_input_size(self, spatial_shape) -> None:
        divisor = self.patch_size**5
        wrong = [axis + 2 for axis, size in enumerate(spatial_shape) if size % divisor]
        if wrong:
            raise ValueError(f"spatial dimensions {wrong} of input image (spatial shape: {tuple(spatial_shape)}) "
                             f"must be divisible by {self.patch_size}**5.")


class SwinUNETRNet(MonaiPlannedNetwork):
    """MONAI's SwinUNETR built on ``plan``.

    Args:
        plan: the configuration's plan (every patch axis a multiple of 32).
        input_channels, num_classes: from the dataset.
        deep_supervision: must be False (one output).
        feature_size: MONAI's embedding width (a multiple of 12; MONAI's default 24, the paper's 48).
        **swin_options: other keyword arguments of MONAI's ``SwinUNETR`` (e.g. ``window_size``, ``depths``).

    Forward: ``(B, input_channels, *patch)`` -> ``(B, num_classes, *patch)``.
    """

    patch_divisor = 32
    patch_divisor_reason = "its patch embedding and four patch mergings each halve every axis"

    def __init__(self, plan: UNetPlan, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 feature_size: int = 24, **swin_options):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        self.swin_unetr = self.adopt(
            ShapeCheckedSwinUNETR(in_channels=input_channels, out_channels=num_classes, feature_size=feature_size,
                      spatial_dims=plan.spatial_dims, **swin_options),
            feature_size, num_classes)
        stages = [self.swin_unetr.swinViT.layers1, self.swin_unetr.swinViT.layers2, self.swin_unetr.swinViT.layers3,
                  self.swin_unetr.swinViT.layers4]
        for stage, layers in enumerate(stages, start=1):
            blocks = layers[0].blocks
            for index, block in enumerate(blocks):
                blocks[index] = ProbedSwinBlock(block)
            name_attention_maps(blocks, f"window_attention_stage{stage}", index_label="block")

    @classmethod
    def require_runnable_patch(cls, plan: UNetPlan) -> None:
        """Also a :class:`PlanError` where the deepest features (1/32 of the patch) would be a single voxel."""
        super().require_runnable_patch(plan)
        if math.prod(size // cls.patch_divisor for size in plan.patch_size) == 1:
            raise PlanError(
                f"SwinUNETR's deepest features (1/32 of the patch) would be a single voxel at patch_size "
                f"{list(plan.patch_size)}, which its instance normalisation cannot normalise: plan a patch of at "
                f"least 64 along one axis")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.swin_unetr(x)
