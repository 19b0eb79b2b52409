"""Benchmarks (not tests): print markdown tables of speed and memory, each beside nnU-Net's plain U-Net.

1. Gaussian axial attention: our vectorised block against the authors' per-position loop formulation
   (one Python step per (row, column), as in their ``GaussianTrans``), same weights, same input.
2. One nnU-Net training step (forward, deep-supervised Dice+CE, backward, SGD step): median time and
   peak memory of every trainer's network and of ``PlainConvUNet`` on the same plan and input.
   Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the growth of the process' peak
   resident memory during the steps, each network measured in a fresh process.

    python -m nnunet_attention.benchmark [--device cpu|cuda] [--steps N] [--plans PLANS.json --configuration C]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

#: arch_kwargs (ops as names) and patch of the plans nnU-Net's planner writes for synthetic datasets of 96 x 112
#: (2d) and 20 x 48 x 56 voxels at (3, 1, 1) mm (3d_fullres)
PLAN_PRESETS = {
    "2d": {
        "patch_size": [96, 112], "batch_size": 2,
        "arch_kwargs": {
            "n_stages": 5, "features_per_stage": [32, 64, 128, 256, 512], "conv_op": "torch.nn.Conv2d",
            "kernel_sizes": [[3, 3]] * 5, "strides": [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]],
            "n_conv_per_stage": [2] * 5, "n_conv_per_stage_decoder": [2] * 4, "conv_bias": True,
            "norm_op": "torch.nn.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
    },
    "3d_fullres": {
        "patch_size": [20, 48, 56], "batch_size": 2,
        "arch_kwargs": {
            "n_stages": 4, "features_per_stage": [32, 64, 128, 256], "conv_op": "torch.nn.Conv3d",
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [2] * 4, "n_conv_per_stage_decoder": [2] * 3, "conv_bias": True,
            "norm_op": "torch.nn.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
    },
}
NUM_CLASSES = 4
REFERENCE = "PlainConvUNet (nnU-Net)"


def gaussian_axial_attention_loop(block: nn.Module, grid_tokens: torch.Tensor) -> torch.Tensor:
    """The authors' formulation on a 2D grid ``(B, H, W, C)``: a Python loop over every (row, column)."""
    query, key, value = block.query(grid_tokens), block.key(grid_tokens), block.value(grid_tokens)
    rows_scores = query @ key.transpose(-1, -2)  # (B, H, W, W): row attention scores
    columns_scores = query.transpose(1, 2) @ key.transpose(1, 2).transpose(-1, -2)  # (B, W, H, H)
    output = torch.zeros_like(value)
    height, width = grid_tokens.shape[1:3]
    for r in range(height):
        for c in range(width):
            row_distance = (torch.arange(width, device=value.device) - c) ** 2
            column_distance = (torch.arange(height, device=value.device) - r) ** 2
            row_weights = torch.softmax(rows_scores[:, r, c] - (block.shift * row_distance + block.bias), dim=-1)
            column_weights = torch.softmax(columns_scores[:, c, r] - (block.shift * column_distance + block.bias), -1)
            row_output = (row_weights[..., None] * value[:, r]).sum(1)
            output[:, r, c] = row_output + (column_weights[..., None] * value[:, :, c]).sum(1)
    return output


