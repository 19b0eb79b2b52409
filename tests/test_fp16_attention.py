"""Attention under fp16 autocast with logits beyond fp16's range (65504): every attention block of the package
gives finite outputs and gradients, because its softmax runs in float32 (explicitly, or inside SDPA, whose CPU
and GPU kernels accumulate the scores in float32). Inputs of magnitude 300 through the blocks' projections give
scores around 1e5-1e6, so a softmax computed in fp16 would see inf and return NaN."""

import pytest
import torch
from nnunet_attention.architectures.blocks.cross_axis_attention import MultiScaleCrossAxisAttention
from nnunet_attention.architectures.blocks.external_attention import ExternalAttention
from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention
from nnunet_attention.architectures.blocks.global_aggregation import GlobalAggregation
from nnunet_attention.architectures.blocks.guided_attention import ChannelAttention, PositionAttention
from nnunet_attention.architectures.blocks.local_global_attention import LocalGlobalGaussianAttention
from test_architecture_contract import open_zero_initialised_gates
from torch import nn

MAGNITUDE = 300.0
#: id -> (block factory, input shape)
BLOCKS = {
    # the same block: the up-sampling one shares its attention; only its query is a transposed conv, whose fp16
    # weight gradient overflows at inputs of 300 whatever the softmax (a conv matter, which nnU-Net's GradScaler
    # handles; in the network the block's input is normalised)
    "global aggregation 3d": (lambda: GlobalAggregation(nn.Conv3d, 16, 8, 2), (2, 16, 4, 6, 6)),
    "position attention 2d": (lambda: PositionAttention(nn.Conv2d, 16), (2, 16, 8, 8)),
    "channel attention 3d": (ChannelAttention, (2, 16, 4, 6, 6)),
    "cross-axis attention 3d": (lambda: MultiScaleCrossAxisAttention(nn.Conv3d, 16, 2), (2, 16, 4, 6, 6)),
    "gaussian axial attention 2d": (lambda: GaussianAxialAttention(16), (2, 8, 8, 16)),
    "local-global attention 2d": (lambda: LocalGlobalGaussianAttention(16, (4, 4), 2), (2, 8, 8, 16)),
    "external attention": (lambda: ExternalAttention(16, 2), (2, 64, 16)),
}


@pytest.mark.parametrize("block_id", sorted(BLOCKS))
def test_fp16_attention_with_huge_scores_stays_finite(block_id):
    factory, shape = BLOCKS[block_id]
    torch.manual_seed(0)
    block = factory()
    open_zero_initialised_gates(block)
    features = (MAGNITUDE * torch.randn(shape)).requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        output = block(features)
    output.float().square().mean().backward()
    assert torch.isfinite(output).all()
    assert torch.isfinite(features.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)
