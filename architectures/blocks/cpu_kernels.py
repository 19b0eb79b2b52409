"""Which tensors the blocks' CPU forms are for (depthwise strips as 2D convolutions, channels-last resizing).

They are for tensors the CPU computes. The planner's memory estimate runs a training step on fake tensors, which
sit on the CPU but model the run on a GPU, where the blocks compute their plain forms: those take the plain forms
too, so that the estimate counts what a GPU holds (the CPU forms keep other intermediates alive).
"""

import torch
from torch._subclasses.fake_tensor import FakeTensor


def computed_on_cpu(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is computed by the CPU (not a fake tensor of the memory estimate)."""
    return tensor.device.type == "cpu" and not isinstance(tensor, FakeTensor)
