"""End to end through the stock nnU-Net commands, as a user runs them.

Per configuration one synthetic dataset is generated and planned + preprocessed once (module fixture); trainers
train on it with the stock ``nnUNetv2_train`` (a short-schedule subclass, in a subprocess), and their model folders
are read by nnU-Net's predictor (what ``nnUNetv2_predict`` runs).

The default run:
- the reference trainer through ``nnunet-attention demo``: its held-out Dice clears a bar that the same network
  untrained stays below; the attention-maps command the demo prints;
- ``nnunet-attention attention-maps`` on a 2d and a 3d model writes every map in the image's geometry, the same
  maps for a moved copy of the image;
- a trainer continues an interrupted run with ``--c`` and its model predicts on the CPU.

Marked ``slow`` (``pytest -m slow``), each covered in the default run by a faster test: every trainer and removal
control learning through ``nnUNetv2_train`` in 2d and 3d_fullres (in-process through nnU-Net's ``train_step`` in
test_learning.py), every other stock command that reads a model folder (``nnUNetv2_ensemble``,
``nnUNetv2_find_best_configuration``), nnU-Net's cascade (3d_lowres -> 3d_cascade_fullres; per trainer in
test_edge_plans.py and test_attention_maps.py), the 3d attention-maps command, fine-tuning with
``-pretrained_weights`` to a dataset with another class count, and training and predicting with the plans
``nnunet-attention plan`` made (each marked with the test that covers it).

What does not depend on the trainer runs once here: every trainer's checkpoints (resume), its weights through
nnU-Net's pretrained-weights loader, and its maps through the export run in-process per trainer
(test_checkpoints.py, test_fine_tuning.py, test_attention_maps.py). Validation and prediction here run without
test-time mirroring (4x the prediction time in 2d, 8x in 3d) except through the demo, which runs as users run it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import ANY_PATCH_TRAINERS, NARROW_ARCHITECTURE_KWARGS, harness_trainer_class
from nnunet_attention.trainers import CONTROLS, TRAINERS
from nnunetv2.evaluation.evaluate_predictions import compute_metrics
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_attention import cli
from nnunet_attention.attention_map_files import colour_scale
from nnunet_attention.demo import DEMO_DATASETS, prepare_dataset
from nnunet_attention.nnunet_commands import (
    NNUNetCommandError,
    evaluate_arguments,
    nnunet_environment,
    predict_arguments,
    run_nnunet_command,
)
from nnunet_attention.registry import control_of
from nnunet_attention.schedules import (
    architecture_kwargs_override,
    short_schedule_name,
    with_ext_trainer_folder,
    write_short_schedule_trainer,
)
from nnunet_attention.synth import LABELS

pytestmark = pytest.mark.e2e

TRAINERS_AND_CONTROLS = {**TRAINERS, **CONTROLS}

#: (epochs, iterations per epoch, held-out mean foreground Dice bar) per configuration: long enough that every
#: trainer's seeded run clears the bar on a 2-core CPU with margin, while an untrained network stays well below
#: it on the same cases (the measured figures are in the commit history of these schedules).
SCHEDULES = {"2d": (10, 16, 0.6), "3d_fullres": (8, 10, 0.4)}
#: (epochs, iterations) for trainers that learn the synthetic 2d set more slowly than its schedule allows: MCANet
#: learns the cuboid late, MSGA runs at its narrow CPU width; the transformers at their narrow CPU widths under SGD:
#: SwinUNETR 2d reached 0.52 and UNETR 3d 0.00 (every voxel background) on the default schedules
LONGER_SCHEDULES = {("nnUNetTrainerMCANet", "2d"): (12, 16), ("nnUNetTrainerMSGA", "2d"): (20, 16),
                    ("nnUNetTrainerSwinUNETR", "2d"): (25, 16), ("nnUNetTrainerUNETR", "3d_fullres"): (60, 10)}


def schedule_of(trainer_name: str, configuration: str) -> tuple[int, int, float]:
    """(epochs, iterations, bar) with which ``trainer_name`` learns ``configuration`` in these tests (a removal
    control: its trainer's, so the two are compared on one schedule)."""
    epochs, iterations, bar = SCHEDULES[configuration]
    trainer_name = getattr(TRAINERS_AND_CONTROLS[trainer_name], "controlled_trainer", None) or trainer_name
    return (*LONGER_SCHEDULES.get((trainer_name, configuration), (epochs, iterations)), bar)
#: (epochs, iterations) of the reference trainer's 2d run through the demo: on the 10-epoch schedule its pseudo Dice
#: passed 0.84 on every label by the sixth epoch (the demo's log, 2 cores)
DEMO_SCHEDULE = (6, 16)
#: (epochs, iterations) of a model that only has to exist: attention maps and fine-tuning read its folder
BRIEF_SCHEDULE = (2, 4)
#: every end-to-end run is seeded (see write_short_schedule_trainer): its Dice repeats on one machine
SEED = 0
#: the trainer that also goes through the demo command and every other stock command, and learns in 3D
REFERENCE_TRAINER = "nnUNetTrainerAttentionUNet"

FOREGROUND = [value for value in LABELS.values() if value]


@pytest.fixture(scope="module")
def prepared_workdirs(tmp_path_factory):
    """Per configuration a workdir whose dataset is generated, planned and preprocessed once, on first use."""
    workdirs = {}

    def workdir_for(configuration: str) -> Path:
        if configuration not in workdirs:
            workdir = tmp_path_factory.mktemp(configuration)
            environment = nnunet_environment(workdir, "cpu")
            prepare_dataset(DEMO_DATASETS[configuration], configuration, environment, workdir / "prepare.log")
            workdirs[configuration] = workdir
        return workdirs[configuration]

    return workdir_for


def held_out_dice(predictor: nnUNetPredictor, raw_dataset: Path, output: Path) -> float:
    """Segment imagesTs with ``predictor`` (in this process, no worker pools) and return nnU-Net's foreground mean
    Dice against labelsTs (:func:`dice_of_predictions`)."""
    output.mkdir(parents=True, exist_ok=True)
    predictor.predict_from_files_sequential(str(raw_dataset / "imagesTs"), str(output), overwrite=True)
    return dice_of_predictions(raw_dataset, output)


def dice_of_predictions(raw_dataset: Path, output: Path) -> float:
    """nnU-Net's foreground mean Dice of the segmentations in ``output`` against labelsTs (per label the mean over
    cases with the label present in reference or prediction)."""
    per_label = {label: [] for label in FOREGROUND}
    for reference in sorted((raw_dataset / "labelsTs").glob("*.nii.gz")):
        metrics = compute_metrics(str(reference), str(output / reference.name), SimpleITKIO(), FOREGROUND)["metrics"]
        for label in FOREGROUND:
            per_label[label].append(metrics[label]["Dice"])
    return float(np.mean([np.nanmean(dice) for dice in per_label.values()]))


def model_folder_of(environment: dict[str, str], configuration: str, short_trainer: str) -> Path:
    """Where nnUNetv2_train writes the model of ``short_trainer`` on the demo dataset of ``configuration``."""
    dataset_results = Path(environment["nnUNet_results"]) / DEMO_DATASETS[configuration].folder_name
    return dataset_results / f"{short_trainer}__nnUNetPlans__{configuration}"


def cpu_predictor() -> nnUNetPredictor:
    return nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, use_mirroring=False,
                           allow_tqdm=False)


