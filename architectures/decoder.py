"""nnU-Net's U-Net decoder with two hooks per stage, and the decoder loop every U-shaped architecture runs.

:class:`HookedUNetDecoder` *is* dynamic-network-architectures' ``UNetDecoder`` (same transposed convs,
conv stages and deep-supervision heads, same state-dict keys), with two per-stage places where an attention
variant plugs in:

- ``skip_filters[s](skip, gating)`` transforms the skip before concatenation; ``gating`` is the decoder feature
  map one level below (the bottleneck for ``s == 0``). Attention gates go here.
- ``upsamplings[s]`` takes the place of nnU-Net's transposed conv of stage ``s`` (kept under nnU-Net's name
  ``transpconvs[s]``, so the state-dict keys stay nnU-Net's): ``(B, C_below, *S_below)`` -> ``(B, C_skip,
  *S_skip)``. An up-sampling attention block goes here.

Decoder stage ``s = 0`` is the lowest resolution, as in ``UNetDecoder``. The deep-supervision heads are
built whether or not deep supervision is on, so weights load either way. :func:`decode` is the loop itself
(up-steps from the bottleneck, a head per level, nnU-Net's output order), shared with MT-UNet's decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

from .plan import UNetPlan

#: one up-step ``(stage s, features below, skip) -> features at the skip's level``
UpStep = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def decode(up_step: UpStep, seg_layers: Sequence[nn.Module], skips: Sequence[torch.Tensor],
           deep_supervision: bool) -> torch.Tensor | list[torch.Tensor]:
    """nnU-Net's decoder loop: from the bottleneck ``skips[-1]`` up, stage ``s`` merges the features below with
    the skip ``skips[-(s + 2)]``; ``seg_layers[s]`` is its head.

    Returns the last stage's logits, or with ``deep_supervision`` every stage's, highest resolution first (the
    order nnU-Net's deep-supervision loss expects). Heads of the other stages do not run without it.
    """
    features, seg_outputs = skips[-1], []
    n_stages = len(seg_layers)
    for s in range(n_stages):
        features = up_step(s, features, skips[-(s + 2)])
        if deep_supervision or s == n_stages - 1:
            seg_outputs.append(seg_layers[s](features))
    return seg_outputs[::-1] if deep_supervision else seg_outputs[-1]


class KeepSkip(nn.Module):
    """The default skip filter: the skip connection unchanged."""

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return skip


class HookedUNetDecoder(UNetDecoder):
    """``UNetDecoder`` with the ``skip_filters`` and ``upsamplings`` hooks (one entry per decoder stage each).

    Args:
        plan: the configuration's plan (its decoder convs per stage).
        encoder: the planned encoder (``plan.build_encoder``).
        num_classes: output channels of every segmentation head.
        deep_supervision: return a list of logits, highest resolution first, one per decoder stage.
        skip_filters: per decoder stage a module ``(skip, gating) -> skip`` or None (keep the skip).
        upsamplings: per decoder stage a module ``below -> up-sampled`` or None (nnU-Net's transposed conv).

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
        upsamplings: Sequence[nn.Module | None] | None = None,
    ):
        super().__init__(encoder, num_classes, list(plan.decoder_convs[::-1]), deep_supervision)
        n_stages = len(self.stages)
        self.skip_filters = nn.ModuleList(
            KeepSkip() if f is None else f for f in _per_stage(skip_filters, n_stages, "skip_filters"))
        self.transpconvs = nn.ModuleList(
            transpconv if up is None else up
            for up, transpconv in zip(_per_stage(upsamplings, n_stages, "upsamplings"), self.transpconvs))

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        return decode(self.up_step, self.seg_layers, skips, self.deep_supervision)

    def up_step(self, s: int, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Stage ``s``: ``stages[s](cat(upsampling(below), skip_filter(skip, below)))``, the up-sampling being
        ``transpconvs[s]`` (nnU-Net's transposed conv or the ``upsamplings`` hook's module)."""
        filtered_skip = self.skip_filters[s](skip, below)
        return self.stages[s](torch.cat((self.transpconvs[s](below), filtered_skip), 1))


def _per_stage(modules: Sequence[nn.Module | None] | None, count: int, name: str) -> list[nn.Module | None]:
    modules = [None] * count if modules is None else list(modules)
    if len(modules) != count:
        raise ValueError(f"{name} needs one entry per decoder stage ({count}), got {len(modules)}")
    return modules
