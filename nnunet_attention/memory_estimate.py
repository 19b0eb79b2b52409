"""What one training step holds at its peak, computed without running it: PyTorch's fake tensors (shapes and
dtypes, no data) run the trainer's own step (:mod:`nnunet_attention.trainer_step`), and :class:`PeakLiveBytes`
adds up the bytes of every tensor storage alive at each moment (parameters, gradients, optimizer state,
activations autograd saves, temporaries). No GPU and no real memory are needed, and a step takes a few seconds
whatever the patch and batch, which makes it usable inside nnU-Net's patch search.

With ``half_precision`` the step runs under fp16 autocast, so activations take 2 bytes where CUDA's AMP keeps
them in fp16; without, float32 as on a CPU. What the estimate leaves out: the allocator's rounding and
fragmentation, cuDNN/oneDNN workspaces and the CUDA context. :mod:`nnunet_attention.planning` therefore uses
it only as a ratio to nnU-Net's plain U-Net on the same candidate, whose absolute scale nnU-Net calibrated.
"""

from __future__ import annotations

import weakref

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .planned_configuration import PlannedConfiguration
from .trainer_step import constructed_trainer, prepare_training_step, trainer_network


class PeakLiveBytes(TorchDispatchMode):
    """Counts the bytes of every tensor storage that the ops run under it create, while the storage lives
    (views and in-place results share their base's storage and add nothing); :attr:`peak` is the most alive
    at once. Costs one dictionary lookup per op output, so a whole training step takes seconds."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._alive: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(output):
            if isinstance(leaf, torch.Tensor):
                self._count(leaf.untyped_storage())
        return output

    def _count(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self._alive:
            return
        size = storage.nbytes()
        self._alive[key] = weakref.ref(storage, lambda _, key=key, size=size: self._release(key, size))
        self.current += size
        self.peak = max(self.peak, self.current)

    def _release(self, key: int, size: int) -> None:
        del self._alive[key]
        self.current -= size


def with_empty_weights(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` with every parameter and buffer replaced by an uninitialised tensor of its shape and dtype,
    created under the current mode (in :func:`training_step_peak_bytes`, fake and counted); the same tensor shared
    by two modules stays shared. ``Module.to_empty`` cannot do this under a fake mode: it would convert each real
    weight to a fake one first, which then holds a reference that stops the module from swapping it."""
    replaced: dict[int, torch.Tensor] = {}

    def empty_like(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in replaced:
            empty = torch.empty(tensor.shape, dtype=tensor.dtype)
            replaced[id(tensor)] = (torch.nn.Parameter(empty, tensor.requires_grad)
                                    if isinstance(tensor, torch.nn.Parameter) else empty)
        return replaced[id(tensor)]

    for module in network.modules():
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                if tensor is not None:
                    tensors[name] = empty_like(tensor)
    return network


def training_step_peak_bytes(trainer: str | type, planned: PlannedConfiguration, batch_size: int,
                             half_precision: bool = True) -> int:
    """Peak bytes of one training step of ``trainer`` (a name or class; ``nnUNetTrainer``: the plan's U-Net) on
    ``planned`` at ``batch_size``: the trainer's network with its deep supervision, its loss, backward, gradient
    clipping and its optimizer's step, with the weights, the batch and the optimizer state alive throughout."""
    tracker = PeakLiveBytes()
    with constructed_trainer(trainer, planned) as constructed:
        # built with real weights, as some constructors read tensor values (MONAI's SwinUNETR its drop-path
        # rates); then every weight is replaced by an uninitialised fake one of its shape, counted from there on
        network = trainer_network(constructed)
        with FakeTensorMode(), tracker:
            prepare_training_step(constructed, batch_size, amp=half_precision, network=with_empty_weights(network))()
    return tracker.peak