def train(trainer_name: str, configuration: str, epochs: int, iterations: int, workdir: Path) -> tuple[dict, str]:
    """``nnUNetv2_train`` of a short-schedule subclass of ``trainer_name`` on fold 0; (environment, its name)."""
    trainer = harness_trainer_class(TRAINERS_AND_CONTROLS[trainer_name])
    short_trainer = write_short_schedule_trainer(workdir / "trainers", TRAINERS_AND_CONTROLS[trainer_name], epochs,
                                                 iterations, architecture_kwargs=trainer.architecture_kwargs,
                                                 seed=SEED, validation_mirroring=False)
    environment = with_ext_trainer_folder(nnunet_environment(workdir, "cpu"), workdir / "trainers")
    spec = DEMO_DATASETS[configuration]
    run_nnunet_command(["nnUNetv2_train", spec.dataset_id, configuration, "0", "-tr", short_trainer, "-device", "cpu"],
                       environment, workdir / f"{short_trainer}.log")
    return environment, short_trainer


def predictor_from_model_folder(environment: dict, configuration: str, short_trainer: str, monkeypatch):
    # the predictor finds the short-schedule trainer class by name, as nnUNetv2_predict does
    monkeypatch.setenv("nnUNet_extTrainer", environment["nnUNet_extTrainer"])
    predictor = cpu_predictor()
    model_folder = model_folder_of(environment, configuration, short_trainer)
    predictor.initialize_from_trained_model_folder(str(model_folder), (0,), "checkpoint_final.pth")
    return predictor


@pytest.fixture(scope="module")
def trained_model(prepared_workdirs):
    """``trained_model(trainer, configuration)``: (environment, short-schedule trainer name) of the trainer's model
    on the configuration's demo dataset, trained on its schedule on first request (by the learning test below when
    the whole module runs) and reused by the tests that need a trained model."""
    models = {}

    def model_of(trainer_name: str, configuration: str, brief: bool = False) -> tuple[dict, str]:
        """``brief``: on :data:`BRIEF_SCHEDULE`, for tests that need a trained model folder, not a good model."""
        if (trainer_name, configuration, brief) not in models:
            epochs, iterations = BRIEF_SCHEDULE if brief else schedule_of(trainer_name, configuration)[:2]
            models[trainer_name, configuration, brief] = train(trainer_name, configuration, epochs, iterations,
                                                               prepared_workdirs(configuration))
        return models[trainer_name, configuration, brief]

    return model_of


#: every trainer on the demo's nnU-Net plans in 2d and 3d_fullres (the reference trainer's 2d run is the demo's),
#: every removal control in 2d; the trainers that need their own patch multiple are planned for below
LEARNING_CASES = [(t, c) for c in ("2d", "3d_fullres") for t in ANY_PATCH_TRAINERS
                  if (t, c) != (REFERENCE_TRAINER, "2d")]
LEARNING_CASES += [(control_of(t), "2d") for t in ANY_PATCH_TRAINERS]


@pytest.mark.slow  # the default run: each trainer learns in test_learning.py, the stock path by the demo's test
@pytest.mark.parametrize("trainer_name,configuration", LEARNING_CASES)
def test_trained_model_clears_the_bar_its_untrained_network_cannot(trainer_name, configuration, prepared_workdirs,
                                                                   trained_model, monkeypatch):
    """A seeded short run through ``nnUNetv2_train``; nnU-Net's predictor segments the held-out cases: valid
    segmentations (the image's geometry, only the dataset's labels) whose Dice clears the bar, which the same
    network untrained stays below on the same cases."""
    workdir = prepared_workdirs(configuration)
    bar = schedule_of(trainer_name, configuration)[2]
    environment, short_trainer = trained_model(trainer_name, configuration)
    predictor = predictor_from_model_folder(environment, configuration, short_trainer, monkeypatch)
    raw_dataset = workdir / "nnUNet_raw" / DEMO_DATASETS[configuration].folder_name
    output = workdir / "predictions" / short_trainer
    trained = held_out_dice(predictor, raw_dataset, output)
    untrained = untrained_dice(workdir, configuration, recursive_find_trainer_class_by_name(short_trainer))
    assert untrained < bar < trained, f"untrained {untrained:.3f}, bar {bar}, trained {trained:.3f}"
    references = sorted((raw_dataset / "labelsTs").glob("*.nii.gz"))
    assert sorted(p.name for p in output.glob("*.nii.gz")) == [r.name for r in references]
    for reference in references:
        expected, predicted = sitk.ReadImage(str(reference)), sitk.ReadImage(str(output / reference.name))
        assert predicted.GetSize() == expected.GetSize()
        assert np.allclose(predicted.GetSpacing(), expected.GetSpacing())
        assert np.allclose(predicted.GetOrigin(), expected.GetOrigin())
        assert set(np.unique(sitk.GetArrayFromImage(predicted))) <= set(LABELS.values())


