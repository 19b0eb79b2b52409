"""Multi-scale self-guided attention network (Sinha & Dolz, "Multi-scale self-guided attention for medical
image segmentation", IEEE JBHI 2020) on nnU-Net's planned encoder.

The deepest four encoder levels (the paper: the last four ResNeXt stages, 1/4..1/32; here the planned
encoder, no pretrained weights) are projected to ``attention_channels`` (1x1 conv-norm-nonlin), resized to the finest of
them and fused (conv, conv, 1x1 conv) into the multi-scale map F_ms. Per scale s two guided-attention
steps: the step input is ``cat(F_s, F_ms)`` (step 2: ``cat(F_s, A_s * F_ms)``); position and channel attention
branches and a semantic autoencoder (one per step, shared across scales) read it, and
``A_s = conv1x1((PAM + CAM) * conv(reconstruction))``, unbounded as in the authors' code. Prediction heads
(1x1 convs): step 1 on F_s, step 2 on the step-2 output (authors' code). Inference averages the step-2
heads; logits are resized linearly to the input size (the paper's bilinear upsampling).

Attention resolution: the finest of those levels, or, where its grid at the plan's patch has more than
``max_attention_positions`` positions (default 4096: the paper's 64 x 64 at 1/4 of 256 x 256; in 3D 16³),
the finest level within that bound (fewer scales are fused then; the bottleneck always).
The fused SDPA kernels need memory linear in the positions, but the unfused path (CPU, or where no fused
kernel applies) holds one (N x N) float32 matrix per case and position-attention module: 64 MiB at 4096
positions, so the 8 modules of a batch of 2 stay near 1 GiB, within the memory nnU-Net plans a 3d_fullres
U-Net for.

Training mode returns :class:`MSGAOutputs` (eight heads, semantic codes, autoencoder inputs and
reconstructions) for the trainer's loss; evaluation mode returns one logits tensor, as nnU-Net's predictor
expects. nnU-Net's multi-resolution deep supervision does not apply (all heads are supervised at full
resolution by the trainer's loss), so ``deep_supervision=True`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .blocks.attention_probe import NON_NEGATIVE, AttentionProbe, name_attention_maps
from .blocks.guided_attention import (
    ChannelAttention,
    DualAttention,
    PositionAttention,
    SemanticAutoencoder,
    halving_strides,
)
from .blocks.interpolation import resize_linear
from .plan import UNetPlan
from .planned_network import PlannedNetwork

STEPS = 2


class MSGAOutputs(NamedTuple):
    """What the network returns in training mode (all logits at the input's size).

    logits: step-1 heads (one per scale, finest first), then step-2 heads.
    semantic_pairs: per scale (step-1 latent code, step-2 latent code) of the semantic autoencoders.
    reconstruction_pairs: per step and scale (autoencoder input, its reconstruction).
    """

    logits: tuple[torch.Tensor, ...]
    semantic_pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    reconstruction_pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...]


class GuidedAttentionScale(nn.Module):
    """One scale of one step: ``A = conv1x1((PAM(x) + CAM(x)) * conv(reconstruction))`` for step input x."""

    def __init__(self, plan: UNetPlan, channels: int, kernel_size: Sequence[int]):
        super().__init__()
        conv_op = plan.conv_op
        self.position = DualAttention(plan, PositionAttention(conv_op, channels), 2 * channels, channels, kernel_size)
        self.channel = DualAttention(plan, ChannelAttention(), 2 * channels, channels, kernel_size)
        self.semantic = conv_op(2 * channels, channels, tuple(kernel_size),
                                padding=tuple((k - 1) // 2 for k in kernel_size))
        self.combine = conv_op(channels, channels, 1)

    def forward(self, step_input: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        return self.combine((self.position(step_input) + self.channel(step_input)) * self.semantic(reconstruction))


class ClassHeads(nn.Module):
    """The 1x1 class heads: ``seg_layers[step][scale]``, ``channels`` -> ``num_classes``.

    Named as nnU-Net names the layers that give logits (keys containing ``.seg_layers.``): its
    ``-pretrained_weights`` loader skips exactly those, so a model fine-tunes to another number of classes.
    """

    def __init__(self, conv_op: type[nn.Module], channels: int, num_classes: int, n_scales: int):
        super().__init__()
        self.seg_layers = nn.ModuleList(
            nn.ModuleList(conv_op(channels, num_classes, 1) for _ in range(n_scales)) for _ in range(STEPS)
        )


class MSGANet(PlannedNetwork):
    """Planned encoder + multi-scale self-guided attention head (see the module docstring).

    Args:
        plan: the configuration's plan (its patch sets the attention level and the autoencoder's pooling).
        input_channels, num_classes: from the dataset.
        deep_supervision: must be False (the trainer supervises the heads itself).
        attention_channels: channels of the projected features and attention modules (paper: 64).
        max_attention_positions: see the module docstring.
        n_scales: deepest encoder levels fused (paper: 4); fewer where the plan has fewer levels or the finer
            ones exceed ``max_attention_positions``.

    Forward: ``(B, input_channels, *patch)`` -> :class:`MSGAOutputs` in training, logits ``(B, num_classes,
    *patch)`` in evaluation. Each fused level ``L``'s step-1 guided attention map A_s is exposed as
    ``guided_attention_level{L}`` (all on the finest fused level's grid).
    """

    supports_deep_supervision = False
    outputs_instead = "its trainer's loss supervises all eight heads at full resolution"

    def __init__(
        self,
        plan: UNetPlan,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        attention_channels: int = 64,
        max_attention_positions: int = 4096,
        n_scales: int = 4,
    ):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        conv_op = plan.conv_op
        self.scale_levels = plan.deepest_levels(n_scales, max_attention_positions)
        finest = self.scale_levels[0]
        kernel = plan.kernel_sizes[finest]
        channels, n = attention_channels, len(self.scale_levels)

        self.encoder = plan.build_encoder(input_channels)
        self.projections = nn.ModuleList(
            plan.conv_norm_nonlin(plan.features_per_stage[level], channels) for level in self.scale_levels
        )
        self.fuse = nn.Sequential(
            plan.conv_norm_nonlin(n * channels, channels, kernel),
            plan.conv_norm_nonlin(channels, channels, kernel),
            plan.conv_norm_nonlin(channels, channels),
        )
        pool_strides = halving_strides(plan.grids[finest], 2)
        self.autoencoders = nn.ModuleList(
            SemanticAutoencoder(plan, 2 * channels, kernel, pool_strides) for _ in range(STEPS)
        )
        self.guided_attention = nn.ModuleList(
            nn.ModuleList(GuidedAttentionScale(plan, channels, kernel) for _ in range(n)) for _ in range(STEPS)
        )
        self.heads = ClassHeads(conv_op, channels, num_classes, n)
        self.attention_probes = nn.ModuleList(
            AttentionProbe(f"guided attention map A_s of step 1 at encoder level {level} ({channels} maps, "
                           f"unbounded: no sigmoid, as in the authors' code); summary: RMS over the maps, >= 0",
                           channel_summary="rms", value_range=NON_NEGATIVE)
            for level in self.scale_levels
        )
        for level, probe in zip(self.scale_levels, self.attention_probes):
            name_attention_maps(probe, f"guided_attention_level{level}")

    def forward(self, x: torch.Tensor) -> torch.Tensor | MSGAOutputs:
        skips = self.encoder(x)
        common = skips[self.scale_levels[0]].shape[2:]
        scales = [resize_linear(projection(skips[level]), common)
                  for projection, level in zip(self.projections, self.scale_levels)]
        fused = self.fuse(torch.cat(scales, dim=1))

        latents, reconstructions, step_outputs = [], [], []
        gates = [None] * len(scales)
        for step in range(STEPS):
            outputs = []
            for s, features in enumerate(scales):
                step_input = torch.cat((features, fused if step == 0 else gates[s] * fused), dim=1)
                latent, reconstruction = self.autoencoders[step](step_input)
                attention = self.guided_attention[step][s](step_input, reconstruction)
                if step == 0:
                    gates[s] = self.attention_probes[s](attention)
                latents.append(latent)
                reconstructions.append((step_input, reconstruction))
                outputs.append(attention)
            step_outputs.append(outputs)

        final_heads = [head(out) for head, out in zip(self.heads.seg_layers[1], step_outputs[1])]
        if not self.training:
            return resize_linear(torch.stack(final_heads).mean(dim=0), x.shape[2:])
        first_heads = [head(features) for head, features in zip(self.heads.seg_layers[0], scales)]
        n = len(scales)
        return MSGAOutputs(
            logits=tuple(resize_linear(logits, x.shape[2:]) for logits in first_heads + final_heads),
            semantic_pairs=tuple((latents[s], latents[n + s]) for s in range(n)),
            reconstruction_pairs=tuple(reconstructions),
        )
