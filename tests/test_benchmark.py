"""The side-by-side benchmark: exact FLOP counting, the registry as the list of networks, the presets and a
plans file building every trainer's network, and one small run through the command line."""

import json

import pytest
import torch
import torch.nn.functional as F
from nnunet_attention.trainers import TRAINERS
from torch import nn

from nnunet_attention import cli
from nnunet_attention.benchmark import REFERENCE, build_network, forward_flops, network_names
from nnunet_attention.plan_presets import PLAN_PRESETS, BenchmarkPlan, plain_unet_architecture


class ConvThenAttention(nn.Module):
    """A 3x3 conv (1 -> 4 channels) and self-attention over its 64 positions with 2 heads of 2 channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2).reshape(x.shape[0], 64, 2, 2).transpose(1, 2)
        return F.scaled_dot_product_attention(tokens, tokens, tokens)


def test_forward_flops_count_convolutions_and_attention_exactly():
    conv = 2 * 4 * 9 * 8 * 8  # multiply-adds per output voxel and channel
    attention = 2 * (2 * 2 * 64 * 64 * 2)  # QK^T and AV, per head: 64 x 64 x 2 multiply-adds each
    assert forward_flops(ConvThenAttention(), torch.randn(1, 1, 8, 8)) == conv + attention


def test_every_registered_trainer_is_benchmarked_beside_the_reference():
    assert network_names() == [REFERENCE, *sorted(TRAINERS)]
    with pytest.raises(ValueError, match="unknown trainer\\(s\\) \\['nnUNetTrainerNope'\\]"):
        network_names(["nnUNetTrainerNope"])


@pytest.mark.parametrize("preset", sorted(PLAN_PRESETS))
def test_every_preset_builds_every_network(preset):
    plan = PLAN_PRESETS[preset]
    for name in network_names():
        network = build_network(name, plan, for_training=False)
        assert sum(p.numel() for p in network.parameters()) > 0, name


def write_tiny_plans(folder, dataset_json=True):
    """A 2d plan of 3 stages on 32 x 32 patches (nnU-Net's format), with a dataset.json of 2 channels, 3 labels."""
    configuration = {
        "patch_size": [32, 32], "batch_size": 2, "spacing": [1.0, 1.0], "median_image_size_in_voxels": [40.0, 36.0],
        "architecture": plain_unet_architecture([[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]], 64),
    }
    plans = {"dataset_name": "Dataset123_Tiny", "original_median_shape_after_transp": [3, 40, 36],
             "configurations": {"2d": configuration}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    if dataset_json:
        labels = {"background": 0, "a": 1, "b": 2}
        (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T2"}, "labels": labels}))
    return folder / "nnUNetPlans.json"


def test_plans_file_gives_channels_classes_and_the_median_case(tmp_path):
    plan = BenchmarkPlan.from_plans_file(write_tiny_plans(tmp_path), "2d")
    assert (plan.input_channels, plan.num_classes, plan.case_shape) == (2, 3, (3, 40, 36))
    with pytest.raises(ValueError, match="has no configuration '3d_fullres'; it has \\['2d'\\]"):
        BenchmarkPlan.from_plans_file(tmp_path / "nnUNetPlans.json", "3d_fullres")


def test_benchmark_command_writes_a_table_with_ratios_and_a_chart(tmp_path, capsys):
    plans_file = write_tiny_plans(tmp_path / "plans")
    trainer = "nnUNetTrainerAttentionUNet"
    arguments = ["benchmark", "--plans", str(plans_file), "--configuration", "2d", "--trainers", trainer,
                 "--steps", "1", "--device", "cpu", "--output", str(tmp_path / "out")]
    assert cli.main(arguments) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| Dataset123_Tiny")]
    assert [row.split(" | ")[1] for row in table] == [REFERENCE, trainer]
    reference_cells = table[0].strip("| ").split(" | ")
    assert reference_cells[3::2] == ["1.00"] * 6  # every figure's ratio to itself
    measured = json.loads((tmp_path / "out" / "benchmark.json").read_text())["Dataset123_Tiny 2d [32, 32] b2"]
    plan = BenchmarkPlan.from_plans_file(plans_file, "2d")
    for name in (REFERENCE, trainer):
        expected_parameters = sum(p.numel() for p in build_network(name, plan).parameters())
        assert measured[name]["parameters"] == expected_parameters
        assert measured[name]["step_seconds"] > 0 and measured[name]["inference_seconds"] > 0
    assert (tmp_path / "out" / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "benchmark.md").read_text().count("| Dataset123_Tiny") == 2


def test_benchmark_refuses_a_plans_file_without_its_dataset_json(tmp_path, capsys):
    plans_file = write_tiny_plans(tmp_path, dataset_json=False)
    assert cli.main(["benchmark", "--plans", str(plans_file), "--configuration", "2d", "--device", "cpu"]) == 2
    assert "no dataset.json beside" in capsys.readouterr().err