#: the trainers whose networks need a patch of their own multiples (MONAI's SwinUNETR and UNETR): the demo datasets'
#: nnU-Net plans do not fit them (synthetic 2d: 96 x 112), `nnunet-attention plan -tr` plans for them
OWN_PATCH_TRAINERS = sorted(set(TRAINERS) - set(ANY_PATCH_TRAINERS))


@pytest.mark.slow  # ~1-3 min each on 2 cores; their networks' contract runs in the default suite
@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
@pytest.mark.parametrize("trainer_name", OWN_PATCH_TRAINERS)
def test_a_network_with_its_own_patch_multiple_is_planned_trained_and_predicted_with_the_stock_commands(
    trainer_name, configuration, prepared_workdirs, monkeypatch
):
    """``nnunet-attention plan -tr`` plans a patch whose axes the network divides (synthetic 2d: 96 x 112 becomes
    a multiple of 32 for SwinUNETR) and preprocesses for it; ``nnUNetv2_train -p`` and ``nnUNetv2_predict -p``
    train and segment; the held-out Dice clears the bar that the same network untrained stays below."""
    workdir, spec = prepared_workdirs(configuration), DEMO_DATASETS[configuration]
    environment = nnunet_environment(workdir, "cpu")
    plans_name = f"nnUNetPlans_{trainer_name.removeprefix('nnUNetTrainer')}"
    run_nnunet_command([sys.executable, "-m", "nnunet_attention.cli", "plan", "-d", spec.dataset_id, "-tr",
                        trainer_name, "-c", configuration, "--preprocess", "-np", "1", "--no-dataset-check"],
                       environment, workdir / f"plan_{trainer_name}.log")
    plans = json.loads((workdir / "nnUNet_preprocessed" / spec.folder_name / f"{plans_name}.json").read_text())
    patch = plans["configurations"][configuration]["patch_size"]
    assert all(size % TRAINERS[trainer_name].patch_divisor == 0 for size in patch), patch
    epochs, iterations, bar = schedule_of(trainer_name, configuration)
    short_trainer = write_short_schedule_trainer(
        workdir / "trainers", TRAINERS[trainer_name], epochs, iterations, seed=SEED, validation_mirroring=False,
        architecture_kwargs=harness_trainer_class(TRAINERS[trainer_name]).architecture_kwargs)
    environment = with_ext_trainer_folder(environment, workdir / "trainers")
    run_nnunet_command(["nnUNetv2_train", spec.dataset_id, configuration, "0", "-tr", short_trainer, "-p", plans_name,
                        "-device", "cpu"], environment, workdir / f"{short_trainer}.log")
    raw_dataset, output = workdir / "nnUNet_raw" / spec.folder_name, workdir / "predictions" / short_trainer
    run_nnunet_command(["nnUNetv2_predict", "-i", str(raw_dataset / "imagesTs"), "-o", str(output), "-d",
                        spec.dataset_id, "-c", configuration, "-tr", short_trainer, "-p", plans_name, "-f", "0",
                        "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"],
                       environment, workdir / f"predict_{short_trainer}.log")
    trained = dice_of_predictions(raw_dataset, output)
    monkeypatch.setenv("nnUNet_extTrainer", environment["nnUNet_extTrainer"])  # the short trainer, found by name
    untrained = untrained_dice(workdir, configuration, recursive_find_trainer_class_by_name(short_trainer),
                               plans_name)
    assert untrained < bar < trained, f"untrained {untrained:.3f}, bar {bar}, trained {trained:.3f}"


