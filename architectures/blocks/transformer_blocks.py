"""MONAI's transformer blocks with their attention exposed and removable: the SwinUNETR and UNETR encoders' blocks.

A pre-norm transformer block is ``x + attention(norm1(x))`` followed by ``x + mlp(norm2(x))``. Both classes here
take over the submodules of a block MONAI built (the same objects, under the same names, so the state dict keeps
MONAI's keys) and compute MONAI's function, with two additions:

- the response the self-attention adds to each token goes through an :class:`~.attention_probe.AttentionProbe` on
  the token grid (RMS over channels: how strongly attention changes each token), the network's attention map;
- ``without_attention()`` gives the removal control's block, :class:`TokenMLP`: ``x + mlp(norm2(x))``, each token
  through its MLP alone (no token mixing by attention), with the block's own norm and MLP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks.transformerblock import TransformerBlock
from monai.networks.nets.swin_unetr import SwinTransformerBlock
from torch import nn

from .attention_probe import NON_NEGATIVE, AttentionProbe

ATTENTION_RESPONSE = "RMS over channels of the response self-attention adds to each token"


def attention_response_probe() -> AttentionProbe:
    """The probe of a transformer block's attention response ``(B, C, *token grid)``."""
    return AttentionProbe(ATTENTION_RESPONSE, channel_summary="rms", value_range=NON_NEGATIVE)


class TokenMLP(nn.Module):
    """The second half of a pre-norm transformer block alone, ``x + drop_path(mlp(norm2(x)))``: the removal
    control's block. Takes and ignores the attention's extra arguments (a mask), so it drops in for the block.
    ``x``: ``(B, *tokens, C)`` -> same."""

    def __init__(self, norm2: nn.Module, mlp: nn.Module, drop_path: nn.Module | None = None):
        super().__init__()
        self.norm2 = norm2
        self.mlp = mlp
        self.drop_path = drop_path or nn.Identity()

    def forward(self, x: torch.Tensor, *_attention_arguments, **_attention_keywords) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ProbedSwinBlock(SwinTransformerBlock):
    """A MONAI ``SwinTransformerBlock`` (shifted-window attention) with its attention probed: MONAI's own
    ``forward_part1`` (norm, shift, window attention, unshift) and ``forward_part2`` (norm, MLP), on the submodules of
    ``block``. ``forward(x (B, *S, C), mask)`` -> ``(B, *S, C)``; the probe sees ``(B, C, *S)``."""

    def __init__(self, block: SwinTransformerBlock):
        nn.Module.__init__(self)
        for name, value in vars(block).items():
            if not name.startswith("_") and name != "training":
                setattr(self, name, value)  # dim, num_heads, window_size, shift_size, mlp_ratio, use_checkpoint
        for name, child in block.named_children():
            setattr(self, name, child)
        self.attention_probe = attention_response_probe()

    def forward(self, x: torch.Tensor, mask_matrix: torch.Tensor | None) -> torch.Tensor:
        response = self.attention_probe(self.forward_part1(x, mask_matrix).movedim(-1, 1)).movedim(1, -1)
        x = x + self.drop_path(response)
        return x + self.forward_part2(x)

    def without_attention(self) -> TokenMLP:
        return TokenMLP(self.norm2, self.mlp, self.drop_path)


class ProbedViTBlock(nn.Module):
    """A MONAI ``TransformerBlock`` (global self-attention over a ViT's tokens) with its attention probed:
    ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, on the submodules of ``block``. MONAI's block also builds
    a cross-attention norm that a block without cross-attention never uses; it is left out (nnU-Net's DDP runs
    without ``find_unused_parameters``: an unused parameter stops multi-GPU training).

    Args:
        block: MONAI's block, without cross-attention.
        token_grid: the grid of the ViT's patch tokens (row-major, as MONAI's patch embedding flattens them).

    ``forward(x (B, N, C))`` -> ``(B, N, C)``, ``N = prod(token_grid)``; the probe sees ``(B, C, *token_grid)``.
    """

    def __init__(self, block: TransformerBlock, token_grid: Sequence[int]):
        super().__init__()
        if block.with_cross_attention:
            raise ValueError("ProbedViTBlock wraps self-attention blocks; this block has cross-attention")
        self.norm1, self.attn, self.norm2, self.mlp = block.norm1, block.attn, block.norm2, block.mlp
        self.token_grid = tuple(token_grid)
        self.attention_probe = attention_response_probe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        response = self.attn(self.norm1(x))
        on_grid = response.view(response.shape[0], *self.token_grid, response.shape[-1]).movedim(-1, 1)
        x = x + self.attention_probe(on_grid).movedim(1, -1).reshape(response.shape)
        return x + self.mlp(self.norm2(x))

    def without_attention(self) -> TokenMLP:
        return TokenMLP(self.norm2, self.mlp)
