"""The distributed half of the multi-GPU readiness test (tests/test_ddp.py), in a module of its own so that the
processes ``torch.multiprocessing.spawn`` starts can import the worker by name (tests/ is on pytest's pythonpath,
but a test module imported by pytest is not importable under its name in a fresh process)."""

from pathlib import Path

import torch
import torch.distributed as dist
from nnunet_attention.trainers import TRAINERS
from plan_factory import make_plan
from test_architecture_contract import (
    INPUT_CHANNELS,
    NUM_CLASSES,
    build,
    disable_dropout,
    open_zero_initialised_gates,
    training_loss,
)
from torch.nn.parallel import DistributedDataParallel

WORLD_SIZE = 2
BATCH = 4
#: (spatial_dims, n_stages, anisotropic) per trainer: a 2D plan and an anisotropic 3D plan
PLANS = [(2, 4, False), (3, 4, True)]
CASES = [(name, *plan) for name in sorted(TRAINERS) for plan in PLANS]


def case_network_and_batch(name: str, spatial_dims: int, n_stages: int, anisotropic: bool):
    """The same network (zero-initialised gates opened, dropout off: each process would draw its own masks) and
    batch in every process, in float64 so that the comparison sees DDP's averaging and not the order of float32
    sums."""
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic)
    network = disable_dropout(build(name, kwargs, patch, deep_supervision=True))
    torch.manual_seed(1)
    open_zero_initialised_gates(network)
    network.double()
    image = torch.randn(BATCH, INPUT_CHANNELS, *patch, dtype=torch.float64)
    target = torch.randint(0, NUM_CLASSES, (BATCH, *patch))
    return network, image, target


def gradients(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.grad.clone() for name, parameter in network.named_parameters()}


def ddp_worker(rank: int, init_file: str, output_folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    share = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
    try:
        for index, case in enumerate(CASES):
            network, image, target = case_network_and_batch(*case)
            parallel = DistributedDataParallel(network)
            for _ in range(2):
                parallel.zero_grad(set_to_none=True)
                training_loss(parallel(image[share]), target[share]).backward()
            if rank == 0:
                torch.save(gradients(network), Path(output_folder) / f"{index}.pt")
    finally:
        dist.destroy_process_group()
