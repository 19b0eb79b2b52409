"""Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018).

The planned nnU-Net U-Net, unchanged, with an additive attention gate on the skip connections: each
gate is driven by the decoder's feature map one level below (for the deepest skip, the bottleneck after
a 1x1 conv-norm-nonlin, the paper's gating signal), and its θ stride is the plan's stride between the
two levels. As in the paper, the highest-resolution skip is not gated unless ``gate_top_skip=True``.
nnU-Net's deep supervision replaces the paper's fused side outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from torch import nn

from .blocks.attention_gate import AttentionGate
from .decoder import HookedUNetDecoder
from .plan import (
    build_planned_encoder,
    decoder_convs_per_stage,
    initialize_module_like_nnunet,
    is_residual_plan,
    read_geometry,
)


class _GatingProjection(nn.Module):
    """The paper's gating-signal block on the bottleneck (1x1 conv, norm, nonlin) in front of a gate."""

    def __init__(self, projection: nn.Module, gate: AttentionGate):
        super().__init__()
        self.projection = projection
        self.gate = gate

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return self.gate(skip, self.projection(gating))


class AttentionUNet(nn.Module):
    """nnU-Net's planned U-Net with attention-gated skips.

    Args:
        input_channels, num_classes: from the dataset.
        deep_supervision: return nnU-Net's list of logits (highest resolution first).
        gate_top_skip: also gate the highest-resolution skip (the paper leaves it ungated).
        gate_channel_ratio: intermediate gate channels as a fraction of the skip's channels
            (official code: 0.5; paper: 1.0).
        **plan_kwargs: the plan's ``arch_kwargs`` (``PlainConvUNet`` or ``ResidualEncoderUNet``).

    Forward: ``(B, input_channels, *patch)`` -> logits ``(B, num_classes, *patch)``, or the
    deep-supervision list. Gate coefficients are exposed through
    :func:`architectures.blocks.attention_probe.capture_attention_maps`.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        gate_top_skip: bool = False,
        gate_channel_ratio: float = 0.5,
        **plan_kwargs: Any,
    ):
        super().__init__()
        geometry = read_geometry(plan_kwargs)
        self.residual_plan = is_residual_plan(plan_kwargs)
        self.encoder = build_planned_encoder(input_channels, plan_kwargs)
        skip_filters = self._build_gates(
            geometry.features_per_stage, geometry.strides, plan_kwargs, gate_top_skip, gate_channel_ratio
        )
        self.decoder = HookedUNetDecoder(
            self.encoder, num_classes, decoder_convs_per_stage(plan_kwargs), deep_supervision, skip_filters=skip_filters
        )

    @staticmethod
    def _build_gates(
        features: Sequence[int],
        strides: Sequence[Sequence[int]],
        plan_kwargs: dict[str, Any],
        gate_top_skip: bool,
        gate_channel_ratio: float,
    ) -> list[nn.Module | None]:
        """One skip filter per decoder stage (lowest resolution first); None where the skip stays ungated."""
        conv_op, norm_op = plan_kwargs["conv_op"], plan_kwargs.get("norm_op")
        norm_kwargs = plan_kwargs.get("norm_op_kwargs")
        n_stages = len(features)
        filters: list[nn.Module | None] = []
        for s in range(n_stages - 1):
            skip_level = n_stages - 2 - s
            if skip_level == 0 and not gate_top_skip:
                filters.append(None)
                continue
            gate = AttentionGate(
                conv_op,
                skip_channels=features[skip_level],
                gating_channels=features[skip_level + 1],
                stride=strides[skip_level + 1],
                intermediate_channels=max(1, round(features[skip_level] * gate_channel_ratio)),
                norm_op=norm_op,
                norm_op_kwargs=norm_kwargs,
            )
            if s == 0:
                projection = ConvDropoutNormReLU(
                    conv_op,
                    features[-1],
                    features[-1],
                    1,
                    1,
                    plan_kwargs.get("conv_bias", False),
                    norm_op,
                    norm_kwargs,
                    None,
                    None,
                    plan_kwargs.get("nonlin"),
                    plan_kwargs.get("nonlin_kwargs"),
                )
                gate = _GatingProjection(projection, gate)
            filters.append(gate)
        return filters

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder(x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """Voxels of feature maps held for backward, as nnU-Net's planner estimates them (gates not counted:
        they add at most one skip-sized map per gated level)."""
        return int(
            self.encoder.compute_conv_feature_map_size(input_size)
            + self.decoder.compute_conv_feature_map_size(input_size)
        )

    def initialize(self, module: nn.Module) -> None:
        initialize_module_like_nnunet(module, self.residual_plan)
