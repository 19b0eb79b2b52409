"""Side-by-side benchmark: every trainer's network beside nnU-Net's own U-Net on the same plan, in one run.

Per network (each measured in a fresh process, so CPU peak memory is its own):

- parameters;
- forward GFLOPs for one patch (``torch.utils.flop_counter``; attention counted through SDPA's math
  backend, which the counter sees as matmuls: fused kernels do the same multiply-adds);
- training-step time as nnU-Net trains on the device (forward, the trainer's loss: deep-supervised
  Dice+CE or MSGA's, backward, SGD with nnU-Net's settings; median of ``--steps`` after two warm-up steps):
  fp32 on CPU; on CUDA with AMP (fp16 autocast + GradScaler) and with AMP + ``torch.compile``;
- peak memory of those steps (CUDA: ``max_memory_allocated``; CPU: the process' peak resident memory
  above what it held before the steps, so weights and imports are not counted), and beside it the estimate
  :mod:`nnunet_attention.memory_estimate` computes without running the step (what ``nnunet-attention plan``
  uses; fp16 autocast on CUDA, float32 on CPU, as measured);
- sliding-window inference time for one case of the plan's median size (nnU-Net's predictor, Gaussian
  weighting, step 0.5, no mirroring: test-time mirroring multiplies every network's time alike).

The reference is the network the plan names, built as ``nnUNetTrainer`` builds it. Plans come from
``--plans nnUNetPlans.json`` (with its dataset.json beside it for channels and classes) or from the presets
in :mod:`nnunet_attention.plan_presets`. Output: a markdown table (printed, and saved with a bar chart of
the ratios to the reference as PNG in ``--output``).

On a CPU each plan runs at batch :data:`CPU_BATCH_SIZE` unless ``--batch-size`` says otherwise (nnU-Net's GPU
batch, e.g. 56 on ACDC 2d, takes hours per network on a CPU), and the run says so. Progress goes to stderr, one
line per network. Ctrl-C stops the run cleanly: the rows already measured are printed and saved as
``benchmark_interrupted.md`` / ``.json`` (never under the names of a complete run).

    nnunet-attention benchmark [--preset NAME ...] [--plans FILE --configuration C ...] [--device D]
                               [--steps N] [--batch-size B] [--trainers NAME ...] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .nnunet_commands import nnunet_chatter_hidden
from .plan_presets import PLAN_PRESETS, BenchmarkPlan

#: the row every ratio is taken against
REFERENCE = "nnU-Net (planned U-Net)"
WARM_UP_STEPS = 2
#: the batch a CPU run uses where ``--batch-size`` is not given (at most the plan's)
CPU_BATCH_SIZE = 2


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_benchmark`; :attr:`results` holds the networks measured before it."""

    def __init__(self, results: dict[str, dict[str, Measurement]]):
        super().__init__()
        self.results = results


@dataclass(frozen=True)
class Measurement:
    """One network on one plan; ``None`` where a figure was not measured on this device."""

    parameters: int
    gflops: float
    step_seconds: float
    peak_mib: float
    inference_seconds: float | None
    estimated_peak_mib: float
    compiled_step_seconds: float | None = None

    @property
    def flop_rate(self) -> float:
        """Forward GFLOPs of one patch per second of training step: at the same plan and batch, its ratio to the
        reference is the ratio of the FLOP/s the two training steps achieve (how well the hardware is used)."""
        return self.gflops / self.step_seconds


