"""``nnunet-attention``: the package's command line (demo, synth, verify, attention-maps, benchmark, plan,
train-grid, compare, gpu-check, check-architecture).

Every subcommand spells a concept the way nnU-Net does (``-d -c -tr -p -f -device``, :mod:`.cli_arguments`). A
user's mistake (:class:`~nnunet_attention.errors.UsageError`, or a stock nnU-Net command that failed) is printed
as one message with exit code 2; anything else is a bug and keeps its traceback. Torch and nnU-Net are imported
only by the subcommand that runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .cli_arguments import nnunet_flags
from .devices import DEVICE_CHOICES
from .errors import UsageError
from .nnunet_commands import NNUNetCommandError

FOLDS_0_TO_4 = ["0", "1", "2", "3", "4"]
#: the -device options of the subcommands that pick the device themselves (demo, attention-maps, benchmark)
AUTO_DEVICE = {"default": "auto", "choices": DEVICE_CHOICES, "help": "auto picks cuda when available (default: "
               "%(default)s)"}


def _add_demo_parser(subparsers) -> None:
    flags = nnunet_flags(
        trainer={"default": "nnUNetTrainerAttentionUNet", "help": "trainer class name (default: %(default)s)"},
        configuration={"default": "2d", "choices": ["2d", "3d_fullres"],
                       "help": "nnU-Net configuration (default: %(default)s)"},
        fold={"default": "0", "help": "fold to train, 0-4 or 'all' (default: %(default)s)"},
        device=AUTO_DEVICE,
    )
    parser = subparsers.add_parser(
        "demo", parents=[flags],
        help="synthetic data -> nnU-Net plan/preprocess -> short training -> predict -> evaluate",
        description="Run the whole nnU-Net pipeline with an attention trainer on a built-in synthetic dataset "
        "and print the held-out Dice per label (mean Dice on the last line).",
    )
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=20, help="iterations per epoch (default: %(default)s)")
    parser.add_argument(
        "--workdir",
        default="nnunet_attention_demo",
        help="holds nnUNet_raw, nnUNet_preprocessed, nnUNet_results and the log (default: %(default)s)",
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="show no training progress (the log has it all)")
    shown.add_argument("--verbose", action="store_true",
                       help="show nnU-Net's whole training output instead of one line per epoch")


def _add_synth_parser(subparsers) -> None:
    flags = nnunet_flags(dataset={"type": int, "default": 990, "help": "nnU-Net dataset ID, 1-999 (default: "
                                                                        "%(default)s)"})
    parser = subparsers.add_parser(
        "synth", parents=[flags],
        help="write a synthetic dataset in nnU-Net's raw format",
        description="Write a synthetic dataset (ellipsoid, inclusions that count only inside it, and a cuboid of "
        "the same intensity) into nnUNet_raw, with a held-out imagesTs/labelsTs split. Every option is checked "
        "before anything is written; the dataset appears under its DatasetXXX_ name only once complete.",
    )
    parser.add_argument("--raw", default=None, help="raw folder (default: $nnUNet_raw)")
    parser.add_argument("--name", default="SynthAttention",
                        help="dataset name: letters, digits and '-' (default: %(default)s)")
    parser.add_argument("--shape", type=int, nargs="+", default=[96, 112],
                        help="array shape, Y X (2D) or Z Y X (3D, Z >= 2); Y and X at least 16 (default: %(default)s)")
    parser.add_argument("--spacing", type=float, nargs="+", default=None,
                        help="voxel spacing in mm, one positive value per --shape axis (default: all 1)")
    parser.add_argument("--channels", type=int, default=1,
                        help="number of input channels, 1-4 (default: %(default)s)")
    parser.add_argument("--train", type=int, default=20, help="training cases, at least 5 (default: %(default)s)")
    parser.add_argument("--test", type=int, default=6,
                        help="held-out cases in imagesTs, labelsTs (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=0.25,
                        help="Gaussian noise standard deviation, >= 0 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed, >= 0: the same seed gives the same cases (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")


#: -np of the subcommands that check a dataset (verify, plan)
PROCESSES = {"type": int, "default": None, "dest": "num_processes",
             "help": "worker processes (default: nnU-Net's, $nnUNet_def_n_proc or 8)"}


def _add_verify_parser(subparsers) -> None:
    flags = nnunet_flags(dataset={"type": int, "required": True, "help": "dataset ID"})
    parser = subparsers.add_parser(
        "verify", parents=[flags],
        help="check a raw dataset before spending GPU hours on it: damaged files, labels, geometry",
        description="Read every compressed file of nnUNet_raw/DatasetXXX (imagesTr, labelsTr, imagesTs, labelsTs) "
        "to its end and check each NIfTI file holds the voxels its header declares (a truncated .nii.gz otherwise "
        "reads as an image padded with zeros), then run nnU-Net's integrity check (dataset.json, cases, channels, "
        "label values against dataset.json, shapes, spacings, NaNs). Exit code 2 names every problem found. "
        "'plan' runs the same check before it plans.",
    )
    parser.add_argument("-np", **PROCESSES)


def _run_verify(args: argparse.Namespace) -> int:
    from .dataset_check import verify_dataset

    for line in verify_dataset(args.dataset_id, _num_processes(args.num_processes)):
        print(f"[nnunet-attention verify] {line}")
    return 0


def _num_processes(requested: int | None) -> int:
    """``-np``: the user's, else nnU-Net's default; a :class:`UsageError` below 1."""
    if requested is None:
        from nnunetv2.configuration import default_num_processes

        return default_num_processes
    if requested < 1:
        raise UsageError(f"-np must be at least 1, got {requested}")
    return requested


def _add_attention_maps_parser(subparsers) -> None:
    flags = nnunet_flags(
        fold={"nargs": "+", "default": ["0"], "help": "folds to ensemble (default: 0)"},
        device=AUTO_DEVICE,
    )
    parser = subparsers.add_parser(
        "attention-maps", parents=[flags],
        help="write the attention maps of a trained model for each image, in the image's geometry",
        description="Run a trained model folder like nnUNetv2_predict_from_modelfolder (same preprocessing, "
        "sliding window, mirroring, fold ensemble) and write every attention map per case as NIfTI with the "
        "image's geometry, a PNG overlay on one slice, PNGs for 2D images and a maps.json describing each map.",
    )
    parser.add_argument("-i", required=True, dest="input", help="folder of images named like nnUNet_raw/imagesTs")
    parser.add_argument("-o", required=True, dest="output", help="output folder (one subfolder per case)")
    parser.add_argument("-m", required=True, dest="model_folder",
                        help="trained model folder, e.g. "
                        "nnUNet_results/Dataset027_ACDC/nnUNetTrainerMTUNet__nnUNetPlans__2d")
    parser.add_argument("-chk", default="checkpoint_final.pth", dest="checkpoint",
                        help="checkpoint file name (default: %(default)s)")
    parser.add_argument("--slice", type=int, default=None,
                        help="overlay slice: index along the image's first array axis (default: the middle)")
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation")
    parser.add_argument("-prev_stage_predictions", default=None,
                        help="cascade models (3d_cascade_fullres) only: the folder of the previous stage's "
                        "segmentations of these images, as for nnUNetv2_predict")


def _add_plan_parser(subparsers) -> None:
    flags = nnunet_flags(
        dataset={"type": int, "required": True, "help": "dataset ID"},
        trainer={"required": True, "help": "trainer to plan for, e.g. nnUNetTrainerMTUNet"},
        configuration={"nargs": "+", "default": ["2d", "3d_fullres", "3d_lowres"],
                       "help": "configurations to preprocess with --preprocess (default: %(default)s)"},
        plans={"default": None, "aliases": ["-overwrite_plans_name"],
               "help": "plans name (default: the planner's plans name and the trainer without nnUNetTrainer, e.g. "
                       "nnUNetPlans_MTUNet, nnUNetResEncUNetMPlans_MTUNet)"},
    )
    parser = subparsers.add_parser(
        "plan", parents=[flags],
        help="nnU-Net's experiment planning with a trainer's network in its memory estimate",
        description="Run nnU-Net's experiment planner (after nnUNetv2_extract_fingerprint) so that patch and batch "
        "fit the GPU memory target for the trainer's network instead of nnU-Net's plain U-Net: every candidate's "
        "estimate is nnU-Net's times the ratio of the two networks' training-step peaks (fake tensors, fp16 "
        "autocast, batch 2). Writes an ordinary plans file for nnUNetv2_train/predict -p.",
    )
    parser.add_argument("-gpu_memory_target", type=float, default=None,
                        help="GPU memory target in GB (default: the planner's, 8 for nnU-Net's default planner)")
    parser.add_argument("-pl", default="ExperimentPlanner", dest="planner",
                        help="nnU-Net planner class, e.g. nnUNetPlannerResEncM (default: %(default)s)")
    parser.add_argument("--preprocess", action="store_true", help="also run nnU-Net's preprocessing of -c")
    parser.add_argument("--verify", action="store_true",
                        help="CUDA only: run one training step of each planned -c configuration and report its "
                        "peak allocated memory beside the target")
    parser.add_argument("-np", **{**PROCESSES, "help": "worker processes of the dataset check and of each "
                                  "configuration's preprocessing (default: nnU-Net's, $nnUNet_def_n_proc or 8)"})
    parser.add_argument("--no-dataset-check", action="store_true",
                        help="skip 'nnunet-attention verify' of nnUNet_raw/DatasetXXX before planning")


def _run_plan(args: argparse.Namespace) -> int:
    from .dataset_check import check_before_planning
    from .planning import (
        next_commands,
        plan_for_trainer,
        plans_summary,
        require_cuda_for_verify,
        require_plannable,
        verify_on_cuda,
    )

    if args.verify:  # before planning: say it at once
        require_cuda_for_verify()
    num_processes = _num_processes(args.num_processes)
    require_plannable(args.dataset_id, args.trainers, args.planner, args.gpu_memory_target)  # before the check
    if not args.no_dataset_check:
        for line in check_before_planning(args.dataset_id, num_processes):
            print(f"[nnunet-attention plan] {line}")
    plans, plans_name = plan_for_trainer(args.dataset_id, args.trainers, args.gpu_memory_target, args.planner,
                                         args.plans, tuple(args.configurations), args.preprocess, num_processes)
    print(f"[nnunet-attention plan] {plans_name} for {args.trainers}:")
    print(plans_summary(plans))
    planned = [c for c in args.configurations if "patch_size" in plans["configurations"].get(c, {})]
    if args.verify:
        target = plans["attention_aware_planning"]["gpu_memory_target_in_gb"]
        for line in verify_on_cuda(args.dataset_id, plans_name, args.trainers, tuple(planned), target):
            print(f"[nnunet-attention plan] {line}")
    for command in next_commands(args.dataset_id, args.trainers, plans_name, planned, args.preprocess):
        print(f"[nnunet-attention plan] {command}")
    return 0


def _grid_flags(**device) -> argparse.ArgumentParser:
    """The flags of a trainer x configuration x fold grid of one dataset and plans (train-grid, compare), and
    ``device``'s options."""
    return nnunet_flags(
        dataset={"type": int, "required": True, "help": "dataset ID"},
        configuration={"nargs": "+", "required": True, "help": "configurations, e.g. 2d"},
        trainer={"nargs": "+", "required": True, "help": "trainers, e.g. nnUNetTrainer nnUNetTrainerMTUNet"},
        plans={"default": "nnUNetPlans", "help": "plans name (default: %(default)s)"},
        fold={"nargs": "+", "default": FOLDS_0_TO_4, "help": "folds (default: 0 1 2 3 4)"},
        device=device,
    )


