"""Side-by-side benchmark: every trainer's network beside nnU-Net's own U-Net on the same plan, in one run.

Per network (each measured in a fresh process, so CPU peak memory is its own):

- parameters;
- forward GFLOPs for one patch (``torch.utils.flop_counter``; attention counted through SDPA's math
  backend, which the counter sees as matmuls: fused kernels do the same multiply-adds);
- training-step time as nnU-Net trains on the device: the trainer's own step (its network, loss, optimizer and
  grad scaler, :mod:`nnunet_attention.trainer_step`; median of ``--steps`` after two warm-up steps): fp32 on CPU;
  on CUDA with AMP (fp16 autocast + GradScaler) and with AMP + ``torch.compile``;
- peak memory of those steps (CUDA: ``max_memory_allocated``; CPU: the process' peak resident memory
  above what it held before the steps, so weights and imports are not counted), and beside it the estimate
  :mod:`nnunet_attention.memory_estimate` computes without running the step (what ``nnunet-attention plan``
  uses; fp16 autocast on CUDA, float32 on CPU, as measured);
- sliding-window inference time for one case of the plan's median size (nnU-Net's predictor, Gaussian
  weighting, step 0.5, no mirroring: test-time mirroring multiplies every network's time alike).

The reference is nnU-Net's own trainer (``nnUNetTrainer``): the network the plan names. Plans come from
``-p/--plans nnUNetPlans.json`` (with its dataset.json beside it for channels and classes) or from the presets
in :mod:`nnunet_attention.plan_presets`. Output (:mod:`nnunet_attention.benchmark_report`): a markdown table
(printed, and saved with a bar chart of the ratios to the reference as PNG in ``--output``).

On a CPU each plan runs at batch :data:`CPU_BATCH_SIZE` unless ``--batch-size`` says otherwise (nnU-Net's GPU
batch, e.g. 56 on ACDC 2d, takes hours per network on a CPU), and the run says so. Progress goes to stderr, one
line per network. Ctrl-C stops the run cleanly: the rows already measured are printed and saved as
``benchmark_interrupted.md`` / ``.json`` (never under the names of a complete run).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .isolated_call import call_isolated
from .memory_estimate import training_step_peak_bytes
from .nnunet_commands import nnunet_chatter_hidden
from .planned_configuration import PlannedConfiguration
from .process_memory import keep_freed_memory, peak_resident_mib, reset_peak_resident, resident_mib
from .registry import (
    REFERENCE_TRAINER,
    UnknownTrainerError,
    attention_trainers,
    did_you_mean,
    display_name,
    our_trainers,
    patch_divisor,
)
from .trainer_step import build_network, constructed_trainer, prepare_training_step

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
    #: the timed training steps' (slowest - fastest) / median; None for a single step
    step_spread: float | None = None

    @property
    def flop_rate(self) -> float:
        """Forward GFLOPs of one patch per second of training step: at the same plan and batch, its ratio to the
        reference is the ratio of the FLOP/s the two training steps achieve (how well the hardware is used)."""
        return self.gflops / self.step_seconds


def median_seconds(run: Callable[[], object], steps: int, device: torch.device, warm_up: int = WARM_UP_STEPS) -> float:
    """Median wall time of ``run`` over ``steps`` calls after ``warm_up`` untimed ones (CUDA synchronised)."""
    return statistics.median(step_times(run, steps, device, warm_up))


def step_times(run: Callable[[], object], steps: int, device: torch.device, warm_up: int = WARM_UP_STEPS
               ) -> list[float]:
    """Wall time of each of ``steps`` calls of ``run`` after ``warm_up`` untimed ones (CUDA synchronised)."""
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
    return times


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


def inference_seconds(trainer: str, plan: PlannedConfiguration, device: torch.device) -> float:
    """Sliding-window prediction of one random case of the plan's median size with nnU-Net's predictor."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    network = build_network(trainer, plan, for_training=False)
    plans_manager = plan.plans_manager()
    with nnunet_chatter_hidden():  # nnU-Net prints that CPU prediction runs off the device
        predictor = nnUNetPredictor(device=device, use_mirroring=False,
                                    perform_everything_on_device=device.type == "cuda", allow_tqdm=False, verbose=False)
    predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration(plan.configuration),
                                    [network.state_dict()], plan.dataset_json, trainer, None)
    case = torch.randn(plan.input_channels, *plan.case_shape)
    return median_seconds(lambda: predictor.predict_sliding_window_return_logits(case), 1, device, warm_up=1)