def untrained_dice(workdir: Path, configuration: str, trainer_class: type, plans_name: str = "nnUNetPlans") -> float:
    """Held-out Dice of a freshly initialised network of ``trainer_class`` on the planned configuration."""
    spec = DEMO_DATASETS[configuration]
    preprocessed = workdir / "nnUNet_preprocessed" / spec.folder_name
    plans_manager = PlansManager(str(preprocessed / f"{plans_name}.json"))
    configuration_manager = plans_manager.get_configuration(configuration)
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    torch.manual_seed(SEED)
    network = trainer_class.build_network_architecture(
        plans_manager,
        configuration_manager,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    predictor = cpu_predictor()
    predictor.manual_initialization(network, plans_manager, configuration_manager, [network.state_dict()],
                                    dataset_json, trainer_class.__name__, None)
    raw_dataset = workdir / "nnUNet_raw" / spec.folder_name
    return held_out_dice(predictor, raw_dataset, workdir / "predictions" / f"untrained_{trainer_class.__name__}")


def run_demo_command(trainer: str, configuration: str, epochs: int, iterations: int,
                     workdir: Path) -> tuple[float, str]:
    """``nnunet-attention demo`` in a fresh process: (its mean Dice, its console output: stdout and stderr)."""
    command = [sys.executable, "-m", "nnunet_attention.cli", "demo", "--trainer", trainer, "--config", configuration,
               "--epochs", str(epochs), "--iterations", str(iterations), "--device", "cpu", "--workdir", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"mean Dice: (\d\.\d+)", last_line)
    assert match, f"the demo's last line should be the mean Dice, got {last_line!r}"
    return float(match.group(1)), result.stdout + result.stderr


#: nnU-Net's start-up chatter and its dependencies' warnings: in the demo's log, not on its console
NNUNET_NOISE = ("hiddenlayer", "torch.jit.interface", "Searching in", "Please cite", "This is the configuration")


def test_reference_trainer_through_the_demo(prepared_workdirs, capfd):
    """Demo (train, predict, evaluate) with its console, and the attention-maps command it prints; an untrained
    network stays below the bar the trained one clears."""
    trainer_name, configuration = REFERENCE_TRAINER, "2d"
    workdir = prepared_workdirs(configuration)
    (epochs, iterations), bar = DEMO_SCHEDULE, schedule_of(trainer_name, configuration)[2]
    dice, console = run_demo_command(trainer_name, configuration, epochs, iterations, workdir)
    assert dice > bar
    assert untrained_dice(workdir, configuration, TRAINERS[trainer_name]) < bar

    # the console: one line per epoch, nnU-Net's noise only in the log
    epoch_lines = re.findall(r"^\[nnunet-attention demo\]   epoch (\d+)/(\d+): train loss ", console, re.MULTILINE)
    assert epoch_lines == [(str(epoch), str(epochs)) for epoch in range(1, epochs + 1)], console[-3000:]
    log = (workdir / "demo.log").read_text()
    for noise in NNUNET_NOISE:
        assert noise not in console and noise in log, noise

    # the attention-maps command the demo prints works as printed: it finds the demo's short-schedule trainer
    # without nnUNet_extTrainer naming the demo's trainers folder
    printed = re.search(r"attention maps of this model: nnunet-attention (.+)", console)
    assert printed, console[-2000:]
    assert str(workdir / "trainers") not in os.environ.get("nnUNet_extTrainer", "")
    capfd.readouterr()
    assert cli.main(printed.group(1).split()) == 0
    maps_console = capfd.readouterr()
    assert maps_console.out.strip().splitlines()[-1].startswith("[nnunet-attention attention-maps] wrote the maps of")
    for noise in NNUNET_NOISE:
        assert noise not in maps_console.out + maps_console.err, noise
    maps_folder = Path(printed.group(1).split()[printed.group(1).split().index("-o") + 1])
    assert len(list(maps_folder.glob("*/maps.json"))) == DEMO_DATASETS[configuration].n_test


@pytest.mark.slow  # the default run: the model folder is read by nnUNetv2_predict in the plans test below
def test_every_stock_command_that_reads_a_model_folder(prepared_workdirs, trained_model, tmp_path):
    """Predict from the model folder, ensemble, evaluate, find the best configuration among two trainers."""
    trainer_name, configuration = REFERENCE_TRAINER, "2d"
    workdir = prepared_workdirs(configuration)
    (epochs, iterations), bar = DEMO_SCHEDULE, schedule_of(trainer_name, configuration)[2]
    if not (workdir / "demo.log").exists():
        run_demo_command(trainer_name, configuration, epochs, iterations, workdir)
    spec = DEMO_DATASETS[configuration]
    short_trainer = short_schedule_name(trainer_name, epochs, iterations)
    environment = with_ext_trainer_folder(nnunet_environment(workdir, "cpu"), workdir / "trainers")
    raw = Path(environment["nnUNet_raw"]) / spec.folder_name
    model_folder = model_folder_of(environment, configuration, short_trainer)
    log = tmp_path / "commands.log"
    sequential = ["-device", "cpu", "-npp", "1", "-nps", "1", "--save_probabilities", "--disable_progress_bar"]
    run_nnunet_command(["nnUNetv2_predict_from_modelfolder", "-i", raw / "imagesTs", "-o", tmp_path / "final",
                        "-m", model_folder, "-f", "0", *sequential], environment, log)
    run_nnunet_command(predict_arguments(raw / "imagesTs", tmp_path / "best", spec.dataset_id, configuration,
                                         short_trainer, "0", "cpu", "-chk", "checkpoint_best.pth",
                                         "--save_probabilities"), environment, log)
    run_nnunet_command(["nnUNetv2_ensemble", "-i", tmp_path / "final", tmp_path / "best", "-o", tmp_path / "ensemble",
                        "-np", "1"], environment, log)
    summary = tmp_path / "ensemble" / "summary.json"
    evaluation = evaluate_arguments(raw / "labelsTs", tmp_path / "ensemble", model_folder / "plans.json", summary)
    run_nnunet_command(evaluation, environment, log)
    assert json.loads(summary.read_text())["foreground_mean"]["Dice"] > bar
    # two trainers: every candidate (each model and their ensemble) is scored, the best one is picked
    _, other_trainer = trained_model("nnUNetTrainerNonLocalUNet", configuration, brief=True)
    for trainer in (short_trainer, other_trainer):  # ensembling needs the validation probabilities (--npz)
        run_nnunet_command(["nnUNetv2_train", spec.dataset_id, configuration, "0", "-tr", trainer, "--val", "--npz",
                            "-device", "cpu"], environment, log)
    run_nnunet_command(["nnUNetv2_find_best_configuration", spec.dataset_id, "-c", configuration,
                        "-tr", short_trainer, other_trainer, "-f", "0", "-np", "1"], environment, log)
    inference_information = json.loads((model_folder.parent / "inference_information.json").read_text())
    scores = inference_information["all_results"]
    models = [f"{trainer}__nnUNetPlans__{configuration}" for trainer in (short_trainer, other_trainer)]
    assert len(scores) == 3 and all(model in scores for model in models)  # the two models and their ensemble
    for model in models:  # one fold: a model's cross-validation score is its fold's validation Dice
        validation = json.loads((model_folder.parent / model / "fold_0" / "validation" / "summary.json").read_text())
        assert scores[model] == pytest.approx(validation["foreground_mean"]["Dice"])
    best = inference_information["best_model_or_ensemble"]
    assert best["result_on_crossval_pre_pp"] == max(scores.values())
    best_key = max(scores, key=scores.get)
    selected = [f"{m['trainer']}__{m['plans_identifier']}__{m['configuration']}"
                for m in best["selected_model_or_models"]]
    expected = [best_key] if best_key in models else models  # else the ensemble of both
    assert sorted(selected) == sorted(expected)


def held_out_case_with_moved_geometry(original: Path, folder: Path) -> sitk.Image:
    """Copy the image ``original`` into ``folder`` as ``moved_0000`` with a non-trivial origin and a flipped first
    axis (so the geometry check below cannot pass by defaults); return the copy."""
    image = sitk.ReadImage(str(original))
    dimension = image.GetDimension()
    image.SetOrigin([12.5, -40.0, 7.25][:dimension])
    direction = np.eye(dimension)
    direction[0, 0] = -1
    image.SetDirection(direction.ravel().tolist())
    folder.mkdir(parents=True)
    sitk.WriteImage(image, str(folder / "moved_0000.nii.gz"))
    return image


@pytest.mark.parametrize("trainer_name,configuration", [
    ("nnUNetTrainerMTUNet", "2d"),
    # the default run: every trainer's maps in 3d, in the image's geometry, through the export in-process
    # (test_attention_maps.py)
    pytest.param(REFERENCE_TRAINER, "3d_fullres", marks=pytest.mark.slow),
])
def test_attention_maps_have_the_image_geometry_and_their_documented_range(
    trainer_name, configuration, prepared_workdirs, trained_model, monkeypatch, tmp_path
):
    """``nnunet-attention attention-maps`` on a briefly trained model: per map a NIfTI in the input's geometry
    with values in the range maps.json documents (up to fp16 stitching), an overlay PNG, and PNGs in 2D; the maps
    of the moved copy are those of the original image (nnU-Net reads the same array from both)."""
    workdir = prepared_workdirs(configuration)
    environment, short_trainer = trained_model(trainer_name, configuration, brief=True)
    monkeypatch.setenv("nnUNet_extTrainer", environment["nnUNet_extTrainer"])
    raw_dataset = workdir / "nnUNet_raw" / DEMO_DATASETS[configuration].folder_name
    original = sorted((raw_dataset / "imagesTs").glob("*_0000.nii.gz"))[0]
    image = held_out_case_with_moved_geometry(original, tmp_path / "images")
    (tmp_path / "images" / original.name).symlink_to(original)
    model_folder = model_folder_of(environment, configuration, short_trainer)
    arguments = ["attention-maps", "-i", str(tmp_path / "images"), "-o", str(tmp_path / "maps"),
                 "-m", str(model_folder), "-f", "0", "-device", "cpu", "--disable_tta"]
    assert cli.main(arguments) == 0

    index = json.loads((tmp_path / "maps" / "moved" / "maps.json").read_text())
    assert index, "no attention map was written"
    for name, entry in index.items():
        written = sitk.ReadImage(str(tmp_path / "maps" / "moved" / f"{name}.nii.gz"))
        assert written.GetSize() == image.GetSize(), name
        assert np.allclose(written.GetSpacing(), image.GetSpacing())
        assert np.allclose(written.GetOrigin(), image.GetOrigin())
        assert np.allclose(written.GetDirection(), image.GetDirection())
        values = sitk.GetArrayFromImage(written)
        case = original.name.replace("_0000.nii.gz", "")
        original_values = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "maps" / case / f"{name}.nii.gz")))
        np.testing.assert_array_equal(values, original_values, err_msg=name)
        low, high = entry["value_range"]
        tolerance = 2e-3 * max(1.0, float(np.abs(values).max()))
        assert np.isfinite(values).all() and values.min() >= low - tolerance, name
        assert high is None or values.max() <= high + tolerance, name
        # every map here is positive (sigmoid, softmax or RMS): an exact 0 is a value lost in stitching
        assert (values > 0).all(), f"{name}: {(values == 0).sum()} voxels are exactly 0"
        assert entry["values"] == [float(values.min()), float(values.max())], name
        expected_scale = colour_scale(values.ravel(), (low, np.inf if high is None else high))  # no crop here
        np.testing.assert_allclose(entry["colour_scale"], expected_scale, rtol=1e-6, err_msg=name)
        assert re.fullmatch(r"[a-z0-9_]+", name), f"{name} (module {entry['module']}) is not a map name"
        two_dimensional_png = [f"{name}.png"] if image.GetDimension() == 2 else []
        assert entry["files"] == [f"{name}.nii.gz", f"{name}_overlay.png", *two_dimensional_png]
        for file in entry["files"][1:]:
            assert (tmp_path / "maps" / "moved" / file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


#: a trainer module that checkpoints every epoch and, when STOP_AFTER_EPOCH names the epoch just finished,
#: kills its own process (SIGKILL: no clean-up runs), as an interrupted job would end
RESUMABLE_TRAINER = '''import os
import signal

import torch
from {module} import {base}


class {name}({base}):{class_attributes}
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = {epochs}, 2, 1
        self.save_every = 1

    def on_epoch_end(self):
        finished = self.current_epoch
        super().on_epoch_end()
        if os.environ.get("STOP_AFTER_EPOCH") == str(finished):
            os.kill(os.getpid(), signal.SIGKILL)

    def perform_actual_validation(self, save_probabilities: bool = False):
        """Skipped: the final validation is checked by the other end-to-end tests."""
'''
RESUME_EPOCHS = 2
#: nnUNetv2_predict's -device choices other than cuda that this machine has
PREDICTION_DEVICES = ["cpu"] + (["mps"] if torch.backends.mps.is_available() else [])


def write_resumable_trainer(folder: Path, trainer_name: str) -> str:
    name = f"{trainer_name}_resumable"
    class_attributes = architecture_kwargs_override(trainer_name, NARROW_ARCHITECTURE_KWARGS.get(trainer_name))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(RESUMABLE_TRAINER.format(
        module=TRAINERS[trainer_name].__module__, base=trainer_name, name=name, class_attributes=class_attributes,
        epochs=RESUME_EPOCHS))
    return name


def epochs_run(log: Path) -> list[int]:
    return [int(epoch) for epoch in re.findall(r": Epoch (\d+)\n", log.read_text())]


def test_interrupted_training_continues_with_c_and_predicts_on_cpu(prepared_workdirs, tmp_path, monkeypatch):
    """``nnUNetv2_train`` killed after epoch 0 leaves checkpoint_latest.pth; ``--c`` continues with epoch 1 from it
    (history kept) to checkpoint_final.pth, which nnU-Net's predictor on the CPU (and MPS where present) then uses
    to segment a case."""
    trainer_name, configuration = REFERENCE_TRAINER, "2d"
    workdir, spec = prepared_workdirs(configuration), DEMO_DATASETS[configuration]
    name = write_resumable_trainer(workdir / "trainers", trainer_name)
    environment = with_ext_trainer_folder(nnunet_environment(workdir, "cpu"), workdir / "trainers")
    train_command = ["nnUNetv2_train", spec.dataset_id, configuration, "0", "-tr", name, "-device", "cpu"]
    with pytest.raises(NNUNetCommandError, match="exit code -9"):
        run_nnunet_command(train_command, {**environment, "STOP_AFTER_EPOCH": "0"}, tmp_path / "interrupted.log")
    fold = model_folder_of(environment, configuration, name) / "fold_0"
    assert (fold / "checkpoint_latest.pth").is_file() and not (fold / "checkpoint_final.pth").exists()
    assert epochs_run(tmp_path / "interrupted.log") == [0]

    run_nnunet_command([*train_command, "--c"], environment, tmp_path / "resumed.log")
    assert epochs_run(tmp_path / "resumed.log") == list(range(1, RESUME_EPOCHS))
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == RESUME_EPOCHS and len(final["logging"]["train_losses"]) == RESUME_EPOCHS

    raw = Path(environment["nnUNet_raw"]) / spec.folder_name
    held_out = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))[0]
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / held_out.name).symlink_to(held_out)
    monkeypatch.setenv("nnUNet_extTrainer", environment["nnUNet_extTrainer"])
    for device in PREDICTION_DEVICES:
        # what `nnUNetv2_predict -device cpu|mps` runs: nnU-Net's predictor on that device, mirroring on
        predictor = nnUNetPredictor(device=torch.device(device), use_mirroring=True, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(fold.parent), (0,), "checkpoint_final.pth")
        output = tmp_path / f"predictions_{device}"
        output.mkdir()
        predictor.predict_from_files_sequential(str(tmp_path / "images"), str(output), overwrite=True)
        prediction = sitk.ReadImage(str(output / held_out.name.replace("_0000", "")))
        assert prediction.GetSize() == sitk.ReadImage(str(held_out)).GetSize()
        assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= set(LABELS.values())


