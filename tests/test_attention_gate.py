"""The additive attention gate against the paper's formula, written out per voxel block."""

import pytest
import torch
import torch.nn.functional as F
from nnunet_attention.architectures.blocks.attention_gate import AttentionGate, MultiAttentionGate
from torch import nn


def reference_gate(gate: AttentionGate, skip: torch.Tensor, gating: torch.Tensor, stride) -> torch.Tensor:
    """Oktay et al. Eq. (1)-(2): q = ψᵀ ReLU(W_xᵀ x + W_gᵀ g + b_g) + b_ψ, α = σ(q), out = W(x · up(α)).

    W_x acts on each non-overlapping stride-sized block of x (the block that maps onto one gating voxel);
    computed here with explicit block reshapes and einsums instead of convolutions.
    """
    batch, channels = skip.shape[:2]
    grid = gating.shape[2:]
    dims = len(grid)
    blocks = skip.reshape(batch, channels, *[v for g, s in zip(grid, stride) for v in (g, s)])
    # (B, C, g0, s0, g1, s1, ...) -> (B, g0, g1, ..., C, s0, s1, ...)
    order = [0, *[2 + 2 * a for a in range(dims)], 1, *[3 + 2 * a for a in range(dims)]]
    blocks = blocks.permute(order)
    theta = torch.einsum("b...k,ik->b...i", blocks.flatten(start_dim=1 + dims), gate.theta.weight.flatten(1))
    phi = torch.einsum("bc...,ic->b...i", gating, gate.phi.weight.flatten(1)) + gate.phi.bias
    joint = torch.relu(theta + phi)
    psi = torch.einsum("b...i,i->b...", joint, gate.psi.weight.flatten()) + gate.psi.bias
    alpha = torch.sigmoid(psi)[:, None]
    mode = {2: "bilinear", 3: "trilinear"}[dims]
    alpha = F.interpolate(alpha, size=skip.shape[2:], mode=mode, align_corners=False)
    return gate.output(skip * alpha)


@pytest.mark.parametrize(
    "conv_op,norm_op,skip_size,stride",
    [
        (nn.Conv2d, nn.InstanceNorm2d, (12, 20), (2, 2)),
        (nn.Conv2d, nn.InstanceNorm2d, (6, 20), (1, 2)),
        (nn.Conv3d, nn.InstanceNorm3d, (4, 12, 10), (1, 2, 2)),
        (nn.Conv3d, nn.InstanceNorm3d, (6, 8, 10), (2, 2, 1)),
    ],
)
def test_gate_equals_paper_formula(conv_op, norm_op, skip_size, stride):
    torch.manual_seed(0)
    gate = AttentionGate(conv_op, 6, 10, stride, 3, norm_op, {"affine": True}).double()
    for p in gate.parameters():
        nn.init.normal_(p)
    skip = torch.randn(2, 6, *skip_size, dtype=torch.float64)
    gating = torch.randn(2, 10, *[n // s for n, s in zip(skip_size, stride)], dtype=torch.float64)
    torch.testing.assert_close(gate(skip, gating), reference_gate(gate, skip, gating, stride), atol=1e-10, rtol=1e-10)


def test_multi_gate_equals_the_official_combination_of_two_gates():
    """MultiAttentionBlock: combine_gates(cat(gate_1(x, g), gate_2(x, g))), combine = 1x1 conv + norm + nonlin."""
    torch.manual_seed(0)
    gates = [AttentionGate(nn.Conv3d, 6, 10, (1, 2, 2), 6, nn.InstanceNorm3d, {"affine": True}) for _ in range(2)]
    combine = nn.Sequential(nn.Conv3d(12, 6, 1), nn.InstanceNorm3d(6, affine=True), nn.LeakyReLU(0.01))
    multi = MultiAttentionGate(gates, combine).double()
    for p in multi.parameters():
        nn.init.normal_(p)
    skip = torch.randn(2, 6, 4, 12, 10, dtype=torch.float64)
    gating = torch.randn(2, 10, 4, 6, 5, dtype=torch.float64)
    gated = [reference_gate(gate, skip, gating, (1, 2, 2)) for gate in multi.gates]
    expected = F.leaky_relu(combine[1](torch.einsum("bc...,oc->bo...", torch.cat(gated, 1),
                                                    combine[0].weight.flatten(1))
                                       + combine[0].bias.view(1, -1, 1, 1, 1)), 0.01)
    torch.testing.assert_close(multi(skip, gating), expected, atol=1e-10, rtol=1e-10)