def _add_train_grid_parser(subparsers) -> None:
    flags = _grid_flags(default="cuda", choices=["cuda", "cpu", "mps"],
                        help="nnUNetv2_train -device (default: %(default)s)")
    parser = subparsers.add_parser(
        "train-grid", parents=[flags],
        help="run the unfinished nnUNetv2_train jobs of a trainer x configuration x fold grid, or write them as a "
        "Slurm job array",
        description="Run every nnUNetv2_train job of the grid whose fold has no validation summary yet: "
        "interrupted ones continue with --c, finished ones are skipped, so running it again after a stop "
        "finishes only what is missing. One job per listed GPU at a time; --slurm writes a job-array script "
        "with the same jobs instead.",
    )
    parser.add_argument("--gpus", nargs="+", default=None,
                        help="GPU indices; one job runs on each at a time (default: one job at a time)")
    parser.add_argument("--logs", default="train_grid_logs", help="folder of the jobs' logs (default: %(default)s)")
    parser.add_argument("--slurm", default=None, metavar="FILE",
                        help="write a Slurm job-array script with the grid's unfinished jobs to FILE instead")
    parser.add_argument("--partition", default=None, help="Slurm partition for --slurm")


def _run_train_grid(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .nnunet_layout import dataset_name, results_folder
    from .registry import require_base_trainers
    from .train_grid import grid, run_grid, slurm_script

    require_base_trainers(args.trainers)  # a typo fails before any job starts
    results = results_folder()
    jobs = grid(args.dataset_id, args.configurations, args.trainers, args.folds, args.plans)

    def report(message: str) -> None:
        print(f"[nnunet-attention train-grid] {message}", flush=True)

    if args.slurm:
        dataset = dataset_name(args.dataset_id)
        unfinished = [job for job in jobs if job.state(results, dataset) != "finished"]
        if not unfinished:
            report(f"all {len(jobs)} jobs are finished; no script written")
            return 0
        Path(args.slurm).write_text(slurm_script(unfinished, args.partition))
        report(f"wrote {args.slurm}: {len(unfinished)} of {len(jobs)} jobs (array 0-{len(unfinished) - 1}); "
               f"submit with: sbatch {args.slurm}")
        return 0
    try:
        failed = run_grid(jobs, args.gpus, args.device, Path(args.logs), report)
    except KeyboardInterrupt:
        report("interrupted (Ctrl-C): the running jobs were stopped. The same command continues the grid: it skips "
               "the finished folds and resumes the others with --c from their last checkpoint")
        return 130
    if failed:
        report(f"{len(failed)} job(s) failed (see their logs): {', '.join(failed)}")
        return 1
    report(f"all {len(jobs)} jobs of the grid are finished")
    return 0


def _add_compare_parser(subparsers) -> None:
    from .compare_gallery import GALLERY_CASES

    flags = _grid_flags(default="auto", choices=DEVICE_CHOICES, aliases=["--cost-device"],
                        help="device of the --with-cost measurement (default: cuda if available)")
    parser = subparsers.add_parser(
        "compare", parents=[flags],
        help="leaderboard of trainers on nnU-Net's cross-validation, with confidence intervals and paired tests",
        description="Read fold_X/validation/summary.json of every trainer x configuration under nnUNet_results and "
        "write a leaderboard (markdown, CSV, JSON: Dice per label and overall, std over cases, per-fold means, "
        "rank, paired difference to the baseline with a bootstrap 95% CI, Wilcoxon p Holm-corrected) and a "
        "per-case Dice plot. Models are compared on the cases all of them validated.",
    )
    parser.add_argument("--baseline", default="nnUNetTrainer",
                        help="trainer the others are tested against, in the first -c (default: %(default)s)")
    parser.add_argument("-o", default="comparison", dest="output", help="output folder (default: %(default)s)")
    parser.add_argument("--with-cost", action="store_true",
                        help="add the benchmark's cost columns (params, GFLOPs, step-time and memory ratios to "
                        "nnU-Net's U-Net on the model's plan) and a Dice-vs-cost plot")
    parser.add_argument("--cost-steps", type=int, default=3, metavar="N",
                        help="with --with-cost: timed training steps per network (default: %(default)s)")
    parser.add_argument("--boundary", nargs="?", type=float, const=1.0, default=None, metavar="TOLERANCE_MM",
                        help="add mean HD95 and normalized surface Dice at TOLERANCE_MM (default 1.0) per model, "
                        "computed per case with MONAI from the validation predictions (slow on large 3D sets)")
    parser.add_argument("--controls", action="store_true",
                        help="also read each attention trainer's removal control (<trainer>_NoAttention, for variants "
                        "<trainer>_NoAttention_<variant>) and report the attention's contribution: the paired "
                        "difference to the control with bootstrap CI and Wilcoxon test (controls.md)")
    parser.add_argument("--cases", type=int, default=GALLERY_CASES, metavar="N",
                        help="cases in the gallery: those where the models disagree most (default: %(default)s)")


def _run_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .compare import markdown
    from .compare_command import run_compare
    from .devices import resolve_device
    from .nnunet_layout import dataset_name, results_folder

    if args.cases < 0:
        raise UsageError(f"--cases must be 0 or more, got {args.cases}")
    if args.cost_steps < 1:
        raise UsageError(f"--cost-steps must be at least 1, got {args.cost_steps}")
    comparison = run_compare(dataset_name(args.dataset_id), results_folder(),
                             args.configurations, args.trainers, args.plans, [str(f) for f in args.folds],
                             args.baseline, Path(args.output), resolve_device(args.device) if args.with_cost else None,
                             cost_steps=args.cost_steps, boundary_tolerance_mm=args.boundary, controls=args.controls,
                             gallery_cases=args.cases)
    for message in comparison.messages:
        print(f"nnunet-attention compare: note: {message}", file=sys.stderr)
    print(markdown(comparison.leaderboard))
    if not comparison.controls.empty:
        print("\n" + markdown(comparison.controls))
    print(f"[nnunet-attention compare] wrote the leaderboard, rank and significance pictures, the gallery and "
          f"report.html to {args.output}")
    return 0


def _run_attention_maps(args: argparse.Namespace) -> int:
    from .attention_maps import export_attention_maps
    from .devices import resolve_device

    folds = [fold if fold == "all" else int(fold) for fold in args.folds]
    written = export_attention_maps(
        args.model_folder, folds, args.input, args.output, checkpoint_name=args.checkpoint,
        slice_index=args.slice, device=resolve_device(args.device), use_mirroring=not args.disable_tta,
        prev_stage_predictions=args.prev_stage_predictions,
    )
    print(f"[nnunet-attention attention-maps] wrote the maps of {len(written)} case(s) to {args.output}")
    return 0


def _plans_flags(plans_help: str) -> dict:
    """-d, -p and -c of the subcommands that read plans (benchmark, check-architecture), as
    :func:`~nnunet_attention.benchmark_command.plans_from_arguments` takes them."""
    return {"dataset": {"type": int, "default": None, "help": "with -p PLANS_NAME: the dataset whose plans to read"},
            "plans": {"default": None, "help": plans_help},
            "configuration": {"nargs": "+", "default": ["2d", "3d_fullres"],
                              "help": "configurations of -p (default: %(default)s)"}}


def _add_benchmark_parser(subparsers) -> None:
    from .plan_presets import PLAN_PRESETS

    flags = nnunet_flags(
        **_plans_flags("an nnUNetPlans.json (its dataset.json beside it gives channels and classes), or with -d a "
                       "plans name in nnUNet_preprocessed"),
        trainer={"nargs": "+", "default": None, "help": "a subset of the trainers (default: all)"},
        device=AUTO_DEVICE,
    )
    parser = subparsers.add_parser(
        "benchmark", parents=[flags],
        help="every trainer's network beside nnU-Net's U-Net on the same plan: params, FLOPs, time, memory",
        description="Measure parameters, forward FLOPs per patch, training-step time, peak memory and "
        "sliding-window inference time of every trainer's network and of nnU-Net's planned U-Net on the same "
        "plan; print a markdown table with ratios and save it with a bar chart.",
    )
    parser.add_argument("--preset", nargs="+", choices=sorted(PLAN_PRESETS), default=None,
                        help="built-in plans (default: acdc-2d acdc-3d_fullres when -p is not given)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="instead of the plan's batch size (default: the plan's on a GPU, at most 2 on a CPU)")
    parser.add_argument("--no-inference", action="store_true", help="skip the sliding-window inference timing")
    parser.add_argument("--output", default="benchmark_results", help="folder for table and chart (%(default)s)")
    parser.add_argument("--gaussian-axial", action="store_true",
                        help="also time Gaussian axial attention against the authors' per-position loop")


def _run_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import BenchmarkInterrupted
    from .benchmark_command import run_from_arguments

    try:
        run_from_arguments(args)
    except BenchmarkInterrupted as interrupted:
        done = sum(len(rows) for rows in interrupted.results.values())
        saved = f"; they are printed above and saved in {args.output}/benchmark_interrupted.md" if done else ""
        print(f"nnunet-attention benchmark: interrupted (Ctrl-C) after {done} network(s){saved}", file=sys.stderr)
        return 130
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import format_dice_table, run_demo

    result = run_demo(
        trainer=args.trainers,
        configuration=args.configurations,
        epochs=args.epochs,
        iterations=args.iterations,
        device=args.device,
        workdir=args.workdir,
        fold=args.folds,
        training_output="none" if args.quiet else "all" if args.verbose else "epochs",
    )
    timings = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in result.seconds_per_step.items())
    print(f"[nnunet-attention demo] attention maps of this model: {result.attention_maps_command}")
    print(f"[nnunet-attention demo] done ({timings}); held-out Dice:")
    print(format_dice_table(result.dice_per_label, result.mean_dice))
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    import os

    from .synth import SynthSpec, write_dataset

    raw = args.raw or os.environ.get("nnUNet_raw")
    if not raw:
        raise UsageError("set nnUNet_raw or pass --raw FOLDER")
    spacing = args.spacing or [1.0] * len(args.shape)
    spec = SynthSpec(
        dataset_id=args.dataset_id,
        name=args.name,
        shape=tuple(args.shape),
        spacing=tuple(spacing),
        n_channels=args.channels,
        n_train=args.train,
        n_test=args.test,
        noise_std=args.noise,
        seed=args.seed,
    )
    print(write_dataset(spec, raw, overwrite=args.overwrite))
    return 0


