"""nnU-Net's U-Net decoder with a skip-filter hook.

:class:`HookedUNetDecoder` *is* dynamic-network-architectures' ``UNetDecoder`` (same transposed convs,
conv stages and deep-supervision heads, same state-dict keys), with one per-stage place where an attention
variant plugs in: ``skip_filters[s](skip, gating)`` transforms the skip before concatenation; ``gating`` is the
decoder feature map one level below (the encoder's bottleneck for ``s == 0``). Attention gates go here.

Decoder stage ``s = 0`` is the lowest resolution, as in ``UNetDecoder``. The deep-supervision heads are
built whether or not deep supervision is on, so weights load either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

from .plan import UNetPlan


class KeepSkip(nn.Module):
    """The default skip filter: the skip connection unchanged."""

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return skip


class HookedUNetDecoder(UNetDecoder):
    """``UNetDecoder`` with a ``skip_filters`` hook (one entry per decoder stage).

    Args:
        plan: the configuration's plan (its decoder convs per stage).
        encoder: the planned encoder (``plan.build_encoder``).
        num_classes: output channels of every segmentation head.
        deep_supervision: return a list of logits, highest resolution first, one per decoder stage.
        skip_filters: per decoder stage a module ``(skip, gating) -> skip`` or None (keep the skip).

    Forward: ``skips`` as the encoder returns them (bottleneck last) -> ``(B, num_classes, *patch)``, or
    with deep supervision a list whose entry ``i`` has size ``patch / cumulative_stride[i]``.
    """

    def __init__(
        self,
        plan: UNetPlan,
        encoder: nn.Module,
        num_classes: int,
        deep_supervision: bool,
        skip_filters: Sequence[nn.Module | None] | None = None,
    ):
        super().__init__(encoder, num_classes, list(plan.decoder_convs[::-1]), deep_supervision)
        n_decoder_stages = len(self.stages)
        self.skip_filters = nn.ModuleList(_fill(skip_filters, n_decoder_stages, KeepSkip, "skip_filters"))

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        features_below = skips[-1]
        seg_outputs = []
        for s in range(len(self.stages)):
            skip = self.skip_filters[s](skips[-(s + 2)], features_below)
            features = torch.cat((self.transpconvs[s](features_below), skip), 1)
            features = self.stages[s](features)
            if self.deep_supervision or s == len(self.stages) - 1:
                seg_outputs.append(self.seg_layers[s](features))
            features_below = features
        if self.deep_supervision:
            return seg_outputs[::-1]
        return seg_outputs[-1]


def _fill(modules: Sequence[nn.Module | None] | None, count: int, default: type[nn.Module], name: str) -> list:
    modules = [None] * count if modules is None else list(modules)
    if len(modules) != count:
        raise ValueError(f"{name} needs one entry per decoder stage ({count}), got {len(modules)}")
    return [default() if m is None else m for m in modules]