#: nnU-Net's default planner plans a 3d_lowres stage and the cascade for the synthetic 3D dataset at this GPU
#: memory target (GB): the 3d_fullres patch then covers less than a quarter of the median image
CASCADE_MEMORY_TARGET = "0.015"
CASCADE_PLANS = "nnUNetPlansCascade"
#: (epochs, iterations) of each cascade stage
CASCADE_SCHEDULE = (2, 4)


@pytest.mark.slow  # the default run: every trainer's cascade stage input in test_edge_plans.py, its maps in
# test_attention_maps.py
def test_cascade_trains_predicts_and_shows_attention_maps_through_the_stock_commands(prepared_workdirs, tmp_path,
                                                                                      monkeypatch, capsys):
    """nnU-Net's planner plans 3d_lowres -> 3d_cascade_fullres; the reference trainer trains both stages with
    ``nnUNetv2_train`` (fold ``all``, whose validation writes the lowres segmentation of every training case for
    the next stage), ``nnUNetv2_predict`` runs the lowres model, then the cascade model with
    ``-prev_stage_predictions``, and ``attention-maps`` runs on the cascade model with the same folder."""
    configuration = "3d_fullres"
    workdir, spec = prepared_workdirs(configuration), DEMO_DATASETS[configuration]
    environment = nnunet_environment(workdir, "cpu")
    log = tmp_path / "cascade.log"
    run_nnunet_command(["nnUNetv2_plan_experiment", "-d", spec.dataset_id, "-gpu_memory_target", CASCADE_MEMORY_TARGET,
                        "-overwrite_plans_name", CASCADE_PLANS], environment, log)
    preprocessed = Path(environment["nnUNet_preprocessed"]) / spec.folder_name
    plans = json.loads((preprocessed / f"{CASCADE_PLANS}.json").read_text())["configurations"]
    assert plans["3d_lowres"]["next_stage"] == "3d_cascade_fullres"
    assert plans["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    run_nnunet_command(["nnUNetv2_preprocess", "-d", spec.dataset_id, "-plans_name", CASCADE_PLANS,
                        "-c", "3d_lowres", "3d_fullres", "-np", "2"], environment, log)

    short_trainer = write_short_schedule_trainer(workdir / "trainers", TRAINERS[REFERENCE_TRAINER], *CASCADE_SCHEDULE,
                                                 seed=SEED, validation_mirroring=False)
    environment = with_ext_trainer_folder(environment, workdir / "trainers")
    results = Path(environment["nnUNet_results"]) / spec.folder_name
    for stage in ("3d_lowres", "3d_cascade_fullres"):
        run_nnunet_command(["nnUNetv2_train", spec.dataset_id, stage, "all", "-tr", short_trainer, "-p", CASCADE_PLANS,
                            "-device", "cpu"], environment, log)
        if stage == "3d_lowres":
            next_stage = results / f"{short_trainer}__{CASCADE_PLANS}__3d_lowres" / "predicted_next_stage"
            assert len(list((next_stage / "3d_cascade_fullres").glob("train_*"))) == spec.n_train

    raw = Path(environment["nnUNet_raw"]) / spec.folder_name
    lowres, cascade = tmp_path / "lowres", tmp_path / "cascade"
    for stage, output, extra in [("3d_lowres", lowres, []),
                                 ("3d_cascade_fullres", cascade, ["-prev_stage_predictions", lowres])]:
        run_nnunet_command(predict_arguments(raw / "imagesTs", output, spec.dataset_id, stage, short_trainer, "all",
                                             "cpu", "-p", CASCADE_PLANS, "--disable_tta", *extra), environment, log)
    references = sorted((raw / "labelsTs").glob("*.nii.gz"))
    assert sorted(p.name for p in cascade.glob("*.nii.gz")) == [r.name for r in references]
    for reference in references:
        predicted = sitk.ReadImage(str(cascade / reference.name))
        assert predicted.GetSize() == sitk.ReadImage(str(reference)).GetSize()
        assert set(np.unique(sitk.GetArrayFromImage(predicted))) <= set(LABELS.values())

    monkeypatch.setenv("nnUNet_extTrainer", environment["nnUNet_extTrainer"])
    model_folder = results / f"{short_trainer}__{CASCADE_PLANS}__3d_cascade_fullres"
    images = tmp_path / "images"
    images.mkdir()
    first = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))[0]
    (images / first.name).symlink_to(first)
    arguments = ["attention-maps", "-i", str(images), "-o", str(tmp_path / "maps"), "-m", str(model_folder),
                 "-f", "all", "--device", "cpu", "--disable_tta"]
    assert cli.main(arguments) == 2
    assert "pass that folder with -prev_stage_predictions" in capsys.readouterr().err
    assert cli.main([*arguments, "-prev_stage_predictions", str(lowres)]) == 0
    case = first.name.replace("_0000.nii.gz", "")
    index = json.loads((tmp_path / "maps" / case / "maps.json").read_text())
    assert index
    for name in index:
        assert sitk.ReadImage(str(tmp_path / "maps" / case / f"{name}.nii.gz")).GetSize() == \
            sitk.ReadImage(str(first)).GetSize()


