"""``nnunet-attention benchmark``: the plans the arguments name, the run, and the printed and saved report (on
Ctrl-C, the rows measured before it)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import UsageError
from .planned_configuration import PlannedConfiguration


def plans_from_arguments(args: argparse.Namespace) -> list[PlannedConfiguration]:
    """The presets of ``--preset``, or each ``-c`` configuration of ``-p``: a plans file, or with ``-d`` a plans
    name in ``nnUNet_preprocessed`` (as nnU-Net's ``-p``); default: the ACDC presets."""
    from .plan_presets import PLAN_PRESETS

    if args.plans:
        if args.preset:
            raise UsageError("give either -p/--plans or --preset, not both")
        plans_file = Path(args.plans)
        if args.dataset_id is not None and not plans_file.is_file():
            from .nnunet_layout import dataset_name
            from .nnunet_layout import plans_file as plans_file_of

            plans_file = plans_file_of(dataset_name(args.dataset_id), args.plans)
        return [PlannedConfiguration.from_plans_file(plans_file, configuration)
                for configuration in args.configurations]
    if args.dataset_id is not None:
        raise UsageError("-d names the dataset whose plans -p names: give -p too (e.g. -p nnUNetPlans)")
    return [PLAN_PRESETS[name] for name in args.preset or ("acdc-2d", "acdc-3d_fullres")]


def run_from_arguments(args: argparse.Namespace) -> str:
    """Run the benchmark the arguments ask for; print and save the table and chart; return the markdown. On
    Ctrl-C, print and save the rows measured so far as ``benchmark_interrupted`` and raise
    :class:`~nnunet_attention.benchmark.BenchmarkInterrupted`."""
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    from .benchmark import (
        BenchmarkInterrupted,
        cpu_batch_note,
        progress,
        run_benchmark,
        trainers_to_measure,
        untrustworthy_timings,
    )
    from .benchmark_report import device_description, markdown_table, ratio_chart, write_report
    from .devices import resolve_device

    trainers_to_measure(args.trainers)  # a typo fails before anything is measured
    plans = plans_from_arguments(args)
    device_name = resolve_device(args.device)
    import torch

    device = torch.device(device_name)
    note = cpu_batch_note(plans, device_name, args.batch_size)
    if note:
        progress(note)
    sections = []
    if args.gaussian_axial:
        from .gaussian_axial_benchmark import gaussian_attention_table

        sections += [f"## Gaussian axial attention, 64 channels, batch 2 ({device_description(device)})",
                     gaussian_attention_table(device, args.steps * 4)]
    step_kind = "AMP" if device.type == "cuda" else "fp32"
    heading = (f"## Networks on nnU-Net plans ({device_description(device)}; train step {step_kind}, "
               f"median of {args.steps})")
    output = Path(args.output)
    load_at_start, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    try:
        results = run_benchmark(plans, device_name, args.steps, args.batch_size, args.trainers,
                                not args.no_inference)
    except BenchmarkInterrupted as interrupted:
        if interrupted.results:
            report = "\n\n".join([*sections, heading + ": INTERRUPTED, the networks measured before Ctrl-C",
                                  markdown_table(interrupted.results)]) + "\n"
            write_report(output, "benchmark_interrupted", report, interrupted.results)
            print(report)
        raise
    reasons = untrustworthy_timings(results, load_at_start, cores)
    if reasons:
        warning = (f"timings not trustworthy: {'; '.join(reasons)}. The ratios compare steps measured under "
                   f"different loads: run again on an idle machine")
        progress(warning)
        sections.append(f"**Warning: {warning}.**")
    report = "\n\n".join([*sections, heading, markdown_table(results)]) + "\n"
    write_report(output, "benchmark", report, results)
    ratio_chart(results, output / "benchmark.png")
    print(report)
    return report
