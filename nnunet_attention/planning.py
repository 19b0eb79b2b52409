"""Attention-aware planning: nnU-Net's experiment planner, sizing patch and batch for a trainer's network.

nnU-Net searches the patch (shrinking it axis by axis from the median shape) until its plain U-Net trains at
the minimum batch of 2 within the GPU memory target, then fills the remaining memory with batch. Its memory
measure is the sum of the U-Net's conv feature maps (``compute_conv_feature_map_size``), compared with a
reference calibrated on GPUs (8 GB at batch 12 in 2D, 2 in 3D). Our trainers' networks hold different
memory on the same candidate.

:func:`attention_aware_planner` subclasses the planner the user picks (nnU-Net's default or a ResEnc planner)
and changes one thing: the estimate of every candidate is nnU-Net's own, multiplied by the ratio of the
trainer's training-step peak to the planned U-Net's on that candidate, both at batch 2 under fp16 autocast
(:func:`~nnunet_attention.memory_estimate.training_step_peak_bytes`). nnU-Net's accept/reject rule, batch
rule, 5% dataset cap, 3d_lowres search and everything else run unchanged; for the plain U-Net the ratio is 1
and the plans are nnU-Net's. A candidate the trainer's network cannot be built on counts as too large, so
the search moves on to smaller patches.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

from nnunet_attention.architectures.plan import patch_multiples, rounded_up, total_strides

from .errors import UsageError
from .memory_estimate import training_step_peak_bytes
from .planned_configuration import PlannedConfiguration
from .plans_fabricator import dataset_json_for, plans_for
from .registry import REFERENCE_TRAINER, base_trainer, did_you_mean, known_trainer_names, patch_divisor

#: the batch at which the two networks are compared: nnU-Net's minimum, the batch its patch search sizes for
RATIO_BATCH_SIZE = 2
#: the plans key where a plan made here records how
PLANNING_KEY = "attention_aware_planning"
#: the configuration key where a plan made here records its memory estimate
ESTIMATE_KEY = "estimated_training_memory"


#: cache_key of a candidate -> (trainer -> its training-step peak on it): nnU-Net's search asks for the same
#: candidate more than once
_PEAKS: dict[str, dict[str, float]] = {}


def memory_ratio(trainer_name: str, candidate: PlannedConfiguration) -> float:
    """Training-step peak of ``trainer_name``'s network (a known trainer, see :mod:`nnunet_attention.registry`)
    over that of nnU-Net's U-Net on ``candidate`` (batch 2, fp16 autocast), both on the candidate's patch rounded
    up to the network's ``patch_divisor``; ``inf`` where the trainer's network cannot be built on it."""
    if trainer_name == REFERENCE_TRAINER:
        return 1.0
    candidate = candidate.fitted_to(patch_divisor(trainer_name))
    peaks = _PEAKS.setdefault(candidate.cache_key(), {})
    for name in (trainer_name, REFERENCE_TRAINER):
        if name not in peaks:
            try:
                peaks[name] = training_step_peak_bytes(name, candidate, RATIO_BATCH_SIZE)
            except ValueError:  # the plan's checks: a patch the architecture cannot run
                peaks[name] = math.inf
    return peaks[trainer_name] / peaks[REFERENCE_TRAINER]


def candidate_plan(patch_size, input_channels: int, output_channels: int, arch_class_name: str, arch_kwargs: dict,
                   arch_kwargs_req_import) -> PlannedConfiguration:
    """One candidate of nnU-Net's search (its arguments to ``static_estimate_VRAM_usage``) as a planned
    configuration: the candidate's U-Net at the patch, a dataset of ``input_channels`` and ``output_channels``."""
    patch = [int(size) for size in patch_size]
    plans = plans_for({}, patch, configuration="candidate", batch_size=RATIO_BATCH_SIZE)
    plans["configurations"]["candidate"]["architecture"] = {
        "network_class_name": arch_class_name, "arch_kwargs": _frozen_json(arch_kwargs),
        "_kw_requires_import": list(arch_kwargs_req_import)}
    return PlannedConfiguration("candidate", plans, "candidate", dataset_json_for(input_channels, output_channels),
                                tuple(patch), "nnU-Net's patch search")


def _frozen_json(value):
    """``value`` with tuples and numpy numbers as JSON types, so equal candidates have equal cache keys."""
    if isinstance(value, dict):
        return {key: _frozen_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_frozen_json(item) for item in value]
    return value.item() if hasattr(value, "item") else value


