"""Run nnU-Net's planned encoder with a block after each stage (where transformer blocks go)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def encode_with_stage_blocks(encoder: nn.Module, stage_blocks: Sequence[nn.Module], image: torch.Tensor) -> list:
    """The skips of a ``PlainConvEncoder`` / ``ResidualEncoder``, with ``stage_blocks[s]`` applied to the
    output of stage ``s`` before it feeds stage ``s + 1`` and the decoder. Highest resolution first."""
    features = image if getattr(encoder, "stem", None) is None else encoder.stem(image)
    skips = []
    for stage, block in zip(encoder.stages, stage_blocks, strict=True):
        features = block(stage(features))
        skips.append(features)
    return skips