#: the fine-tuning target: the 2d demo dataset with the cuboid merged into the ellipsoid (3 classes instead of 4)
FINE_TUNING_DATASET = DEMO_DATASETS["2d"].dataset_id + 2
MERGED_LABELS = {"background": 0, "ellipsoid": 1, "inclusion": 2}


@pytest.fixture(scope="module")
def fine_tuning_workdir(prepared_workdirs):
    """The 2d workdir with a second dataset of another class count, prepared as nnU-Net's fine-tuning guide says:
    fingerprint, the source dataset's plans moved to it, preprocessed with them."""
    workdir, spec = prepared_workdirs("2d"), DEMO_DATASETS["2d"]
    environment = nnunet_environment(workdir, "cpu")
    source = Path(environment["nnUNet_raw"]) / spec.folder_name
    target = Path(environment["nnUNet_raw"]) / f"Dataset{FINE_TUNING_DATASET:03d}_SynthMerged"
    (target / "imagesTr").mkdir(parents=True)
    (target / "labelsTr").mkdir()
    for image in (source / "imagesTr").iterdir():
        (target / "imagesTr" / image.name).symlink_to(image)
    for label_file in (source / "labelsTr").iterdir():
        label = sitk.ReadImage(str(label_file))
        merged = sitk.GetImageFromArray(np.where(sitk.GetArrayFromImage(label) == 3, 1, sitk.GetArrayFromImage(label)))
        merged.CopyInformation(label)
        sitk.WriteImage(merged, str(target / "labelsTr" / label_file.name))
    dataset_json = json.loads((source / "dataset.json").read_text())
    (target / "dataset.json").write_text(json.dumps({**dataset_json, "labels": MERGED_LABELS}))
    log = workdir / "fine_tuning.log"
    run_nnunet_command(["nnUNetv2_extract_fingerprint", "-d", FINE_TUNING_DATASET, "-np", "2"], environment, log)
    run_nnunet_command(["nnUNetv2_move_plans_between_datasets", "-s", spec.dataset_id, "-t", FINE_TUNING_DATASET,
                        "-sp", "nnUNetPlans", "-tp", "nnUNetPlans"], environment, log)
    # nnUNetv2_preprocess reads the dataset.json beside the plans, which only the planner copies there
    preprocessed = Path(environment["nnUNet_preprocessed"]) / target.name
    (preprocessed / "dataset.json").write_text((target / "dataset.json").read_text())
    run_nnunet_command(["nnUNetv2_preprocess", "-d", FINE_TUNING_DATASET, "-c", "2d", "-np", "2"], environment, log)
    return workdir


