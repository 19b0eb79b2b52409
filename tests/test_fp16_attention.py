"""Every attention block of the package under fp16 autocast, fed half-precision inputs as it is inside a network
trained with nnU-Net's AMP (the previous layer's output is fp16):

- with scores beyond fp16's range (65504) its outputs and gradients stay finite, because its softmax runs in float32
  (explicitly, or inside SDPA, whose kernels accumulate the scores in float32): inputs of magnitude 300 through the
  blocks' projections give scores around 1e5-1e6, so a softmax or score product computed in fp16 gives inf and NaN;
- on normalised inputs its output, input gradient and parameter gradients equal a float64 run of the same block on
  the same (fp16-rounded) inputs within fp16's precision.
"""

import copy

import pytest
import torch
from helpers import BLOCKS, FP16_TOLERANCE, MAGNITUDE, block_and_half_input, largest_relative_error
from torch import nn


def fp16_step(block: nn.Module, features: torch.Tensor, loss_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and input gradient of ``block`` under fp16 autocast; loss: the mean square times ``loss_scale``, which
    keeps the gradients inside fp16's range as nnU-Net's GradScaler does."""
    features = features.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        output = block(features)
    (loss_scale * output.float().square().mean()).backward()
    return output, features.grad


@pytest.mark.parametrize("block_id", sorted(BLOCKS))
def test_fp16_attention_with_huge_scores_stays_finite(block_id):
    block, features = block_and_half_input(block_id, MAGNITUDE)
    output, input_gradient = fp16_step(block, features, loss_scale=1.0)
    assert torch.isfinite(output).all()
    assert torch.isfinite(input_gradient).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)




@pytest.mark.parametrize("block_id", sorted(BLOCKS))
def test_fp16_attention_equals_a_float64_run_within_fp16_precision(block_id):
    block, features = block_and_half_input(block_id, 1.0)
    reference_block = copy.deepcopy(block).double()
    loss_scale = float(features.numel())  # gradients of the sum of squares: none underflows fp16
    output, input_gradient = fp16_step(block, features, loss_scale)
    reference_input = features.double().requires_grad_()
    reference = reference_block(reference_input)
    (loss_scale * reference.square().mean()).backward()
    assert output.dtype in (torch.float16, torch.float32)
    assert largest_relative_error(output, reference) < FP16_TOLERANCE
    assert largest_relative_error(input_gradient, reference_input.grad) < FP16_TOLERANCE
    # on the block's largest parameter gradient: some are zero by construction (see ZERO_GRADIENT_BY_DESIGN)
    gradients = {name: p.grad for name, p in reference_block.named_parameters() if p.grad is not None}
    largest = max(float(g.abs().max()) for g in gradients.values())
    for name, parameter in block.named_parameters():
        if name in gradients:
            assert largest_relative_error(parameter.grad, gradients[name], largest) < FP16_TOLERANCE, name