def _median_seconds(run: Callable[[], object], steps: int, device: torch.device) -> float:
    run()  # warm-up
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gaussian_attention_table(device: torch.device, steps: int) -> str:
    from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention

    rows = ["| grid | vectorised (ms) | loop (ms) | loop / vectorised | max abs difference |", "|---|---|---|---|---|"]
    for size in (14, 28):
        block = GaussianAxialAttention(64).to(device)
        tokens = torch.randn(2, size, size, 64, device=device)
        with torch.no_grad():
            difference = (block(tokens) - gaussian_axial_attention_loop(block, tokens)).abs().max().item()
            fast = _median_seconds(partial(block, tokens), steps, device)
            slow = _median_seconds(partial(gaussian_axial_attention_loop, block, tokens), max(1, steps // 5), device)
        rows.append(f"| {size}x{size} | {fast * 1e3:.2f} | {slow * 1e3:.1f} | {slow / fast:.0f}x | {difference:.1e} |")
    return "\n".join(rows)


def _resolve(plan: dict) -> tuple[dict, list[int], int]:
    import pydoc

    kwargs = copy.deepcopy(plan["arch_kwargs"])
    for key in ("conv_op", "norm_op", "dropout_op", "nonlin"):
        if kwargs.get(key) is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    return kwargs, list(plan["patch_size"]), int(plan["batch_size"])


def build_network(name: str, plan: dict) -> nn.Module:
    import inspect

    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from nnunet_attention.trainers import TRAINERS

    kwargs, patch, _ = _resolve(plan)
    if name == REFERENCE:
        network = PlainConvUNet(1, num_classes=NUM_CLASSES, deep_supervision=True, **kwargs)
    else:
        architecture = TRAINERS[name].architecture_class
        extra = {"patch_size": patch} if "patch_size" in inspect.signature(architecture).parameters else {}
        deep_supervision = TRAINERS[name].supports_deep_supervision
        network = architecture(1, NUM_CLASSES, deep_supervision=deep_supervision, **kwargs, **extra)
    network.apply(network.initialize)
    return network


def _nnunet_loss(outputs) -> nn.Module:
    """The trainer's loss for these training outputs: nnU-Net's deep-supervised Dice+CE for a list of outputs,
    MSGA's loss (Dice+CE on every head plus its auxiliary terms) for its outputs."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from nnunet_attention.trainers.msga import MSGALoss

    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          dice_class=MemoryEfficientSoftDiceLoss)
    if not isinstance(outputs, list):
        return MSGALoss(loss)
    weights = np.array([1 / (2**i) for i in range(len(outputs))])
    weights[-1] = 0
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def measure_train_step(name: str, plan: dict, device_name: str, steps: int) -> tuple[float, float, int]:
    """(median seconds per step, peak MiB, parameters) of one network, run in the calling process."""
    device = torch.device(device_name)
    torch.manual_seed(0)
    network = build_network(name, plan).to(device)
    _, patch, batch = _resolve(plan)
    optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    image = torch.randn(batch, 1, *patch, device=device)
    with torch.no_grad():
        outputs = network(image)
    loss_function = _nnunet_loss(outputs)
    if isinstance(outputs, list):  # deep supervision: one target per output resolution
        targets = [torch.randint(0, NUM_CLASSES, (batch, 1, *o.shape[2:]), device=device).float() for o in outputs]
    else:
        targets = torch.randint(0, NUM_CLASSES, (batch, 1, *patch), device=device).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(network(image), targets)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    resident_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = _median_seconds(step, steps, device)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - resident_before) / 1024
    return seconds, peak_mib, sum(p.numel() for p in network.parameters())


def _measure_in_fresh_process(arguments: tuple) -> tuple[float, float, int]:
    return measure_train_step(*arguments)


def train_step_table(plans: dict[str, dict], device_name: str, steps: int) -> str:
    from nnunet_attention.trainers import TRAINERS

    names = [REFERENCE, *sorted(TRAINERS)]
    rows = ["| plan | network | params (M) | train step (s) | x plain | peak memory (MiB) | x plain |",
            "|---|---|---|---|---|---|---|"]
    context = multiprocessing.get_context("spawn")
    for plan_name, plan in plans.items():
        results = {}
        for name in names:
            with context.Pool(1) as pool:  # a fresh process each: CPU peak memory is per process
                results[name] = pool.apply(_measure_in_fresh_process, ((name, plan, device_name, steps),))
        reference_seconds, reference_mib, _ = results[REFERENCE]
        for name in names:
            seconds, mib, parameters = results[name]
            rows.append(f"| {plan_name} {plan['patch_size']} b{plan['batch_size']} | {name} | {parameters / 1e6:.1f} | "
                        f"{seconds:.3f} | {seconds / reference_seconds:.2f} | {mib:.0f} | {mib / reference_mib:.2f} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up (default: %(default)s)")
    parser.add_argument("--plans", help="an nnUNetPlans.json to benchmark instead of the built-in presets")
    parser.add_argument("--configuration", nargs="+", default=["2d", "3d_fullres"])
    args = parser.parse_args(argv)
    if args.plans:
        import json

        configurations = json.load(open(args.plans))["configurations"]
        plans = {c: {"patch_size": configurations[c]["patch_size"], "batch_size": configurations[c]["batch_size"],
                     "arch_kwargs": configurations[c]["architecture"]["arch_kwargs"]} for c in args.configuration}
    else:
        plans = {c: PLAN_PRESETS[c] for c in args.configuration}
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"## Gaussian axial attention, 64 channels, batch 2 ({name})\n")
    print(gaussian_attention_table(device, args.steps * 4))
    print(f"\n## One nnU-Net training step, median of {args.steps} ({name}, torch {torch.__version__})\n")
    print(train_step_table(plans, args.device, args.steps))


if __name__ == "__main__":
    main()