def _add_gpu_check_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "gpu-check", help="run first on a GPU machine: CUDA tests, benchmark, plan --verify and short trainings, in "
        "one report",
        description="On one CUDA GPU, in about 8 minutes: the CUDA-marked tests, the benchmark on the ACDC 2d and "
        "3d_fullres presets at the planned batch (fp16 AMP, eager and compiled), plan --verify per trainer, and one "
        "short nnUNetv2_train per trainer timed as nnU-Net's nnUNetTrainerBenchmark_5epochs_noDataLoading; every "
        "figure beside nnU-Net's U-Net, in one markdown report.",
    )
    parser.add_argument("-o", default="gpu_check", dest="output", help="folder of the report (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="list the steps and their time budgets; run nothing")


def _run_gpu_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .gpu_check import dry_run_lines, run_gpu_check

    if args.dry_run:
        print("\n".join(dry_run_lines()))
        return 0
    path = run_gpu_check(Path(args.output), lambda line: print(f"[nnunet-attention gpu-check] {line}", flush=True))
    print(f"[nnunet-attention gpu-check] wrote {path}")
    return 0


#: the contract's checks, by name (nnunet_attention.architecture_contract.CHECKS; spelt here so that a typo is
#: refused before torch is imported; a test holds the two equal)
CONTRACT_CHECKS = ("output", "deep-supervision", "weights", "attention-maps", "gradients", "fp16",
                   "pretrained-weights", "memory-estimate", "compile")


def _add_check_architecture_parser(subparsers) -> None:
    from .plan_presets import PLAN_PRESETS

    flags = nnunet_flags(**_plans_flags(
        "check on this nnUNetPlans.json (its dataset.json beside it gives channels and classes), or with -d a plans "
        "name in nnUNet_preprocessed, instead of the plan matrix"))
    parser = subparsers.add_parser(
        "check-architecture", parents=[flags], help="run the contract every trainer here keeps on your own network",
        description="Build your network (MODULE:CLASS: a trainer subclassing AttentionTrainerBase, or an "
        "architecture subclassing PlannedNetwork) on the plans nnU-Net's planner writes (2D and 3D, isotropic and "
        "[1, 2, 2] strides, 4 to 7 stages, plain and ResEnc) and check what nnU-Net will do with it: one output at "
        "the patch, deep supervision at nnU-Net's scales, one state dict for training and prediction, a gradient "
        "for every parameter (DDP), finite fp16 AMP steps, one graph under torch.compile, attention maps, "
        "-pretrained_weights, the planner's memory estimate. One line per check and plan; exit code 1 on any "
        "failure.",
    )
    parser.add_argument("subject", metavar="MODULE:CLASS", help="your trainer or architecture class, importable "
                        "from the Python path (e.g. my_attention.trainer:nnUNetTrainerMyNet)")
    parser.add_argument("--preset", nargs="+", choices=sorted(PLAN_PRESETS), default=None,
                        help="check on these built-in plans instead of the plan matrix (e.g. acdc-2d)")
    parser.add_argument("--quick", action="store_true", help="one 2D and one anisotropic 3D plan of the matrix per "
                        "check (seconds to a minute on 2 CPU cores)")
    parser.add_argument("--checks", nargs="+", choices=CONTRACT_CHECKS, metavar="CHECK",
                        help=f"only these checks (default: all: {', '.join(CONTRACT_CHECKS)})")


def _run_check_architecture(args: argparse.Namespace) -> int:
    from .architecture_contract import check_architecture, load_subject
    from .benchmark_command import plans_from_arguments

    if args.quick and (args.plans or args.preset):
        raise UsageError("--quick picks plans of the matrix: give it, or -p/--preset, not both")
    subject = load_subject(args.subject)
    configurations = plans_from_arguments(args) if args.plans or args.preset else None
    failed = passed = skipped = 0
    for result in check_architecture(subject, quick=args.quick, checks=args.checks, configurations=configurations):
        print(result.line(), flush=True)
        passed += result.passed is True
        failed += result.passed is False
        skipped += result.passed is None
    print(f"{args.subject}: {passed} passed, {failed} failed, {skipped} not applicable")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="nnunet-attention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_parser in (_add_demo_parser, _add_synth_parser, _add_verify_parser, _add_attention_maps_parser,
                       _add_benchmark_parser, _add_plan_parser, _add_train_grid_parser, _add_compare_parser,
                       _add_gpu_check_parser, _add_check_architecture_parser):
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"demo": _run_demo, "synth": _run_synth, "verify": _run_verify, "attention-maps": _run_attention_maps,
                "benchmark": _run_benchmark, "plan": _run_plan, "train-grid": _run_train_grid,
                "compare": _run_compare, "gpu-check": _run_gpu_check,
                "check-architecture": _run_check_architecture}
    try:
        return handlers[args.command](args)
    except (UsageError, NNUNetCommandError) as error:
        print(f"nnunet-attention {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
