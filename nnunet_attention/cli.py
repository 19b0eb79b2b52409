"""``nnunet-attention``: the package's command line (demo, synth)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .nnunet_commands import NNUNetCommandError


def _add_demo_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthetic data -> nnU-Net plan/preprocess -> short training -> predict -> evaluate",
        description="Run the whole nnU-Net pipeline with an attention trainer on a built-in synthetic dataset "
        "and print the held-out Dice per label (mean Dice on the last line).",
    )
    parser.add_argument(
        "--trainer", default="nnUNetTrainerAttentionUNet", help="trainer class name (default: %(default)s)"
    )
    parser.add_argument("--config", default="2d", choices=["2d", "3d_fullres"], help="nnU-Net configuration")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=20, help="iterations per epoch (default: %(default)s)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="auto picks cuda when available (default: %(default)s)",
    )
    parser.add_argument(
        "--workdir",
        default="nnunet_attention_demo",
        help="holds nnUNet_raw, nnUNet_preprocessed, nnUNet_results and the log (default: %(default)s)",
    )
    parser.add_argument("--fold", default="0", help="fold to train, 0-4 or 'all' (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="do not echo nnU-Net's training log")


def _add_synth_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic dataset in nnU-Net's raw format",
        description="Write a synthetic dataset (ellipsoid, inclusions that count only inside it, and a cuboid of "
        "the same intensity) into nnUNet_raw, with a held-out imagesTs/labelsTs split.",
    )
    parser.add_argument("--raw", default=None, help="raw folder (default: $nnUNet_raw)")
    parser.add_argument("--dataset-id", type=int, default=990)
    parser.add_argument("--name", default="SynthAttention")
    parser.add_argument("--shape", type=int, nargs="+", default=[96, 112], help="array shape, (y x) or (z y x)")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        default=None,
        help="voxel spacing in mm, same order as --shape (default: all 1)",
    )
    parser.add_argument("--channels", type=int, default=1, help="number of input channels (1-4)")
    parser.add_argument("--train", type=int, default=20, help="training cases")
    parser.add_argument("--test", type=int, default=6, help="held-out cases (imagesTs, labelsTs)")
    parser.add_argument("--noise", type=float, default=0.25, help="Gaussian noise std")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import format_dice_table, run_demo

    result = run_demo(
        trainer=args.trainer,
        configuration=args.config,
        epochs=args.epochs,
        iterations=args.iterations,
        device=args.device,
        workdir=args.workdir,
        fold=args.fold,
        echo_training=not args.quiet,
    )
    timings = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in result.seconds_per_step.items())
    print(f"[nnunet-attention demo] done ({timings}); held-out Dice:")
    print(format_dice_table(result.dice_per_label, result.mean_dice))
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    import os

    from .synth import SynthSpec, write_dataset

    raw = args.raw or os.environ.get("nnUNet_raw")
    if not raw:
        raise SystemExit("nnunet-attention synth: set nnUNet_raw or pass --raw FOLDER")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnunet-attention", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo_parser(subparsers)
    _add_synth_parser(subparsers)
    args = parser.parse_args(argv)
    handlers = {"demo": _run_demo, "synth": _run_synth}
    try:
        return handlers[args.command](args)
    except (ValueError, FileExistsError, NNUNetCommandError) as error:
        print(f"nnunet-attention {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
