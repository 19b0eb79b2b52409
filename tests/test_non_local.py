"""Non-local block against the paper's formula, identity start, and where the non-local U-Net puts its blocks."""

import pytest
import torch
import torch.nn.functional as F
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunet_attention.architectures import NonLocalUNet, UNetPlan
from nnunet_attention.architectures.blocks.non_local import NonLocalBlock
from plan_factory import make_plan
from torch import nn


def non_local_reference(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """Wang et al., embedded Gaussian: y_i = Σ_j exp(θ_iᵀφ_j) g_j / Σ_j exp(θ_iᵀφ_j) with φ, g max-pooled by 2
    (an axis shorter than 2 kept whole); z = x + BN(W y). Written with an explicit (N, M) matrix."""
    b, c = x.shape[:2]
    pool = F.max_pool3d if x.ndim == 5 else F.max_pool2d
    kernel = tuple(min(2, n) for n in x.shape[2:])
    theta = block.theta(x).flatten(2)  # (B, C', N)
    phi = pool(block.phi(x), kernel, kernel, ceil_mode=True).flatten(2)  # (B, C', M)
    g = pool(block.g(x), kernel, kernel, ceil_mode=True).flatten(2)
    weights = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, N, M)
    y = (weights @ g.transpose(1, 2)).transpose(1, 2).reshape(b, -1, *x.shape[2:])
    return x + block.output_norm(block.project_out(y))


@pytest.mark.parametrize("conv_op, norm_op, size", [
    (nn.Conv2d, nn.InstanceNorm2d, (7, 10)), (nn.Conv3d, nn.InstanceNorm3d, (1, 5, 6)), (nn.Conv3d, None, (4, 3, 5)),
])
def test_block_equals_the_papers_formula(conv_op, norm_op, size):
    torch.manual_seed(0)
    block = NonLocalBlock(conv_op, 8, norm_op, {"affine": True} if norm_op else None).double()
    for parameter in block.output_norm.parameters():  # open the zero-initialised gate
        nn.init.normal_(parameter)
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    torch.testing.assert_close(block(x), non_local_reference(block, x))


def test_block_starts_as_the_identity_and_the_network_as_the_planned_unet():
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    network = NonLocalUNet(UNetPlan.from_arch_kwargs(kwargs, patch), 2, 3, deep_supervision=True)
    network.apply(network.initialize)
    plain = PlainConvUNet(2, num_classes=3, deep_supervision=True, **kwargs)
    plain.load_state_dict({k: v for k, v in network.state_dict().items() if k in plain.state_dict()}, strict=True)
    image = torch.randn(2, 2, *patch)
    with torch.no_grad():
        for ours, reference in zip(network(image), plain(image), strict=True):
            torch.testing.assert_close(ours, reference)
    assert sum(isinstance(m, NonLocalBlock) for m in network.modules()) == len(network.nonlocal_levels) >= 2


def test_blocks_at_the_bottleneck_and_the_decoder_stages_of_the_deep_levels():
    kwargs, patch = make_plan(2, 6, anisotropic=False)
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    network = NonLocalUNet(plan, 1, 2)
    assert network.nonlocal_levels == (3, 4, 5)
    assert isinstance(network.bottleneck_block, NonLocalBlock)
    # decoder stage s produces level 6 - 2 - s
    assert [isinstance(b, NonLocalBlock) for b in network.decoder.stage_blocks] == [True, True, False, False, False]
    few = NonLocalUNet(plan, 1, 2, max_positions=1)
    assert few.nonlocal_levels == (5,)
    with pytest.raises(ValueError, match="nonlocal_levels \\[6\\] must be level indices in 0..5"):
        NonLocalUNet(plan, 1, 2, nonlocal_levels=[6])


def test_bad_block_settings_say_what_is_wrong():
    with pytest.raises(ValueError, match="reduction must be in \\(0, 1\\], got 0"):
        NonLocalBlock(nn.Conv2d, 8, reduction=0)
    with pytest.raises(ValueError, match="subsample must be at least 1, got 0"):
        NonLocalBlock(nn.Conv2d, 8, subsample=0)
