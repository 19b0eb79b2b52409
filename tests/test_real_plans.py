"""Networks built through each trainer from plans written by nnU-Net's own planners on synthetic data."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import ANY_PATCH_TRAINERS
from nnunet_attention.trainers import TRAINERS
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_attention.synth import SynthSpec, write_dataset

DATASETS = {
    "2d": SynthSpec(dataset_id=501, name="Plan2D", shape=(80, 100), n_train=5, n_test=1),
    "3d": SynthSpec(
        dataset_id=502, name="Plan3D", shape=(16, 40, 52), spacing=(3.5, 0.9, 0.9), n_channels=2, n_train=5, n_test=1
    ),
}
PLANNERS = {"nnUNetPlans": "ExperimentPlanner", "nnUNetResEncUNetMPlans": "nnUNetPlannerResEncM"}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """nnUNet_preprocessed folder holding plain and ResEnc-M plans for a 2D and an anisotropic 3D dataset."""
    root = tmp_path_factory.mktemp("plans")
    environment = {
        **os.environ,
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "pre"),
        "nnUNet_results": str(root / "res"),
    }
    environment.pop("nnUNet_n_proc_DA", None)
    for spec in DATASETS.values():
        write_dataset(spec, root / "raw")
    # what nnUNetv2_extract_fingerprint and nnUNetv2_plan_experiment -pl PLANNER call, in one interpreter (one start
    # instead of six)
    identifiers = [spec.dataset_id for spec in DATASETS.values()]
    planning = "\n".join([
        "from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments",
        f"extract_fingerprints({identifiers}, num_processes=2)",
        *(f"plan_experiments({identifiers}, {planner!r})" for planner in PLANNERS.values()),
    ])
    subprocess.run([sys.executable, "-c", planning], env=environment, check=True, capture_output=True)
    return root / "pre"


def planned_configurations(preprocessed: Path):
    for spec in DATASETS.values():
        for plans_name in PLANNERS:
            plans = json.loads((preprocessed / spec.folder_name / f"{plans_name}.json").read_text())
            for configuration in plans["configurations"]:
                if configuration in ("2d", "3d_fullres", "3d_lowres"):
                    yield spec, plans, configuration


@pytest.mark.parametrize("trainer_name", ANY_PATCH_TRAINERS)  # the others are planned by test_planning.py
def test_network_from_nnunet_planner_runs_at_planned_patch(planned, trainer_name):
    seen = set()
    for spec, plans, configuration in planned_configurations(planned):
        configuration_manager = PlansManager(plans).get_configuration(configuration)
        patch = configuration_manager.patch_size
        strides = configuration_manager.pool_op_kernel_sizes
        for deep_supervision in (True, False) if TRAINERS[trainer_name].supports_deep_supervision else (False,):
            network = TRAINERS[trainer_name].build_network_architecture(
                PlansManager(plans),
                configuration_manager,
                spec.n_channels,
                4,
                deep_supervision,
            )
            network.train(deep_supervision)  # without deep supervision: one tensor, as the predictor sees it
            with torch.no_grad():
                outputs = network(torch.randn(1, spec.n_channels, *patch))
            if deep_supervision:
                # one output per scale the trainer's loss and data loader use (nnU-Net's n_stages - 1, or a prefix)
                trainer_view = SimpleNamespace(
                    enable_deep_supervision=True, configuration_manager=configuration_manager
                )
                scales = TRAINERS[trainer_name]._get_deep_supervision_scales(trainer_view)
                assert 2 <= len(outputs) == len(scales) <= len(strides) - 1
                assert list(outputs[1].shape[2:]) == [p // s for p, s in zip(patch, strides[1])]
                outputs = outputs[0]
            assert list(outputs.shape) == [1, 4, *patch]
        seen.add((plans["plans_name"], configuration_manager.network_arch_class_name.rsplit(".", 1)[-1], len(patch)))
    # both planners, both plan kinds, both dimensionalities were exercised
    assert {kind for _, kind, _ in seen} == {"PlainConvUNet", "ResidualEncoderUNet"}
    assert {dims for _, _, dims in seen} == {2, 3}


def test_non_unet_plan_gets_a_clear_error(planned):
    spec, plans, configuration = next(planned_configurations(planned))
    plans = json.loads(json.dumps(plans))
    plans["configurations"][configuration]["architecture"]["network_class_name"] = (
        "dynamic_network_architectures.architectures.primus.Primus"
    )
    configuration_manager = PlansManager(plans).get_configuration(configuration)
    with pytest.raises(ValueError, match="names the architecture .*Primus; attention trainers build on U-Net plans"):
        TRAINERS["nnUNetTrainerAttentionUNet"].build_network_architecture(
            PlansManager(plans), configuration_manager, 1, 4, True
        )
