"""Convolution kernels for the bf16 autocast tests on the CPU.

oneDNN's bf16 ``Conv3d`` weight gradient is wrong on some CPUs with native bf16 instructions (seen on an AMD
EPYC with ``avx512_bf16``, torch 2.14.1): for a plain ``nn.Conv3d(8, 16, 3, padding=1)`` on an input of
shape ``(2, 8, 2, 4, 12)`` it returns inf or values orders of magnitude off PyTorch's own kernel, different
from call to call, with no code of this package involved. nnU-Net autocasts only on CUDA, so no training run
goes through that kernel; the AMP tests check the networks' numerics, so their bf16 steps run on PyTorch's
native convolution kernels (:func:`bf16_safe_kernels`), whose gradient ``test_architecture_contract`` checks
against float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def bf16_safe_kernels(dtype: torch.dtype) -> Iterator[None]:
    """Context for a CPU forward and backward under autocast to ``dtype``: oneDNN off for bf16 (see the module
    docstring), unchanged for fp16. Enclose the backward too: the backward picks its kernel when it runs."""
    enabled = torch.backends.mkldnn.enabled
    if dtype == torch.bfloat16:
        torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled
