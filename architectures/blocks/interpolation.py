"""Linear resizing of feature maps, for any number of spatial axes."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: the linear interpolation mode of ``F.interpolate`` for a number of spatial axes
LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def resize_linear(features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, C, *S)`` -> ``(B, C, *size)`` by (bi/tri)linear interpolation (``align_corners=False``); unchanged
    if it already has that size."""
    if tuple(features.shape[2:]) == tuple(size):
        return features
    return F.interpolate(features, size=tuple(size), mode=LINEAR_MODE[len(size)], align_corners=False)
