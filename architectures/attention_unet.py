"""Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018) on an
nnU-Net plan, as the authors' code builds it (ozan-oktay/Attention-Gated-Networks, ``unet_CT_multi_att_dsv_3D``).

1. Encoder: the planned encoder, untouched.
2. Gating signal: the bottleneck through a 1x1 conv-norm-nonlin (the official ``UnetGridGatingSignal3``).
3. Decoder: nnU-Net's planned decoder; before each skip is concatenated it is filtered by a
   :class:`~.blocks.attention_gate.MultiAttentionGate`, driven by the decoder's feature map one level below
   (the gating signal for the deepest skip): ``gates_per_skip`` additive attention gates in parallel (the
   official multi-attention model, the one its CT configuration trains: two), each with intermediate channels
   = the skip's channels and θ's kernel and stride = the plan's stride between the two levels (anisotropic in
   3D), then ``combine_gates`` (1x1 conv-norm-nonlin). The highest-resolution skip stays ungated, as in the
   paper, unless ``gate_top_skip``.
4. Heads: nnU-Net's deep supervision (one 1x1 head per decoder level) replaces the paper's side outputs
   fused by a 1x1 conv; nnU-Net's loss, optimizer and schedule train it.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks.attention_gate import AttentionGate, MultiAttentionGate
from .blocks.attention_probe import name_attention_maps
from .decoder import HookedUNetDecoder
from .plan import UNetPlan
from .planned_network import PlannedNetwork


class GatingSignalGate(nn.Module):
    """The deepest skip's gate: the bottleneck projected to the gating signal first."""

    def __init__(self, gating_signal: nn.Module, gate: nn.Module):
        super().__init__()
        self.gating_signal = gating_signal
        self.gate = gate

    def forward(self, skip: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.gate(skip, self.gating_signal(bottleneck))

    def without_attention(self) -> GatingSignalDropped:
        """The removal control's block: the gating signal fed only the gates, so it goes with them."""
        return GatingSignalDropped(self.gate)


class GatingSignalDropped(nn.Module):
    """The deepest skip's gate in the removal control: ``gate`` (whose gates no longer read a gating signal) on the
    skip, without the gating-signal projection."""

    def __init__(self, gate: nn.Module):
        super().__init__()
        self.gate = gate

    def forward(self, skip: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.gate(skip, bottleneck)


class AttentionUNet(PlannedNetwork):
    """nnU-Net's planned U-Net with attention-gated skips (see the module docstring).

    Args:
        plan: the configuration's plan.
        input_channels, num_classes: from the dataset.
        deep_supervision: return nnU-Net's list of logits (highest resolution first).
        gates_per_skip: parallel gates per skip (official multi-attention model: 2; single-attention model: 1).
        gate_top_skip: also gate the highest-resolution skip (the paper leaves it ungated).

    Forward: ``(B, input_channels, *patch)`` -> logits ``(B, num_classes, *patch)``, or the deep-supervision list.
    Each gate's coefficients ``(B, 1, *skip_grid)`` are exposed through
    :func:`architectures.blocks.attention_probe.capture_attention_maps`, named ``gate_level{L}`` (``_{g}`` per
    parallel gate) by the skip's encoder level ``L`` (0: full resolution).
    """

    def __init__(
        self,
        plan: UNetPlan,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        gates_per_skip: int = 2,
        gate_top_skip: bool = False,
    ):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        if gates_per_skip < 1:
            raise ValueError(f"gates_per_skip must be at least 1, got {gates_per_skip}")
        self.encoder = plan.build_encoder(input_channels)
        bottleneck_channels = plan.features_per_stage[-1]
        gating_signal = plan.conv_norm_nonlin(bottleneck_channels, bottleneck_channels)
        skip_filters: list[nn.Module | None] = []
        for skip_level in range(plan.n_stages - 2, -1, -1):  # decoder order: deepest skip first
            gate = None if skip_level == 0 and not gate_top_skip else self._gated_skip(plan, skip_level, gates_per_skip)
            if skip_level == plan.n_stages - 2 and gate is not None:
                gate = GatingSignalGate(gating_signal, gate)
            skip_filters.append(gate)
        self.decoder = HookedUNetDecoder(plan, self.encoder, num_classes, deep_supervision, skip_filters=skip_filters)

    @staticmethod
    def _gated_skip(plan: UNetPlan, skip_level: int, gates_per_skip: int) -> MultiAttentionGate:
        skip_channels = plan.features_per_stage[skip_level]
        gates = [
            AttentionGate(plan.conv_op, skip_channels, plan.features_per_stage[skip_level + 1],
                          plan.strides[skip_level + 1], skip_channels, plan.norm_op, plan.norm_op_kwargs)
            for _ in range(gates_per_skip)
        ]
        gate = MultiAttentionGate(gates, plan.conv_norm_nonlin(gates_per_skip * skip_channels, skip_channels))
        name_attention_maps(gate, f"gate_level{skip_level}")
        return gate

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder(x))
