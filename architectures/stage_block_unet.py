"""nnU-Net's planned U-Net with a block after chosen encoder and decoder stages (where transformer and
non-local blocks go): the shared body of :class:`~.mt_unet.MTUNet` and :class:`~.non_local_unet.NonLocalUNet`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .decoder import HookedUNetDecoder
from .plan import (
    build_planned_encoder,
    decoder_convs_per_stage,
    initialize_module_like_nnunet,
    is_residual_plan,
    stage_grids,
)

ENCODER, DECODER = "encoder", "decoder"


def encode_with_stage_blocks(encoder: nn.Module, stage_blocks: Sequence[nn.Module], image: torch.Tensor) -> list:
    """The skips of a ``PlainConvEncoder`` / ``ResidualEncoder``, with ``stage_blocks[s]`` applied to the
    output of stage ``s`` before it feeds stage ``s + 1`` and the decoder. Highest resolution first."""
    features = image if getattr(encoder, "stem", None) is None else encoder.stem(image)
    skips = []
    for stage, block in zip(encoder.stages, stage_blocks, strict=True):
        features = block(stage(features))
        skips.append(features)
    return skips


class StageBlockUNet(nn.Module):
    """The planned encoder with ``encoder_blocks[level]`` after each stage, and nnU-Net's decoder with a stage
    block after each decoder stage (decoder stage ``s`` produces level ``n_stages - 2 - s``).

    Args:
        input_channels, num_classes, deep_supervision: as for nnU-Net's ``PlainConvUNet``.
        plan_kwargs: the plan's ``arch_kwargs`` (``PlainConvUNet`` or ``ResidualEncoderUNet``).
        block_at: ``(level, place) -> module`` with ``place`` :data:`ENCODER` or :data:`DECODER`; return
            ``nn.Identity()`` where no block goes. Level 0 is the highest resolution.

    Forward: ``(B, input_channels, *patch)`` -> the decoder's logits (a list with deep supervision).
    State-dict keys: ``encoder.*`` and ``decoder.*`` are those of nnU-Net's U-Net on the same plan.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool,
        plan_kwargs: dict[str, Any],
        block_at: Callable[[int, str], nn.Module],
    ):
        super().__init__()
        self.residual_plan = is_residual_plan(plan_kwargs)
        self.encoder = build_planned_encoder(input_channels, plan_kwargs)
        n_stages = len(self.encoder.stages)
        self.encoder_blocks = nn.ModuleList([block_at(level, ENCODER) for level in range(n_stages)])
        self.decoder = HookedUNetDecoder(
            self.encoder, num_classes, decoder_convs_per_stage(plan_kwargs), deep_supervision,
            stage_blocks=[block_at(n_stages - 2 - s, DECODER) for s in range(n_stages - 1)],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(encode_with_stage_blocks(self.encoder, self.encoder_blocks, x))

    def planned_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Voxels of feature maps the planned U-Net (encoder and decoder, blocks excluded) holds for backward."""
        return int(
            self.encoder.compute_conv_feature_map_size(input_size)
            + self.decoder.compute_conv_feature_map_size(input_size)
        )

    def level_voxels(self, input_size: Sequence[int]) -> list[int]:
        """Per level: channels x positions of its feature map at ``input_size``."""
        grids = stage_grids(input_size, self.encoder.strides)
        return [c * math.prod(grid) for c, grid in zip(self.encoder.output_channels, grids, strict=True)]

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net's initialisation of the planned U-Net (He init; zeroed last norms of residual blocks)."""
        initialize_module_like_nnunet(module, self.residual_plan)
