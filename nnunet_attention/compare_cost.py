"""``compare --with-cost``: the benchmark's cost of each compared model's network on the model's own plan (its
folder's ``plans.json``), measured beside nnU-Net's U-Net on the same plan in the same run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .compare import Model

#: cost columns: (column, benchmark Measurement attribute, relative to nnU-Net's U-Net)
COST_COLUMNS = (("params (M)", "parameters", False), ("GFLOPs / patch", "gflops", False),
                ("train step x U-Net", "step_seconds", True), ("peak memory x U-Net", "peak_mib", True))


def cost_of_models(models: list[Model], results_folder: Path, dataset_name: str, device: str,
                   steps: int) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per model the benchmark's cost on its own plan (the model folder's plans.json), each network in a fresh
    process beside nnU-Net's U-Net on the same plan: parameters, GFLOPs, step-time and memory ratios."""
    from .benchmark import run_benchmark
    from .planned_configuration import PlannedConfiguration
    from .registry import REFERENCE_TRAINER, base_trainer

    costs, messages = {}, []
    for configuration in dict.fromkeys(model.configuration for model in models):
        chosen = [m for m in models if m.configuration == configuration
                  and (m.folder(results_folder, dataset_name) / "plans.json").is_file()]
        if not chosen:
            continue
        plan = PlannedConfiguration.from_plans_file(chosen[0].folder(results_folder, dataset_name) / "plans.json",
                                                    configuration)
        networks = {m.name: base_trainer(m.trainer) for m in chosen}
        messages += [f"{name}: no registered network to measure its cost" for name, n in networks.items() if not n]
        ours = sorted({n for n in networks.values() if n and n != REFERENCE_TRAINER})
        # per network, its measurement and the reference's on the same patch (a network that needs a patch of
        # other multiples is measured on the plan's patch rounded up, beside nnU-Net's U-Net there)
        measured = {}
        for rows in run_benchmark([plan], device, steps, None, ours, with_inference=False).values():
            for network, row in rows.items():
                measured.setdefault(network, (row, rows[REFERENCE_TRAINER]))
        for name, network in networks.items():
            if network:
                row, reference = measured[network]
                costs[name] = {column: getattr(row, attribute) / (getattr(reference, attribute) if relative else 1)
                               for column, attribute, relative in COST_COLUMNS}
                costs[name]["params (M)"] /= 1e6
    return costs, messages
