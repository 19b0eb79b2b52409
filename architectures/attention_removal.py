"""The removal control of an architecture: the same network with its attention removed and everything else kept.

Every block that holds attention says what takes its place in the control, by a ``without_attention()`` method
that returns the replacement module, built from the block's own non-attention submodules (the same objects, so the
control's parameters keep the names and shapes they had). The established forms, per kind of block:

- a residual attention block ``x + attention(x)``: the identity (its output is its input), e.g. MT-UNet's Mixed
  Transformer stage, MCANet's MCA block, MSGA's position and channel attention, the Non-local U-Net's bottom block;
- a gate ``W(x * alpha)``: coefficients fixed at 1, ``W(x)``, and the gating signal that only fed the gate goes;
- a block that also up-samples: only its attention path goes (the Non-local U-Net's up-sampling block keeps its
  transposed-conv shortcut).

:func:`remove_attention` replaces every such block of a network and the probes that exposed its maps (a control
has no attention maps). The trainers build their controls with it (``nnUNetTrainer<X>_NoAttention``).
"""

from __future__ import annotations

from torch import nn

from .blocks.attention_probe import AttentionProbe


class ResidualAttention(nn.Module):
    """Base of a residual attention block ``x + attention(x)`` (it adds its input itself): its removal control's
    block is the identity."""

    def without_attention(self) -> nn.Identity:
        return nn.Identity()


def remove_attention(network: nn.Module) -> nn.Module:
    """``network`` with every block that has a ``without_attention()`` replaced by what it returns (outermost
    first; blocks inside a replacement are replaced in turn) and every remaining :class:`AttentionProbe` by an
    identity; returns ``network`` (changed in place).

    A TypeError where no block of ``network`` has attention to remove: a control equal to its network would
    measure nothing."""
    if not _replace_attention_blocks(network):
        raise TypeError(f"{type(network).__name__} has no block with a without_attention() method: give each of "
                        f"its attention blocks one (see nnunet_attention.architectures.attention_removal)")
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AttentionProbe):
                setattr(parent, name, nn.Identity())
    return network


def _replace_attention_blocks(module: nn.Module) -> int:
    """Replace the attention blocks below ``module`` (not ``module`` itself); return how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if hasattr(child, "without_attention"):
            replacement = child.without_attention()
            setattr(module, name, replacement)
            replaced += 1 + _replace_attention_blocks(replacement)
        else:
            replaced += _replace_attention_blocks(child)
    return replaced
