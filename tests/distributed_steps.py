"""The distributed half of the multi-GPU readiness test (tests/test_ddp.py), in a module of its own so that the
processes ``torch.multiprocessing.spawn`` starts can import the worker by name (tests/ is on pytest's pythonpath,
but a test module imported by pytest is not importable under its name in a fresh process)."""

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from helpers import (
    INPUT_CHANNELS,
    NUM_CLASSES,
    build,
    construct_trainer,
    disable_dropout,
    make_plan,
    open_zero_initialised_gates,
)
from nnunet_attention.trainers import TRAINERS
from torch.nn.parallel import DistributedDataParallel

from nnunet_attention.plans_fabricator import dataset_json_for, plans_for

BATCH = 4
#: (spatial_dims, n_stages, anisotropic) per trainer: a 2D plan and an anisotropic 3D plan
PLANS = [(2, 4, False), (3, 4, True)]
#: SwinUNETR and UNETR (patch multiples of 32 and 16) in 2D only: at their smallest 3D patch (32 x 32 x 64) the
#: float64 steps of the three processes took 55 s on 2 cores; their 3D gradients are checked by the contract
#: (test_architecture_contract.py: every parameter's gradient, 2D and 3D)
CASES = [(name, *plan) for name in sorted(TRAINERS) for plan in PLANS
         if TRAINERS[name].patch_divisor == 1 or plan[0] == 2]


def case_network_and_batch(name: str, spatial_dims: int, n_stages: int, anisotropic: bool):
    """The same network (zero-initialised gates opened, dropout off: each process would draw its own masks) and
    batch in every process, in float64 so that the comparison sees DDP's averaging and not the order of float32
    sums; the segmentation is ``(B, 1, *patch)`` as nnU-Net's data loader gives it."""
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic, patch_divisor=TRAINERS[name].patch_divisor)
    network = disable_dropout(build(name, kwargs, patch, deep_supervision=True))
    torch.manual_seed(1)
    open_zero_initialised_gates(network)
    network.double()
    image = torch.randn(BATCH, INPUT_CHANNELS, *patch, dtype=torch.float64)
    segmentation = torch.randint(0, NUM_CLASSES, (BATCH, 1, *patch)).double()
    return network, image, segmentation


def trainer_loss_and_targets(name: str, spatial_dims: int, n_stages: int, anisotropic: bool, segmentation,
                             root: Path):
    """The trainer's own loss as nnU-Net builds it for this process (``is_ddp`` when a process group is up: Dice
    statistics all-gathered over the processes, batch Dice) and the segmentation at its deep-supervision scales."""
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic, patch_divisor=TRAINERS[name].patch_divisor)
    plans = plans_for(kwargs, patch)
    next(iter(plans["configurations"].values()))["batch_dice"] = True
    trainer = construct_trainer(TRAINERS[name], plans, dataset_json_for(INPUT_CHANNELS, NUM_CLASSES), root)
    assert trainer.is_ddp == dist.is_initialized()
    # what the trainer's initialize() does before building its loss (initialize() itself would move the network
    # to the GPU nnU-Net assumes under DDP)
    trainer.enable_deep_supervision = trainer.supports_deep_supervision
    loss = trainer._build_loss()
    scales = trainer._get_deep_supervision_scales()
    if scales is None:
        return loss, segmentation
    return loss, [F.interpolate(segmentation, size=[round(p * s) for p, s in zip(patch, scale)], mode="nearest-exact")
                  for scale in scales]


def gradients(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.grad.clone() for name, parameter in network.named_parameters()}


def ddp_worker(rank: int, world_size: int, init_file: str, output_folder: str) -> None:
    """Two DDP steps of every case with the trainer's loss on this process's share of the batch; rank 0 saves the
    gradients of the second step per case."""
    root = Path(output_folder) / f"nnunet_{world_size}_{rank}"
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[variable] = str(root / variable)
    os.environ["nnUNet_compile"] = "false"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    share = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    try:
        for index, case in enumerate(CASES):
            network, image, segmentation = case_network_and_batch(*case)
            loss, targets = trainer_loss_and_targets(*case, segmentation[share], root)
            parallel = DistributedDataParallel(network)
            for _ in range(2):
                parallel.zero_grad(set_to_none=True)
                loss(parallel(image[share]), targets).backward()
            if rank == 0:
                torch.save(gradients(network), Path(output_folder) / f"{world_size}_{index}.pt")
    finally:
        dist.destroy_process_group()