def attention_aware_planner(base_planner: type, trainer_name: str) -> type:
    """``base_planner`` (an nnU-Net ``ExperimentPlanner`` class) whose memory estimate is that of
    ``trainer_name``'s network (see the module docstring); the plans it writes record the trainer under
    :data:`PLANNING_KEY`. ``trainer_name``: a known trainer or a variant named after one (its base trainer's
    network is the one planned for)."""
    network = base_trainer(trainer_name)
    divisor = patch_divisor(network)

    class AttentionAwarePlanner(base_planner):
        def static_estimate_VRAM_usage(self, patch_size, input_channels, output_channels, arch_class_name,
                                       arch_kwargs, arch_kwargs_req_import):
            """nnU-Net's estimate for its planned U-Net on this candidate, times the trainer's memory ratio."""
            plain = base_planner.static_estimate_VRAM_usage(patch_size, input_channels, output_channels,
                                                            arch_class_name, arch_kwargs, arch_kwargs_req_import)
            candidate = candidate_plan(patch_size, input_channels, output_channels, arch_class_name, arch_kwargs,
                                       arch_kwargs_req_import)
            return plain * memory_ratio(network, candidate)

        def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset,
                                        _cache):
            """nnU-Net's configuration, plus :data:`ESTIMATE_KEY`: the trainer's memory ratio on the planned
            patch and its estimated training memory at the planned batch, in GB on nnU-Net's calibration."""
            plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                       approximate_n_voxels_dataset, _cache)
            if divisor > 1:
                self.fit_patch(plan, divisor, median_shape, approximate_n_voxels_dataset)
            architecture = plan["architecture"]
            arguments = (plan["patch_size"], len(self.dataset_json["channel_names"]),
                         len(self.dataset_json["labels"]), architecture["network_class_name"],
                         architecture["arch_kwargs"], architecture["_kw_requires_import"])
            reference_value, reference_batch = self.unet_reference(len(plan["patch_size"]))
            gigabytes_per_sample = (self.UNet_reference_val_corresp_GB * self.static_estimate_VRAM_usage(*arguments)
                                    / (reference_value * reference_batch))
            ratio = memory_ratio(network, candidate_plan(*arguments))
            plan[ESTIMATE_KEY] = {"memory_ratio_to_planned_unet": ratio,
                                  "gigabytes_at_batch_2": 2 * gigabytes_per_sample,
                                  "gigabytes_at_planned_batch": plan["batch_size"] * gigabytes_per_sample}
            return plan

        def unet_reference(self, spatial_dims: int) -> tuple[float, int]:
            """nnU-Net's calibration for ``spatial_dims``: its U-Net's estimate that filled
            ``UNet_reference_val_corresp_GB`` of GPU memory, and the batch it was measured at."""
            if spatial_dims == 2:
                return self.UNet_reference_val_2d, self.UNet_reference_val_corresp_bs_2d
            return self.UNet_reference_val_3d, self.UNet_reference_val_corresp_bs_3d

        def fit_patch(self, plan: dict, divisor: int, median_shape, approximate_n_voxels_dataset: float) -> None:
            """Make ``plan``'s patch fit a network that needs every axis divisible by ``divisor``, as nnU-Net's
            search makes it fit its U-Net's strides: each axis rounded up to a multiple of both (a median axis
            shorter than the multiple, e.g. 20 slices for 32, is padded as nnU-Net pads any image smaller than
            the patch), then, while the estimate at batch 2 exceeds the memory target, the axis largest relative
            to the median shape shrunk by its multiple (never below one multiple); the batch from the final
            estimate by nnU-Net's rule (the target's headroom, at most 5% of the dataset's voxels, at least
            ``UNet_min_batch_size``). The U-Net's topology stays nnU-Net's: any multiple of its total stride
            runs through it."""
            architecture = plan["architecture"]
            arguments = (len(self.dataset_json["channel_names"]), len(self.dataset_json["labels"]),
                         architecture["network_class_name"], architecture["arch_kwargs"],
                         architecture["_kw_requires_import"])
            multiples = patch_multiples(total_strides(architecture["arch_kwargs"]["strides"]), divisor)
            patch = rounded_up(plan["patch_size"], multiples)
            reference_value, reference_batch = self.unet_reference(len(patch))
            reference = reference_value * self.UNet_vram_target_GB / self.UNet_reference_val_corresp_GB
            current = self.static_estimate_VRAM_usage(patch, *arguments)
            while current / reference_batch * 2 > reference:
                reducible = [axis for axis in range(len(patch)) if patch[axis] > multiples[axis]]
                if not reducible:
                    break
                axis = max(reducible, key=lambda a: patch[a] / median_shape[a])
                patch[axis] -= multiples[axis]
                current = self.static_estimate_VRAM_usage(patch, *arguments)
            batch = round(reference / current * reference_batch)
            five_percent = round(approximate_n_voxels_dataset * self.max_dataset_covered / math.prod(patch))
            plan["patch_size"] = tuple(patch)
            plan["batch_size"] = max(min(batch, five_percent), self.UNet_min_batch_size)

        def save_plans(self, plans: dict) -> None:
            plans[PLANNING_KEY] = {"trainer": trainer_name, "base_planner": base_planner.__name__,
                                   "gpu_memory_target_in_gb": self.UNet_vram_target_GB}
            super().save_plans(plans)

    AttentionAwarePlanner.__name__ = AttentionAwarePlanner.__qualname__ = f"{base_planner.__name__}For{trainer_name}"
    return AttentionAwarePlanner