@pytest.mark.slow  # the default run: every trainer's checkpoint through nnU-Net's own -pretrained_weights loader to
# another class count, in test_fine_tuning.py
def test_fine_tunes_from_its_checkpoint_on_a_dataset_with_other_classes(fine_tuning_workdir, trained_model, tmp_path):
    """``nnUNetv2_train -pretrained_weights`` from the trainer's own checkpoint on the 4-class dataset to the
    3-class one: it starts from every pretrained weight but the class heads (one short step later the weights are
    still within 5% of the pretrained ones, where a fresh network would differ by about their norm), and its class
    heads give 3 outputs."""
    workdir, trainer_name = fine_tuning_workdir, "nnUNetTrainerMTUNet"
    environment, source_trainer = trained_model(trainer_name, "2d", brief=True)
    source_checkpoint = model_folder_of(environment, "2d", source_trainer) / "fold_0" / "checkpoint_final.pth"
    fine_tuner = write_short_schedule_trainer(workdir / "trainers", TRAINERS[trainer_name], 1, 2,
                                              architecture_kwargs=NARROW_ARCHITECTURE_KWARGS.get(trainer_name),
                                              seed=SEED, validation_mirroring=False)
    log = tmp_path / "fine_tuning.log"
    run_nnunet_command(["nnUNetv2_train", FINE_TUNING_DATASET, "2d", "0", "-tr", fine_tuner, "-device", "cpu",
                        "-pretrained_weights", source_checkpoint], environment, log)
    assert f"Loading pretrained weights from file  {source_checkpoint}" in log.read_text()
    results = Path(environment["nnUNet_results"]) / f"Dataset{FINE_TUNING_DATASET:03d}_SynthMerged"
    tuned = torch.load(results / f"{fine_tuner}__nnUNetPlans__2d" / "fold_0" / "checkpoint_final.pth",
                       map_location="cpu", weights_only=False)["network_weights"]
    pretrained = torch.load(source_checkpoint, map_location="cpu", weights_only=False)["network_weights"]
    heads = [key for key in tuned if ".seg_layers." in key]
    assert heads and all(tuned[key].shape[0] == len(MERGED_LABELS) for key in heads)
    transferred = [key for key in tuned if key not in heads and tuned[key].is_floating_point()]
    assert all(tuned[key].shape == pretrained[key].shape for key in transferred)
    difference = torch.cat([(tuned[key] - pretrained[key]).flatten() for key in transferred]).norm()
    assert difference < 0.05 * torch.cat([pretrained[key].flatten() for key in transferred]).norm()


