"""A zero-cost tap that makes an attention map retrievable without changing the network's outputs.

Blocks pass each map they want to expose through an :class:`AttentionProbe` (an identity). The maps are
collected by forward hooks only while :func:`capture_attention_maps` is active, so training, inference
and ``torch.compile`` see a plain identity and the state dict is unchanged. Each probe documents its map
and says how it becomes one spatial map for export (:meth:`AttentionProbe.summarize`) and the range of
that map's values. The architecture that places a block names its probes by what and where they are, always
through :func:`name_attention_maps` (e.g. ``gate_level2_0``, ``mca_axis1``): the names of the exported maps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: how a probe's ``(B, maps, *S)`` map becomes one spatial map ``(B, 1, *S)``
CHANNEL_SUMMARIES = ("single", "rms")
#: value range of a root-mean-square summary
NON_NEGATIVE = (0.0, math.inf)


class AttentionProbe(nn.Identity):
    """Identity on an attention map of shape ``(B, maps, *spatial)``, values as documented by the owner.

    Args:
        description: what the map holds, e.g. ``"attention gate coefficients, in [0, 1]"``.
        channel_summary: ``"single"``: the map has one channel and is its own summary; ``"rms"``: the root
            mean square over its channels (for feature-like maps, e.g. the response a block adds).
        value_range: the closed range of the summary's values (``math.inf`` for unbounded).

    :attr:`map_name` (``None`` until the architecture names it, see :func:`name_attention_maps`) is the map's
    name in exports: lower case, ``[a-z0-9_]``, unique in its network.
    """

    def __init__(
        self, description: str, channel_summary: str = "single", value_range: tuple[float, float] = (0.0, 1.0)
    ):
        super().__init__()
        if channel_summary not in CHANNEL_SUMMARIES:
            raise ValueError(f"channel_summary must be one of {CHANNEL_SUMMARIES}, got {channel_summary!r}")
        self.description = description
        self.channel_summary = channel_summary
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.map_name: str | None = None

    def summarize(self, attention_map: torch.Tensor) -> torch.Tensor:
        """``(B, maps, *S)`` -> ``(B, 1, *S)`` in float32, values in :attr:`value_range`."""
        if self.channel_summary == "rms":
            return attention_map.float().square().mean(dim=1, keepdim=True).sqrt()
        if attention_map.shape[1] != 1:
            raise ValueError(f"probe {self.description!r} is declared single-channel but saw {attention_map.shape[1]}")
        return attention_map.float()

    def extra_repr(self) -> str:
        return (f"{self.map_name}: {self.description!r}, channel_summary={self.channel_summary!r}, "
                f"value_range={self.value_range}")


@contextmanager
def capture_attention_maps(network: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Collect every probed map of ``network`` during the forward passes run inside the ``with`` block.

    Yields a dict filled as the network runs: probe's qualified module name -> the detached map of the
    most recent forward pass. Example::

        with capture_attention_maps(net) as maps:
            net(image)
        maps["decoder.skip_filters.0.coefficient_probe"]  # (B, 1, *skip_size)

    With ``torch.compile``, enter the block before the compiled module first runs: Dynamo does not guard on
    hooks, so a module traced without them keeps running without them (``nnunet-attention attention-maps``
    unwraps a compiled network for this reason). Traced with them, they cost no graph break.
    """
    maps: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _inp, out, name=name: maps.__setitem__(name, out.detach()))
        for name, module in network.named_modules()
        if isinstance(module, AttentionProbe)
    ]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def attention_probes(network: nn.Module) -> dict[str, AttentionProbe]:
    """Every probe of ``network`` by qualified module name, in module order."""
    return {name: m for name, m in network.named_modules() if isinstance(m, AttentionProbe)}


def name_attention_maps(module: nn.Module, name: str, index_label: str = "") -> None:
    """Name the probes inside ``module`` (a block an architecture places, or one probe): ``name`` if it holds one
    probe, else ``f"{name}_{index_label}{i}"`` for its ``i``-th probe in module order (e.g. ``lgg_sa_encoder_level3``
    with ``index_label="block"``: ``lgg_sa_encoder_level3_block0``, ``..._block1``). A ValueError if it holds none.
    Names say what the map is and where: the encoder level ``L`` whose grid it lies on (``..._level{L}``), or the
    spatial axis (``..._axis{a}``)."""
    probes = [m for m in module.modules() if isinstance(m, AttentionProbe)]
    if not probes:
        raise ValueError(f"{type(module).__name__} holds no AttentionProbe to name {name!r}")
    for index, probe in enumerate(probes):
        probe.map_name = name if len(probes) == 1 else f"{name}_{index_label}{index}"
