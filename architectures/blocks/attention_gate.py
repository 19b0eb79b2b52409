"""Additive attention gate of Attention U-Net (Oktay et al., MIDL 2018, Sec. 2.2 and Fig. 2), N-D."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention_probe import AttentionProbe
from .interpolation import resize_linear


class AttentionGate(nn.Module):
    """Filter skip features ``x`` by coefficients computed from ``x`` and a coarser gating signal ``g``.

    ``q = ReLU(θ(x) + φ(g))``, ``α = sigmoid(ψ(q))`` on g's grid, ``α`` linearly upsampled to x's grid,
    output ``W(x · α)``. θ is a convolution whose kernel and stride equal the (possibly anisotropic)
    stride between x's level and g's level, so it lands exactly on g's grid; φ and ψ are 1x1 convs, W is
    a 1x1 conv followed by the plan's norm.

    Shapes: ``skip (B, C_x, *S)``, ``gating (B, C_g, *S / stride)`` -> ``(B, C_x, *S)``.
    The coefficients ``α`` of shape ``(B, 1, *S)``, in ``[0, 1]``, pass through ``coefficient_probe``.

    Args:
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d``.
        skip_channels, gating_channels: C_x and C_g.
        stride: per-axis stride between the skip's level and the gating signal's level.
        intermediate_channels: channels of θ and φ (the official networks pass C_x; C_x // 2 is only the
            official block's fallback when none is passed).
        norm_op, norm_op_kwargs: the plan's norm for W.
    """

    def __init__(
        self,
        conv_op: type[nn.Module],
        skip_channels: int,
        gating_channels: int,
        stride: Sequence[int],
        intermediate_channels: int,
        norm_op: type[nn.Module] | None,
        norm_op_kwargs: dict | None,
    ):
        super().__init__()
        stride = tuple(int(s) for s in stride)
        self.theta = conv_op(skip_channels, intermediate_channels, stride, stride, 0, bias=False)
        self.phi = conv_op(gating_channels, intermediate_channels, 1, 1, 0, bias=True)
        self.psi = conv_op(intermediate_channels, 1, 1, 1, 0, bias=True)
        output_layers = [conv_op(skip_channels, skip_channels, 1, 1, 0, bias=True)]
        if norm_op is not None:
            output_layers.append(norm_op(skip_channels, **(norm_op_kwargs or {})))
        self.output = nn.Sequential(*output_layers)
        self.coefficient_probe = AttentionProbe("attention gate coefficients α on the skip's grid, in [0, 1]")

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        joint = F.relu(self.theta(skip) + self.phi(gating))
        coefficients = torch.sigmoid(self.psi(joint))
        coefficients = self.coefficient_probe(resize_linear(coefficients, skip.shape[2:]))
        return self.output(skip * coefficients)

    def without_attention(self) -> GateFixedAtOne:
        """The removal control's block: coefficients fixed at 1 (see :mod:`..attention_removal`)."""
        return GateFixedAtOne(self.output)


class GateFixedAtOne(nn.Module):
    """An :class:`AttentionGate` whose coefficients are 1 everywhere: ``W(x)``, its ``output`` (W) the gate's own
    module; the gating signal is not read. Shapes as :class:`AttentionGate`."""

    def __init__(self, output: nn.Module):
        super().__init__()
        self.output = output

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return self.output(skip)


class MultiAttentionGate(nn.Module):
    """Attention gates in parallel on one skip, their outputs combined: the official ``MultiAttentionBlock`` of
    Attention-Gated-Networks (``unet_CT_multi_att_dsv_3D``: two gates; ``unet_CT_single_att_dsv_3D``: one).

    ``combine(cat(gate_1(x, g), ..., gate_n(x, g)))`` with ``combine`` a 1x1 conv + norm + nonlinearity from
    ``n · C_x`` to ``C_x`` channels (the official ``combine_gates``, with the plan's norm and nonlinearity in place
    of BatchNorm + ReLU). Shapes as :class:`AttentionGate`; each gate's coefficients pass its own probe.

    Args:
        gates: the parallel :class:`AttentionGate` modules, all on the same skip and gating signal.
        combine: the ``n · C_x -> C_x`` 1x1 conv-norm-nonlin.
    """

    def __init__(self, gates: Sequence[AttentionGate], combine: nn.Module):
        super().__init__()
        self.gates = nn.ModuleList(gates)
        self.combine = combine

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return self.combine(torch.cat([gate(skip, gating) for gate in self.gates], dim=1))