#: a memory target small enough that MT-UNet's plan for the 2d demo dataset differs from nnU-Net's (measured:
#: MT-UNet 56 x 64 in 4 stages, nnU-Net's U-Net 64 x 80 in 5, both at batch 2)
SMALL_MEMORY_TARGET_GB = 0.05


@pytest.mark.slow  # the default run: the plans files `plan` writes, in nnU-Net's format (test_planning.py), and
# every trainer's network built from nnU-Net's planner output (test_real_plans.py)
def test_stock_commands_train_and_predict_with_the_plans_made_for_a_trainer(prepared_workdirs, tmp_path):
    """``nnunet-attention plan --preprocess`` for MT-UNet, then the stock ``nnUNetv2_train -p`` and
    ``nnUNetv2_predict -p`` with those plans: the model is trained on the planned patch and predicts every case."""
    trainer_name, configuration = "nnUNetTrainerMTUNet", "2d"
    workdir = prepared_workdirs(configuration)
    spec = DEMO_DATASETS[configuration]
    environment = nnunet_environment(workdir, "cpu")
    run_nnunet_command([sys.executable, "-m", "nnunet_attention.cli", "plan", "-d", spec.dataset_id, "-tr",
                        trainer_name, "-c", configuration, "--preprocess", "-np", "1", "-gpu_memory_target",
                        SMALL_MEMORY_TARGET_GB], environment, tmp_path / "plan.log")
    plans_name = "nnUNetPlans_MTUNet"
    plans_file = Path(environment["nnUNet_preprocessed"]) / spec.folder_name / f"{plans_name}.json"
    planned = json.loads(plans_file.read_text())["configurations"][configuration]
    default = json.loads(plans_file.with_name("nnUNetPlans.json").read_text())["configurations"][configuration]
    assert planned["patch_size"] != default["patch_size"]

    short_trainer = write_short_schedule_trainer(workdir / "trainers", TRAINERS[trainer_name], 2, 4, seed=SEED,
                                                 validation_mirroring=False)
    environment = with_ext_trainer_folder(environment, workdir / "trainers")
    run_nnunet_command(["nnUNetv2_train", spec.dataset_id, configuration, "0", "-tr", short_trainer, "-p", plans_name,
                        "-device", "cpu"], environment, tmp_path / "train.log")
    model_folder = Path(environment["nnUNet_results"]) / spec.folder_name / f"{short_trainer}__{plans_name}__2d"
    trained_plans = json.loads((model_folder / "plans.json").read_text())["configurations"][configuration]
    assert trained_plans["patch_size"] == planned["patch_size"]
    assert (model_folder / "fold_0" / "checkpoint_final.pth").is_file()
    predictions = tmp_path / "predictions"
    run_nnunet_command(predict_arguments(Path(environment["nnUNet_raw"]) / spec.folder_name / "imagesTs", predictions,
                                         spec.dataset_id, configuration, short_trainer, "0", "cpu", "-p", plans_name,
                                         "--disable_tta"),
                       environment, tmp_path / "predict.log")
    assert len(list(predictions.glob("*.nii.gz"))) == spec.n_test


#: the worked example of documentation/your_own_network.md: a package of its own, outside this one
EXAMPLE_PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "scse_unet"


def test_a_network_from_its_own_package_passes_the_contract_and_learns_through_the_stock_commands(
        prepared_workdirs, monkeypatch):
    """The guide's path: the example package on the Python path (as ``pip install -e .`` puts it), its trainer
    folder in ``nnUNet_extTrainer``; ``check-architecture`` passes for its trainer and for its network class; a
    seeded short schedule of its trainer trains through ``nnUNetv2_train`` and ``nnUNetv2_predict`` segments the
    held-out cases better than the same network untrained."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PACKAGE))
    for subject in ("scse_unet.trainer:nnUNetTrainerSCSEUNet", "scse_unet.network:SCSEUNet"):
        assert cli.main(["check-architecture", subject, "--quick"]) == 0, subject
    from scse_unet.trainer import nnUNetTrainerSCSEUNet

    configuration, (epochs, iterations, bar) = "2d", SCHEDULES["2d"]
    workdir = prepared_workdirs(configuration)
    short_trainer = write_short_schedule_trainer(workdir / "scse_trainers", nnUNetTrainerSCSEUNet, epochs,
                                                 iterations, seed=SEED, validation_mirroring=False)
    environment = nnunet_environment(workdir, "cpu")
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLE_PACKAGE), environment.get("PYTHONPATH"))
                                                if p)
    environment["nnUNet_extTrainer"] = str(EXAMPLE_PACKAGE / "nnunet_trainers")
    environment = with_ext_trainer_folder(environment, workdir / "scse_trainers")
    spec = DEMO_DATASETS[configuration]
    run_nnunet_command(["nnUNetv2_train", spec.dataset_id, configuration, "0", "-tr", short_trainer, "-device", "cpu"],
                       environment, workdir / f"{short_trainer}.log")
    raw_dataset = workdir / "nnUNet_raw" / spec.folder_name
    output = workdir / "predictions" / short_trainer
    run_nnunet_command(predict_arguments(raw_dataset / "imagesTs", output, spec.dataset_id, configuration,
                                         short_trainer, "0", "cpu", "--disable_tta"),
                       environment, workdir / f"{short_trainer}_predict.log")
    trained = dice_of_predictions(raw_dataset, output)
    monkeypatch.setenv("nnUNet_extTrainer", environment["nnUNet_extTrainer"])  # the short trainer, found by name
    untrained = untrained_dice(workdir, configuration, nnUNetTrainerSCSEUNet)
    assert untrained < bar < trained, f"untrained {untrained:.3f}, bar {bar}, trained {trained:.3f}"
