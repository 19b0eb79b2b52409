"""The values ``nnunet-attention attention-maps`` exports, recomputed from their formulas (float64).

:class:`ProbedNetwork` is what nnU-Net's predictor runs for the export: its logits must be the network's, and
each map channel the probe's summary of the captured map resized to the patch; for the root-mean-square maps
(unbounded, so a range check proves little) the captured map itself must be the block's response computed from
the paper's formula. The end-to-end tests check the maps in the image's geometry.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunet_attention.architectures.blocks.attention_probe import (
    AttentionProbe,
    attention_probes,
    capture_attention_maps,
)
from nnunet_attention.architectures.blocks.global_aggregation import GlobalAggregation
from nnunet_attention.architectures.msga import GuidedAttentionScale
from nnunet_attention.trainers import TRAINERS
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from plan_factory import make_plan
from test_architecture_contract import INPUT_CHANNELS, NUM_CLASSES, build, open_zero_initialised_gates
from test_non_local import aggregation_reference
from trainer_harness import dataset_json_for, plans_for

from nnunet_attention.attention_maps import AttentionMapPredictor, ProbedNetwork, colour_scale, range_caption


def eval_network(trainer_name: str, spatial_dims: int, anisotropic: bool):
    kwargs, patch = make_plan(spatial_dims, 5, anisotropic)
    network = build(trainer_name, kwargs, patch, deep_supervision=False).double().eval()
    torch.manual_seed(1)
    open_zero_initialised_gates(network)
    return network, 3 * torch.randn(2, INPUT_CHANNELS, *patch, dtype=torch.float64)


def inputs_of(network: torch.nn.Module, module_type: type) -> dict[str, tuple]:
    """Run nothing; return a dict that fills with each ``module_type`` submodule's positional inputs per forward."""
    seen = {}
    for name, module in network.named_modules():
        if isinstance(module, module_type):
            module.register_forward_pre_hook(lambda _m, args, name=name: seen.__setitem__(name, args))
    return seen


def summary_reference(attention_map: torch.Tensor, channel_summary: str) -> torch.Tensor:
    """rms: ``sqrt(1/C Σ_c m_c²)`` per voxel, written as a loop over channels; single: the map."""
    if channel_summary == "single":
        return attention_map
    squares = sum(attention_map[:, c:c + 1] ** 2 for c in range(attention_map.shape[1]))
    return torch.sqrt(squares / attention_map.shape[1])


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)], ids=["2d", "3d"])
def test_exported_channels_are_the_logits_and_each_probes_summary_resized(trainer_name, spatial_dims, anisotropic):
    network, image = eval_network(trainer_name, spatial_dims, anisotropic)
    probed = ProbedNetwork(network)
    with torch.no_grad():
        exported = probed(image)
        with capture_attention_maps(network) as maps:
            logits = network(image)
    assert exported.shape == (2, NUM_CLASSES + len(maps), *image.shape[2:])
    assert probed.map_names == [probe.map_name for probe in attention_probes(network).values()]
    torch.testing.assert_close(exported[:, :NUM_CLASSES], logits, rtol=0, atol=0)
    for index, (name, probe) in enumerate(attention_probes(network).items()):
        expected = F.interpolate(summary_reference(maps[name], probe.channel_summary), size=image.shape[2:],
                                 mode="bilinear" if spatial_dims == 2 else "trilinear", align_corners=False)
        torch.testing.assert_close(exported[:, NUM_CLASSES + index:NUM_CLASSES + index + 1].double(), expected,
                                   rtol=1e-6, atol=1e-6, msg=lambda message, name=name: f"{name}: {message}")


@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)], ids=["2d", "3d"])
def test_non_local_maps_are_the_global_aggregation_response_of_the_papers_formula(spatial_dims, anisotropic):
    network, image = eval_network("nnUNetTrainerNonLocalUNet", spatial_dims, anisotropic)
    block_inputs = inputs_of(network, GlobalAggregation)
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(image)
    assert len(block_inputs) == 2
    for name, (features,) in block_inputs.items():
        with torch.no_grad():
            expected = aggregation_reference(network.get_submodule(name), features)
        torch.testing.assert_close(maps[f"{name}.attention_probe"], expected, rtol=1e-10, atol=1e-10)


def test_msga_maps_are_the_step_one_guided_attention_of_the_papers_formula():
    """``A_s = conv1x1((PAM(x) + CAM(x)) * conv(reconstruction))`` of step 1 at each scale, per probe."""
    network, image = eval_network("nnUNetTrainerMSGA", 2, False)
    scale_inputs = inputs_of(network, GuidedAttentionScale)
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(image)
    for s in range(len(network.scale_levels)):
        scale = network.guided_attention[0][s]
        step_input, reconstruction = scale_inputs[f"guided_attention.0.{s}"]
        with torch.no_grad():
            expected = scale.combine((scale.position(step_input) + scale.channel(step_input))
                                     * scale.semantic(reconstruction))
        torch.testing.assert_close(maps[f"attention_probes.{s}"], expected, rtol=1e-10, atol=1e-10)


class ConstantMapNetwork(torch.nn.Module):
    """Zero logits and one attention map that is ``value`` everywhere: ``(B, C, *S)`` -> ``(B, classes, *S)``."""

    def __init__(self, num_classes: int, value: float):
        super().__init__()
        self.num_classes, self.value = num_classes, value
        self.probe = AttentionProbe("constant map")
        self.probe.map_name = "constant"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.probe(torch.full_like(x[:, :1], self.value))
        return torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])


def test_stitching_keeps_small_map_values_in_the_volume_corners():
    """A map that is 0.03 everywhere, stitched from overlapping 3D patches with nnU-Net's Gaussian weights and
    mirroring, is 0.03 everywhere. In nnU-Net's float16 buffer the corners covered by one patch came out 0."""
    kwargs, patch = make_plan(3, 4, anisotropic=False)
    plans_manager = PlansManager(plans_for(kwargs, patch))
    network = ProbedNetwork(ConstantMapNetwork(NUM_CLASSES, 0.03))
    predictor = AttentionMapPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.manual_initialization(
        network, plans_manager, plans_manager.get_configuration("harness"), [network.state_dict()],
        dataset_json_for(INPUT_CHANNELS, NUM_CLASSES), "ConstantMap", inference_allowed_mirroring_axes=(0, 1, 2))
    volume = torch.randn(INPUT_CHANNELS, *(int(1.5 * size) for size in patch))
    logits, maps = predictor.predict_logits_and_maps(volume)
    assert logits.shape == (NUM_CLASSES, *volume.shape[1:]) and maps.shape == (1, *volume.shape[1:])
    torch.testing.assert_close(maps, torch.full_like(maps, 0.03), rtol=1e-5, atol=0)


def test_colour_scale_spans_the_bulk_of_the_values_inside_the_value_range():
    generator = np.random.default_rng(0)
    values = generator.uniform(0.016, 0.071, 10_000)
    values[:5] = 1.0  # a few extreme voxels must not wash out the rest
    low, high = colour_scale(values, (0.0, 1.0))
    assert (low, high) == (np.percentile(values, 1), np.percentile(values, 99))
    assert 0.016 < low < 0.0172 and 0.0698 < high < 0.071
    assert colour_scale(values, (0.02, 0.05)) == (0.02, 0.05)
    constant_low, constant_high = colour_scale(np.full(100, 0.25), (0.0, 1.0))
    assert constant_low == 0.25 and 0.25 < constant_high < 0.2503
    assert range_caption(values, (low, high)) == (
        f"values 0.016 to 1; colours span {low:.3g} to {high:.3g} (percentiles 1-99)")
