"""Non-local U-Nets (Wang, Zou, Shen, Ji, "Non-local U-Nets for Biomedical Image Segmentation", AAAI 2020) on an
nnU-Net plan, with the topology of the authors' code (divelab/Non-local-U-Nets, ``network.py``).

1. Encoder: the planned encoder (the authors': residual blocks; plain or ResEnc here, as the plan says).
2. Bottom block: the bottleneck through the plan's norm and nonlinearity, a *same* global aggregation block
   (``bottom_heads`` = 2 heads at the bottleneck's channels), plus the encoder's output as residual. The authors'
   encoder ends in a pre-activation residual block (no norm after its last conv), so their BN-ReLU6 here is the
   first; nnU-Net's encoder stage ends with its own norm and nonlinearity, so here the block's follow those.
3. First up-step: the bottom block's output through the plan's norm and nonlinearity into an *up-sampling*
   global aggregation block (``up_heads`` = 1 head at the next level's channels; its query a transposed 3x3 conv
   with the plan's stride between the two levels, anisotropic in 3D, so attention does the upsampling), plus the
   authors' shortcut beside it, a transposed 3x3 conv of the same input with the same stride and no bias (their
   ``Deconv3D``). It is the decoder's ``upsamplings`` hook for that step, in place of nnU-Net's transposed conv.
   Both transposed convs align as PyTorch's (see :func:`~.blocks.global_aggregation.upsampling_transpconv`): one
   fine voxel from TensorFlow's 'same' along each axis of stride 2.
4. The rest is nnU-Net's planned decoder (skip concatenation and the plan's convs where the authors add the skip
   and run a residual block) and its deep-supervision heads (the authors: BN-ReLU6, dropout 0.5, 1x1 conv).

No block needs a memory cap on the presets: the largest attention is ACDC 3d_fullres's up-sampling block,
5 x 16 x 14 queries over 5 x 8 x 7 keys.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention_removal import ResidualAttention
from .blocks.attention_probe import name_attention_maps
from .blocks.global_aggregation import GlobalAggregation, upsampling_transpconv
from .decoder import HookedUNetDecoder
from .plan import UNetPlan
from .planned_network import PlannedNetwork


class BottomBlock(ResidualAttention):
    """``x + GA(nonlin(norm(x)))`` with a *same* global aggregation block: ``(B, C, *S)`` -> same. ``x`` is the
    encoder's output, which nnU-Net's stage has already normalised and activated (see the module docstring)."""

    def __init__(self, plan: UNetPlan, channels: int, heads: int, attention_dropout: float):
        super().__init__()
        self.norm_nonlin = plan.norm_nonlin(channels)
        self.aggregation = GlobalAggregation(plan.conv_op, channels, channels, heads,
                                             attention_dropout=attention_dropout)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return bottleneck + self.aggregation(self.norm_nonlin(bottleneck))



class ShortcutUpsampling(nn.Module):
    """:class:`UpAggregation` without its attention path: ``transpconv(nonlin(norm(x)))``, the block's own
    ``norm_nonlin`` and ``shortcut``. Shapes as :class:`UpAggregation`."""

    def __init__(self, norm_nonlin: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.norm_nonlin = norm_nonlin
        self.shortcut = shortcut

    def forward(self, below: torch.Tensor) -> torch.Tensor:
        return self.shortcut(self.norm_nonlin(below))


class UpAggregation(nn.Module):
    """The authors' attention up-block: ``GA_up(y) + transpconv(y)``, ``y = nonlin(norm(x))``, the shortcut
    ``transpconv`` without bias (the authors' ``Deconv3D``): ``(B, C_in, *S)`` -> ``(B, C_out, *S * stride)``."""

    def __init__(self, plan: UNetPlan, in_channels: int, out_channels: int, stride, heads: int,
                 attention_dropout: float):
        super().__init__()
        self.norm_nonlin = plan.norm_nonlin(in_channels)
        self.aggregation = GlobalAggregation(plan.conv_op, in_channels, out_channels, heads, up_stride=stride,
                                             attention_dropout=attention_dropout)
        self.shortcut = upsampling_transpconv(plan.conv_op, in_channels, out_channels, stride, bias=False)

    def forward(self, below: torch.Tensor) -> torch.Tensor:
        activated = self.norm_nonlin(below)
        return self.aggregation(activated) + self.shortcut(activated)

    def without_attention(self) -> ShortcutUpsampling:
        """The removal control's block: the up-sampling shortcut alone (only the attention path goes)."""
        return ShortcutUpsampling(self.norm_nonlin, self.shortcut)


class NonLocalUNet(PlannedNetwork):
    """The Non-local U-Net on the plan (see the module docstring).

    Args:
        plan: the configuration's plan.
        input_channels, num_classes: from the dataset.
        deep_supervision: return nnU-Net's list of logits (highest resolution first).
        bottom_heads, up_heads: heads of the bottom and the up-sampling block (official: 2 and 1).
        attention_dropout: on the attention weights in training (official: 0.5).

    Forward: ``(B, input_channels, *patch)`` -> logits ``(B, num_classes, *patch)``, or the deep-supervision list.
    The two blocks' responses are exposed as ``global_aggregation_bottleneck_level{L}`` and
    ``global_aggregation_up_to_level{L}`` (L: the encoder level of the map's grid).
    """

    def __init__(
        self,
        plan: UNetPlan,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = False,
        bottom_heads: int = 2,
        up_heads: int = 1,
        attention_dropout: float = 0.5,
    ):
        super().__init__(plan, input_channels, num_classes, deep_supervision)
        channels, n_stages = plan.features_per_stage, plan.n_stages
        self.encoder = plan.build_encoder(input_channels)
        self.bottom_block = BottomBlock(plan, channels[-1], bottom_heads, attention_dropout)
        up_block = UpAggregation(plan, channels[-1], channels[-2], plan.strides[-1], up_heads, attention_dropout)
        name_attention_maps(self.bottom_block, f"global_aggregation_bottleneck_level{n_stages - 1}")
        name_attention_maps(up_block, f"global_aggregation_up_to_level{n_stages - 2}")
        # the first up-step upsamples by attention, in place of nnU-Net's transposed conv; the others are nnU-Net's
        self.decoder = HookedUNetDecoder(plan, self.encoder, num_classes, deep_supervision,
                                         upsamplings=[up_block] + [None] * (n_stages - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = self.encoder(x)
        # the decoder's first up-step runs the up-sampling block on the bottom block's output
        return self.decoder([*skips[:-1], self.bottom_block(skips[-1])])
