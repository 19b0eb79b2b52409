"""A zero-cost tap that makes an attention map retrievable without changing the network's outputs.

Blocks pass each map they want to expose through an :class:`AttentionProbe` (an identity). The maps are
collected by forward hooks only while :func:`capture_attention_maps` is active, so training, inference
and ``torch.compile`` see a plain identity and the state dict is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class AttentionProbe(nn.Identity):
    """Identity on an attention map of shape ``(B, maps, *spatial)``, values as documented by the owner.

    Args:
        description: what the map holds, e.g. ``"attention gate coefficients, in [0, 1]"``.
    """

    def __init__(self, description: str):
        super().__init__()
        self.description = description

    def extra_repr(self) -> str:
        return repr(self.description)


@contextmanager
def capture_attention_maps(network: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Collect every probed map of ``network`` during the forward passes run inside the ``with`` block.

    Yields a dict filled as the network runs: probe's qualified module name -> the detached map of the
    most recent forward pass. Example::

        with capture_attention_maps(net) as maps:
            net(image)
        maps["decoder.skip_filters.0.coefficient_probe"]  # (B, 1, *skip_size)
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


def attention_probe_descriptions(network: nn.Module) -> dict[str, str]:
    """Which maps ``network`` exposes: probe name -> description."""
    return {name: m.description for name, m in network.named_modules() if isinstance(m, AttentionProbe)}