def measure(trainer: str, plan: PlannedConfiguration, device_name: str, steps: int, batch_size: int,
            with_inference: bool) -> Measurement:
    """Every figure of one trainer's network on one plan, in the calling process (a fresh one: the training steps
    run first, so the CPU peak they reach is theirs)."""
    device = torch.device(device_name)
    amp = device.type == "cuda"
    if device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(0)
    with constructed_trainer(trainer, plan, device) as constructed:
        step = prepare_training_step(constructed, batch_size, amp)
        if amp:
            torch.cuda.reset_peak_memory_stats(device)
        reset_peak_resident()
        resident_before = resident_mib()
        times = step_times(step, steps, device)
        step_seconds = statistics.median(times)
        if amp:
            peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peak_mib = peak_resident_mib() - resident_before
        network = step.network
        parameters = sum(p.numel() for p in network.parameters())
        compiled_seconds = None
        if device.type == "cuda":  # nnU-Net compiles the network on CUDA by default (nnUNet_compile)
            compiled = prepare_training_step(constructed, batch_size, amp, compile_network=True)
            compiled_seconds = median_seconds(compiled, steps, device)
        flops = forward_flops(network, torch.randn(1, plan.input_channels, *plan.patch_size, device=device))
    inference = inference_seconds(trainer, plan, device) if with_inference else None
    estimate_mib = training_step_peak_bytes(trainer, plan, batch_size, half_precision=amp) / 2**20
    spread = (max(times) - min(times)) / step_seconds if len(times) > 1 else None
    return Measurement(parameters, flops / 1e9, step_seconds, peak_mib, inference, estimate_mib, compiled_seconds,
                       spread)


#: a network whose timed steps differ by more than this fraction of their median was disturbed while measured
UNSTABLE_SPREAD = 0.5
#: a 1-minute load average above this fraction of the usable cores when a run starts: something else is running
BUSY_LOAD_PER_CORE = 0.5


def untrustworthy_timings(results: dict[str, dict[str, Measurement]], load_at_start: float, cores: int
                          ) -> list[str]:
    """Why the timings of ``results`` (and their ratios) cannot be trusted, if they cannot: the machine was busy
    when the run started (``load_at_start``, the 1-minute load average, on ``cores``), or a network's timed steps
    spread by more than :data:`UNSTABLE_SPREAD` of their median (another process took the cores meanwhile)."""
    reasons = []
    if load_at_start > BUSY_LOAD_PER_CORE * cores:
        reasons.append(f"the machine was busy when the benchmark started (load average {load_at_start:.1f} on "
                       f"{cores} cores)")
    unstable = [f"{display_name(name)} on {label} ({measurement.step_spread:.0%})"
                for label, rows in results.items() for name, measurement in rows.items()
                if measurement.step_spread is not None and measurement.step_spread > UNSTABLE_SPREAD]
    if unstable:
        reasons.append(f"the timed steps spread by more than {UNSTABLE_SPREAD:.0%} of their median for "
                       f"{', '.join(unstable)}")
    return reasons


def progress(message: str) -> None:
    print(f"[nnunet-attention benchmark] {message}", file=sys.stderr, flush=True)


