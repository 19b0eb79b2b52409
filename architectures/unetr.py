"""UNETR (Hatamizadeh et al., "UNETR: Transformers for 3D Medical Image Segmentation", WACV 2022) on an nnU-Net
plan: MONAI's implementation (``monai.networks.nets.UNETR``).

A ViT-B/16 encoder (16-voxel patch tokens, 12 blocks of global self-attention, width 768, 12 heads, MLP 3072)
whose outputs after blocks 3, 6, 9 and 12 are reshaped to the token grid and decoded by convolutional blocks with
transposed-convolution upsampling to the patch, as in the paper. From the plan it takes the spatial
dimensionality, the patch (MONAI's ``img_size``; every axis a multiple of 16, the token size:
:attr:`UNETRNet.patch_divisor`), the dataset's channels and classes; MONAI's defaults otherwise (the paper's).
The attention map of each block is the response its self-attention adds to each token (``self_attention_block{b}``,
on the token grid, 1/16 of the patch).
"""

from __future__ import annotations

import torch
from monai.networks.nets import UNETR

from .blocks.attention_probe import name_attention_maps
from .blocks.transformer_blocks import ProbedViTBlock
from .monai_network import MonaiPlannedNetwork
from .plan import UNetPlan

#: ViT patch (token) edge length, fixed in MONAI's UNETR
TOKEN_SIZE = 16


class UNETRNet(MonaiPlannedNetwork):
    """MONAI's UNETR built on ``plan``.

    Args:
        plan: the configuration's plan (every patch axis a multiple of 16).
        input_channels, num_classes: from the dataset.
        deep_supervision: must be False (one output).
        feature_size: width of MONAI's convolutional decoder (MONAI's default and the paper's: 16).
        **vit_options: other keyword arguments of MONAI's ``UNETR`` (e.g. ``hidden_size``, ``mlp_dim``,
            ``num_heads``).

    Forward: ``(B, input_channels, *patch)`` -> ``(B, num_classes, *patch)``.
    """

    patch_divisor = TOKEN_SIZE
    patch_divisor_reason = "its ViT cuts the patch into 16-voxel tokens"

    def __init__(self, plan: UNetPlan, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 feature_size: int = 16, **vit_options):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        self.unetr = self.adopt(
            UNETR(in_channels=input_channels, out_channels=num_classes, img_size=plan.patch_size,
                  feature_size=feature_size, spatial_dims=plan.spatial_dims, **vit_options),
            feature_size, num_classes)
        token_grid = [size // TOKEN_SIZE for size in plan.patch_size]
        blocks = self.unetr.vit.blocks
        for index, block in enumerate(blocks):
            blocks[index] = ProbedViTBlock(block, token_grid)
        name_attention_maps(blocks, "self_attention", index_label="block")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unetr(x)