def default_plans_name(trainer_name: str, base_planner: type) -> str:
    """The planner's own plans name and the trainer's: ``nnUNetPlans_MTUNet`` for ``nnUNetTrainerMTUNet`` with
    nnU-Net's default planner, ``nnUNetResEncUNetMPlans_MTUNet`` with ``nnUNetPlannerResEncM``
    (``..._UNet`` for ``nnUNetTrainer``): beside nnU-Net's own plans, never over them."""
    planner_plans_name = inspect.signature(base_planner.__init__).parameters["plans_name"].default
    return f"{planner_plans_name}_{trainer_name.removeprefix('nnUNetTrainer') or 'UNet'}"


def plan_for_trainer(dataset_id: int, trainer_name: str, gpu_memory_target_in_gb: float | None = None,
                     planner_name: str = "ExperimentPlanner", plans_name: str | None = None,
                     configurations: tuple[str, ...] = ("2d", "3d_fullres", "3d_lowres"), preprocess: bool = False,
                     num_processes: int = 4) -> tuple[dict, str]:
    """Plan dataset ``dataset_id`` (fingerprint extracted, as for ``nnUNetv2_plan_experiment``) for
    ``trainer_name`` with nnU-Net's planner ``planner_name``; write ``nnUNet_preprocessed/DatasetXXX/<plans
    name>.json``; with ``preprocess``, preprocess ``configurations`` with nnU-Net's preprocessing. Returns the
    plans and their name. ``nnUNetTrainer`` plans for nnU-Net's own U-Net (nnU-Net's plans)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset, preprocess_dataset

    base_planner = require_plannable(dataset_id, trainer_name, planner_name, gpu_memory_target_in_gb)
    plans_name = plans_name or default_plans_name(trainer_name, base_planner)
    plans, plans_identifier = plan_experiment_dataset(
        dataset_id, attention_aware_planner(base_planner, trainer_name), gpu_memory_target_in_gb,
        overwrite_plans_name=plans_name)
    if preprocess:
        preprocess_dataset(dataset_id, plans_identifier, list(configurations), [num_processes] * len(configurations))
    return plans, plans_identifier


def require_plannable(dataset_id: int, trainer_name: str, planner_name: str,
                      gpu_memory_target_in_gb: float | None) -> type:
    """nnU-Net's planner class ``planner_name``; a :class:`UsageError` saying what to do where the arguments of
    :func:`plan_for_trainer` cannot plan: an unknown trainer or planner, a target that is not positive, no
    fingerprint (:func:`require_fingerprint`)."""
    import nnunetv2
    from batchgenerators.utilities.file_and_folder_operations import join
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    if base_trainer(trainer_name) is None:
        raise UsageError(f"unknown trainer {trainer_name!r}: {did_you_mean(trainer_name, known_trainer_names())}"
                         f"plan for one of {', '.join(known_trainer_names())}")
    if gpu_memory_target_in_gb is not None and gpu_memory_target_in_gb <= 0:
        raise UsageError(f"-gpu_memory_target must be positive (GB), got {gpu_memory_target_in_gb}")
    base_planner = recursive_find_python_class(join(nnunetv2.__path__[0], "experiment_planning"), planner_name,
                                               current_module="nnunetv2.experiment_planning")
    if base_planner is None:
        raise UsageError(f"nnU-Net has no experiment planner {planner_name!r} (e.g. ExperimentPlanner, "
                         f"nnUNetPlannerResEncM, nnUNetPlannerResEncL)")
    require_fingerprint(dataset_id)
    return base_planner


def require_fingerprint(dataset_id: int) -> None:
    """A :class:`UsageError` saying what to do where nnU-Net's planner cannot run: ``nnUNet_preprocessed`` unset,
    no dataset with this ID, or no fingerprint extracted for it yet."""
    from .nnunet_layout import dataset_name, nnunet_folder

    preprocessed = nnunet_folder("nnUNet_preprocessed")
    dataset = dataset_name(dataset_id)
    if not (preprocessed / dataset / "dataset_fingerprint.json").is_file():
        raise UsageError(f"{dataset} has no fingerprint in {preprocessed / dataset}: run nnUNetv2_extract_fingerprint "
                         f"-d {dataset_id} first (or nnUNetv2_plan_and_preprocess -d {dataset_id}, which includes it)")


def plans_summary(plans: dict) -> str:
    """Markdown: per configuration the planned patch, batch and stages, and where this package planned it, the
    trainer's estimated training-step memory as a ratio to nnU-Net's U-Net on the same candidate (what made the
    patch and batch differ from nnU-Net's) and in GB at the planned batch."""
    rows = ["| configuration | patch | batch | stages | memory x U-Net | estimated GB at batch |",
            "|---|---|---|---|---|---|"]
    for name, configuration in plans["configurations"].items():
        if "patch_size" in configuration:
            stages = configuration["architecture"]["arch_kwargs"]["n_stages"]
            estimate = configuration.get(ESTIMATE_KEY)
            memory = (f"{estimate['memory_ratio_to_planned_unet']:.2f} | {estimate['gigabytes_at_planned_batch']:.1f}"
                      if estimate else "- | -")
            rows.append(f"| {name} | {' x '.join(map(str, configuration['patch_size']))} | "
                        f"{configuration['batch_size']} | {stages} | {memory} |")
    return "\n".join(rows)


def next_commands(dataset_id: int, trainer: str, plans_name: str, configurations: Sequence[str],
                  preprocessed: bool) -> list[str]:
    """What to run after planning: nnU-Net's preprocessing for these plans unless ``preprocessed`` (training reads
    the preprocessed data of the plans it is given, which do not exist yet), then the training."""
    commands = [] if preprocessed else [
        f"preprocess with: nnUNetv2_preprocess -d {dataset_id} -plans_name {plans_name} -c {' '.join(configurations)}"
        f" (or plan again with --preprocess)"]
    return [*commands, f"train with: nnUNetv2_train {dataset_id} CONFIGURATION FOLD -tr {trainer} -p {plans_name}"]


def require_cuda_for_verify() -> None:
    """A ValueError saying what to do where ``--verify`` cannot run (no CUDA device)."""
    import torch

    if not torch.cuda.is_available():
        raise UsageError("--verify runs a training step on CUDA, but torch sees no CUDA device: leave --verify out "
                         "here and plan (or verify) on the GPU machine")


def verify_on_cuda(dataset_id: int, plans_name: str, trainer_name: str, configurations: tuple[str, ...],
                   gpu_memory_target_in_gb: float) -> list[str]:
    """One real training step (fp16 AMP, as nnU-Net trains) of each planned configuration on CUDA: per
    configuration a line with ``torch.cuda.max_memory_allocated`` beside the target. A UsageError without CUDA."""
    import torch

    from .nnunet_layout import dataset_name, plans_file

    require_cuda_for_verify()
    plans_path = plans_file(dataset_name(dataset_id), plans_name)
    lines = []
    for configuration in configurations:
        plan, peak_gb = training_step_peak_on_cuda(plans_path, trainer_name, configuration)
        lines.append(f"{configuration}: one training step at batch {plan.batch_size}, patch {plan.patch_size} "
                     f"allocated at most {peak_gb:.2f} GB on {torch.cuda.get_device_name()} "
                     f"(target {gpu_memory_target_in_gb} GB)")
    return lines


def training_step_peak_on_cuda(plans_path, trainer_name: str, configuration: str) -> tuple[PlannedConfiguration,
                                                                                          float]:
    """``configuration`` of the plans file ``plans_path`` and the GB that one fp16 AMP training step of
    ``trainer_name`` at its planned batch allocated at most on CUDA (``torch.cuda.max_memory_allocated``)."""
    import torch

    from .trainer_step import constructed_trainer, prepare_training_step

    plan = PlannedConfiguration.from_plans_file(plans_path, configuration)
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    with constructed_trainer(trainer_name, plan, device) as trainer:
        prepare_training_step(trainer, plan.batch_size, amp=True)()
    peak_gb = torch.cuda.max_memory_allocated(device) / 2**30
    return plan, peak_gb