def trainers_to_measure(trainers: Sequence[str] | None = None) -> list[str]:
    """The reference (:data:`~nnunet_attention.registry.REFERENCE_TRAINER`), then the requested trainers of this
    package, removal controls included (default: every attention trainer, sorted); an
    :class:`~nnunet_attention.registry.UnknownTrainerError` for another name."""
    ours = our_trainers()
    unknown = [name for name in trainers or () if name not in ours]
    if unknown:
        hints = "".join(f"{name!r}: {did_you_mean(name, ours)}" for name in unknown)
        raise UnknownTrainerError(f"the benchmark measures this package's trainers; unknown {hints}"
                                  f"registered: {', '.join(sorted(ours))}")
    return [REFERENCE_TRAINER, *(trainers or sorted(attention_trainers()))]


def batch_size_for(plan: PlannedConfiguration, device: str, batch_size: int | None) -> int:
    """``batch_size`` if given; else the plan's batch on a GPU and at most :data:`CPU_BATCH_SIZE` on a CPU."""
    if batch_size is not None:
        return batch_size
    return min(plan.batch_size, CPU_BATCH_SIZE) if torch.device(device).type == "cpu" else plan.batch_size


def networks_per_patch(plan: PlannedConfiguration, names: Sequence[str]
                       ) -> list[tuple[PlannedConfiguration, list[str]]]:
    """``plan`` rounded up to each network's ``patch_divisor`` (:meth:`PlannedConfiguration.fitted_to`; the plan
    itself for most), with the reference and the networks of ``names`` measured on it: a network that needs another
    patch is compared with nnU-Net's U-Net on that patch."""
    groups = {tuple(plan.patch_size): (plan, [names[0]])}  # the plan's own patch first
    for name in names[1:]:
        fitted = plan.fitted_to(patch_divisor(name))
        groups.setdefault(tuple(fitted.patch_size), (fitted, [names[0]]))[1].append(name)
    return [(fitted, measured) for fitted, measured in groups.values()
            if len(measured) > 1 or len(names) == 1]


def run_benchmark(plans: Sequence[PlannedConfiguration], device: str, steps: int, batch_size: int | None = None,
                  trainers: Sequence[str] | None = None,
                  with_inference: bool = True) -> dict[str, dict[str, Measurement]]:
    """plan label -> trainer name -> measurement; every network in a fresh process
    (:func:`~nnunet_attention.isolated_call.call_isolated`), announced on stderr. Ctrl-C raises
    :class:`BenchmarkInterrupted` with the measurements taken so far."""
    names = trainers_to_measure(trainers)
    results: dict[str, dict[str, Measurement]] = {}
    try:
        for plan in plans:
            batch = batch_size_for(plan, device, batch_size)
            for fitted, measured in networks_per_patch(plan, names):
                label = fitted.label(batch)
                results[label] = {}
                for number, name in enumerate(measured, start=1):
                    progress(f"{label}: {display_name(name)} ({number}/{len(measured)}) ...")
                    start = time.perf_counter()
                    results[label][name] = call_isolated(measure, name, fitted, device, steps, batch, with_inference)
                    progress(f"{label}: {display_name(name)} done in {time.perf_counter() - start:.0f} s")
    except KeyboardInterrupt:
        raise BenchmarkInterrupted({label: rows for label, rows in results.items() if rows}) from None
    return results


def cpu_batch_note(plans: Sequence[PlannedConfiguration], device: str, batch_size: int | None) -> str | None:
    """What a CPU run without ``--batch-size`` says about the batch it runs at, where that is not the plan's
    (nothing where the batch was chosen)."""
    reduced = [plan for plan in plans if batch_size_for(plan, device, batch_size) != plan.batch_size]
    if batch_size is not None or not reduced:
        return None
    planned = ", ".join(f"{plan.name} {plan.batch_size}" for plan in reduced)
    return (f"on a CPU each plan runs at batch {CPU_BATCH_SIZE} rather than its planned batch ({planned}), which "
            f"takes hours per network on a CPU; ratios to the reference stay comparable. Pass --batch-size N to "
            f"choose the batch")