def median_seconds(run: Callable[[], object], steps: int, device: torch.device, warm_up: int = WARM_UP_STEPS) -> float:
    """Median wall time of ``run`` over ``steps`` calls after ``warm_up`` untimed ones (CUDA synchronised)."""
    for _ in range(warm_up):
        run()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_flops(network: nn.Module, image: torch.Tensor) -> int:
    """FLOPs of one inference forward pass (multiply-add = 2), attention through SDPA's math backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    was_training = network.training
    network.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        network(image)
    network.train(was_training)
    return counter.get_total_flops()


def trainer_class(name: str) -> type:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_attention.trainers import TRAINERS

    return nnUNetTrainer if name == REFERENCE else TRAINERS[name]


def build_network(name: str, plan: BenchmarkPlan, for_training: bool = True) -> nn.Module:
    """The network ``name``'s trainer builds for the plan: for training with nnU-Net deep supervision where it
    has it, for inference without (as nnU-Net's predictor builds it)."""
    trainer = trainer_class(name)
    plans_manager = plan.plans_manager()
    deep_supervision = for_training and getattr(trainer, "supports_deep_supervision", True)
    return trainer.build_network_architecture(
        plans_manager, plans_manager.get_configuration(plan.configuration), plan.input_channels,
        plan.num_classes, enable_deep_supervision=deep_supervision,
    )


def training_loss(outputs) -> nn.Module:
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


def training_step(network: nn.Module, plan: BenchmarkPlan, batch_size: int, device: torch.device,
                  amp: bool) -> Callable[[], None]:
    """One nnU-Net training step on random data: SGD (lr 1e-2, Nesterov momentum 0.99), gradient clipping at
    12, and with ``amp`` fp16 autocast, with a GradScaler on CUDA, as ``nnUNetTrainer.train_step`` does (on a CPU,
    ``amp`` gives the tensors CUDA's AMP would hold, for :mod:`nnunet_attention.memory_estimate`)."""
    optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
    image = torch.randn(batch_size, plan.input_channels, *plan.patch_size, device=device)
    with torch.no_grad():
        outputs = network(image)
    loss_function = training_loss(outputs)
    if isinstance(outputs, list):  # deep supervision: one target per output resolution
        targets = [torch.randint(0, plan.num_classes, (batch_size, 1, *o.shape[2:]), device=device).float()
                   for o in outputs]
    else:
        targets = torch.randint(0, plan.num_classes, (batch_size, 1, *plan.patch_size), device=device).float()
    del outputs

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = loss_function(network(image), targets)
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
            scaler.step(optimizer)
            scaler.update()

    return step


def inference_seconds(name: str, plan: BenchmarkPlan, device: torch.device) -> float:
    """Sliding-window prediction of one random case of the plan's median size with nnU-Net's predictor."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    network = build_network(name, plan, for_training=False)
    plans_manager = plan.plans_manager()
    with nnunet_chatter_hidden():  # nnU-Net prints that CPU prediction runs off the device
        predictor = nnUNetPredictor(device=device, use_mirroring=False,
                                    perform_everything_on_device=device.type == "cuda", allow_tqdm=False, verbose=False)
    predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration(plan.configuration),
                                    [network.state_dict()], plan.dataset_json(), "benchmark", None)
    case = torch.randn(plan.input_channels, *plan.case_shape)
    return median_seconds(lambda: predictor.predict_sliding_window_return_logits(case), 1, device, warm_up=1)


def resident_mib() -> float:
    """The process' resident memory now (Linux ``/proc``; elsewhere its peak so far, the best available)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * resource.getpagesize() / 2**20
    return peak_resident_mib()


def reset_peak_resident() -> None:
    """Restart the process' resident high-water mark (Linux: ``/proc/self/clear_refs``), so that the peak read
    next is the peak since now. Without it Linux's peak is the largest since the process started, including what
    its parent held when it was forked: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a measuring process
    spawned by a large one (a test run) reports the parent's size."""
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")


def peak_resident_mib() -> float:
    """The resident high-water mark since :func:`reset_peak_resident` (Linux ``VmHWM``); elsewhere
    ``ru_maxrss``, the peak of the whole process."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def measure(name: str, plan: BenchmarkPlan, device_name: str, steps: int, batch_size: int,
            with_inference: bool) -> Measurement:
    """Every figure of one network on one plan, in the calling process (a fresh one: the training steps
    run first, so the CPU peak they reach is theirs)."""
    from .memory_estimate import training_step_peak_bytes

    device = torch.device(device_name)
    torch.manual_seed(0)
    network = build_network(name, plan).to(device)
    parameters = sum(p.numel() for p in network.parameters())
    amp = device.type == "cuda"
    if amp:
        torch.cuda.reset_peak_memory_stats(device)
    reset_peak_resident()
    resident_before = resident_mib()
    step_seconds = median_seconds(training_step(network, plan, batch_size, device, amp), steps, device)
    if amp:
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = peak_resident_mib() - resident_before
    compiled_seconds = None
    if device.type == "cuda":  # nnU-Net compiles the network on CUDA by default (nnUNet_compile)
        compiled = torch.compile(network)
        compiled_seconds = median_seconds(training_step(compiled, plan, batch_size, device, amp), steps, device)
    flops = forward_flops(network, torch.randn(1, plan.input_channels, *plan.patch_size, device=device))
    inference = inference_seconds(name, plan, device) if with_inference else None
    estimate_mib = training_step_peak_bytes(name, plan, batch_size, half_precision=amp) / 2**20
    return Measurement(parameters, flops / 1e9, step_seconds, peak_mib, inference, estimate_mib, compiled_seconds)


def _measure_in_fresh_process(arguments: tuple) -> Measurement:
    return measure(*arguments)


def _ignore_interrupts() -> None:
    """In the measuring process: Ctrl-C reaches the whole process group; the parent alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def progress(message: str) -> None:
    print(f"[nnunet-attention benchmark] {message}", file=sys.stderr, flush=True)


def registered_network(trainer: str) -> str | None:
    """The benchmark's network for a trainer: ours by name or as the base of a subclass named after it
    (``nnUNetTrainerMTUNet_250epochs``), nnU-Net's U-Net for ``nnUNetTrainer`` and its variants; else None."""
    from nnunet_attention.trainers import TRAINERS

    bases = [name for name in TRAINERS if trainer == name or trainer.startswith(f"{name}_")]
    if bases:
        return max(bases, key=len)
    return REFERENCE if trainer == "nnUNetTrainer" or trainer.startswith("nnUNetTrainer_") else None


def network_names(trainers: Sequence[str] | None = None) -> list[str]:
    """The reference, then the requested trainers (default: every registered trainer, sorted)."""
    from nnunet_attention.trainers import TRAINERS
    from nnunet_attention.trainers.base import did_you_mean

    unknown = sorted(set(trainers or ()) - set(TRAINERS))
    if unknown:
        hints = "".join(did_you_mean(name) for name in unknown)
        raise ValueError(f"unknown trainer(s) {unknown}: {hints}registered: {', '.join(sorted(TRAINERS))}")
    return [REFERENCE, *(trainers or sorted(TRAINERS))]


def batch_size_for(plan: BenchmarkPlan, device: str, batch_size: int | None) -> int:
    """``batch_size`` if given; else the plan's batch on a GPU and at most :data:`CPU_BATCH_SIZE` on a CPU."""
    if batch_size is not None:
        return batch_size
    return min(plan.batch_size, CPU_BATCH_SIZE) if torch.device(device).type == "cpu" else plan.batch_size


def run_benchmark(plans: Sequence[BenchmarkPlan], device: str, steps: int, batch_size: int | None = None,
                  trainers: Sequence[str] | None = None,
                  with_inference: bool = True) -> dict[str, dict[str, Measurement]]:
    """plan label -> network name -> measurement; every network in a fresh (spawned) process, announced on
    stderr. Ctrl-C raises :class:`BenchmarkInterrupted` with the measurements taken so far."""
    context = multiprocessing.get_context("spawn")
    names = network_names(trainers)
    results: dict[str, dict[str, Measurement]] = {}
    try:
        for plan in plans:
            batch = batch_size_for(plan, device, batch_size)
            label = plan.label(batch)
            results[label] = {}
            for number, name in enumerate(names, start=1):
                progress(f"{label}: {name} ({number}/{len(names)}) ...")
                start = time.perf_counter()
                with context.Pool(1, initializer=_ignore_interrupts) as pool:
                    arguments = (name, plan, device, steps, batch, with_inference)
                    results[label][name] = pool.apply(_measure_in_fresh_process, (arguments,))
                progress(f"{label}: {name} done in {time.perf_counter() - start:.0f} s")
    except KeyboardInterrupt:
        raise BenchmarkInterrupted({label: rows for label, rows in results.items() if rows}) from None
    return results


#: table columns: (header, Measurement attribute, format)
COLUMNS = (
    ("params (M)", "parameters", lambda v: f"{v / 1e6:.1f}"),
    ("GFLOPs / patch", "gflops", lambda v: f"{v:.1f}"),
    ("train step (s)", "step_seconds", lambda v: f"{v:.3f}"),
    ("GFLOPs / step s", "flop_rate", lambda v: f"{v:.1f}"),
    ("+ compile (s)", "compiled_step_seconds", lambda v: f"{v:.3f}"),
    ("peak memory (MiB)", "peak_mib", lambda v: f"{v:.0f}"),
    ("estimated peak (MiB)", "estimated_peak_mib", lambda v: f"{v:.0f}"),
    ("inference / case (s)", "inference_seconds", lambda v: f"{v:.2f}"),
)


def markdown_table(results: dict[str, dict[str, Measurement]]) -> str:
    """One row per plan and network; each measured figure followed by its ratio to the reference ("n/a" where
    the reference was not measured: an interrupted run)."""
    first = next(iter(next(iter(results.values())).values()))
    columns = [c for c in COLUMNS if getattr(first, c[1]) is not None]
    header = ["plan", "network"] + [part for title, _, _ in columns for part in (title, "x ref")]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for plan_label, measurements in results.items():
        reference = measurements.get(REFERENCE)
        for name, measurement in measurements.items():
            cells = [plan_label, name]
            for _, attribute, formatted in columns:
                value = getattr(measurement, attribute)
                reference_value = getattr(reference, attribute) if reference else 0
                ratio = f"{value / reference_value:.2f}" if reference_value > 0 else "n/a"
                cells += [formatted(value), ratio]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_chart(results: dict[str, dict[str, Measurement]], path: Path) -> None:
    """Bar chart (PNG): per plan, each network's ratio to the reference for time, memory, FLOPs, inference."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2 * len(results)))
    figure.subplots_adjust(hspace=0.6)
    metrics = [("train step", "step_seconds"), ("peak memory", "peak_mib"), ("GFLOPs", "gflops"),
               ("inference", "inference_seconds")]
    for axes, (plan_label, measurements) in zip(np.atleast_1d(figure.subplots(len(results), 1)), results.items()):
        reference = measurements[REFERENCE]
        shown = [(title, attribute) for title, attribute in metrics if getattr(reference, attribute) is not None]
        names = [name for name in measurements if name != REFERENCE]
        width = 0.8 / len(shown)
        for i, (title, attribute) in enumerate(shown):
            ratios = [getattr(measurements[name], attribute) / max(getattr(reference, attribute), 1e-9)
                      for name in names]
            axes.bar(np.arange(len(names)) + i * width, ratios, width, label=title)
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_yscale("log")
        axes.set_xticks(np.arange(len(names)) + width * (len(shown) - 1) / 2,
                        [name.removeprefix("nnUNetTrainer") for name in names])
        axes.set_ylabel("x nnU-Net's U-Net (log)")
        axes.set_title(plan_label, fontsize=9)
        axes.legend(fontsize=7)
    figure.savefig(path, dpi=110, bbox_inches="tight")


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


def gaussian_attention_table(device: torch.device, steps: int) -> str:
    """Our vectorised Gaussian axial attention against the authors' per-position loop, same weights."""
    from functools import partial

    from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention

    rows = ["| grid | vectorised (ms) | loop (ms) | loop / vectorised | max abs difference |", "|---|---|---|---|---|"]
    for size in (14, 28):
        block = GaussianAxialAttention(64).to(device)
        tokens = torch.randn(2, size, size, 64, device=device)
        with torch.no_grad():
            difference = (block(tokens) - gaussian_axial_attention_loop(block, tokens)).abs().max().item()
            fast = median_seconds(partial(block, tokens), steps, device)
            slow = median_seconds(partial(gaussian_axial_attention_loop, block, tokens), max(1, steps // 5), device)
        rows.append(f"| {size}x{size} | {fast * 1e3:.2f} | {slow * 1e3:.1f} | {slow / fast:.0f}x | {difference:.1e} |")
    return "\n".join(rows)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", nargs="+", choices=sorted(PLAN_PRESETS), default=None,
                        help="built-in plans (default: acdc-2d acdc-3d_fullres when --plans is not given)")
    parser.add_argument("--plans", help="an nnUNetPlans.json (its dataset.json beside it gives channels and classes)")
    parser.add_argument("--configuration", nargs="+", default=["2d", "3d_fullres"],
                        help="configurations of --plans (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"instead of the plan's batch size (default: the plan's on a GPU, at most "
                             f"{CPU_BATCH_SIZE} on a CPU)")
    parser.add_argument("--trainers", nargs="+", default=None, help="a subset of the trainers (default: all)")
    parser.add_argument("--no-inference", action="store_true", help="skip the sliding-window inference timing")
    parser.add_argument("--output", default="benchmark_results", help="folder for table and chart (%(default)s)")
    parser.add_argument("--gaussian-axial", action="store_true",
                        help="also time Gaussian axial attention against the authors' per-position loop")


def plans_from_arguments(args: argparse.Namespace) -> list[BenchmarkPlan]:
    if args.plans:
        if args.preset:
            raise ValueError("give either --plans or --preset, not both")
        return [BenchmarkPlan.from_plans_file(args.plans, configuration) for configuration in args.configuration]
    return [PLAN_PRESETS[name] for name in args.preset or ("acdc-2d", "acdc-3d_fullres")]


def cpu_batch_note(plans: Sequence[BenchmarkPlan], device: str, batch_size: int | None) -> str | None:
    """What a CPU run without ``--batch-size`` says about the batch it runs at, where that is not the plan's."""
    reduced = [plan for plan in plans if batch_size_for(plan, device, batch_size) != plan.batch_size]
    if not reduced:
        return None
    planned = ", ".join(f"{plan.name} {plan.batch_size}" for plan in reduced)
    return (f"on a CPU each plan runs at batch {CPU_BATCH_SIZE} rather than its planned batch ({planned}), which "
            f"takes hours per network on a CPU; ratios to the reference stay comparable. Pass --batch-size N to "
            f"choose the batch")


def write_report(output: Path, stem: str, report: str, results: dict[str, dict[str, Measurement]]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{stem}.md").write_text(report)
    (output / f"{stem}.json").write_text(json.dumps(
        {plan: {name: vars(m) for name, m in measured.items()} for plan, measured in results.items()}, indent=2))


def run_from_arguments(args: argparse.Namespace) -> str:
    """Run the benchmark the arguments ask for; print and save the table and chart; return the markdown. On
    Ctrl-C, print and save the rows measured so far as ``benchmark_interrupted`` and raise
    :class:`BenchmarkInterrupted`."""
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    plans = plans_from_arguments(args)
    device = torch.device(args.device)
    note = cpu_batch_note(plans, args.device, args.batch_size)
    if note:
        progress(note)
    sections = []
    if args.gaussian_axial:
        sections += [f"## Gaussian axial attention, 64 channels, batch 2 ({device_description(device)})",
                     gaussian_attention_table(device, args.steps * 4)]
    step_kind = "AMP" if device.type == "cuda" else "fp32"
    heading = (f"## Networks on nnU-Net plans ({device_description(device)}; train step {step_kind}, "
               f"median of {args.steps})")
    output = Path(args.output)
    try:
        results = run_benchmark(plans, args.device, args.steps, args.batch_size, args.trainers, not args.no_inference)
    except BenchmarkInterrupted as interrupted:
        if interrupted.results:
            report = "\n\n".join([*sections, heading + ": INTERRUPTED, the networks measured before Ctrl-C",
                                   markdown_table(interrupted.results)]) + "\n"
            write_report(output, "benchmark_interrupted", report, interrupted.results)
            print(report)
        raise
    report = "\n\n".join([*sections, heading, markdown_table(results)]) + "\n"
    write_report(output, "benchmark", report, results)
    ratio_chart(results, output / "benchmark.png")
    print(report)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run_from_arguments(parser.parse_args(argv))


if __name__ == "__main__":
    main()
