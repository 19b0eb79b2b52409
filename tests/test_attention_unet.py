"""Attention U-Net specifics: gate placement, width and θ strides, the official multi-gate wrapping, gate
coefficients (the shared contract is in test_architecture_contract.py)."""

import math

import numpy as np
import pytest
import torch
from helpers import make_plan
from nnunet_attention.architectures import AttentionUNet, UNetPlan, capture_attention_maps
from nnunet_attention.architectures.attention_unet import GatingSignalGate
from nnunet_attention.architectures.blocks.attention_gate import AttentionGate, MultiAttentionGate
from torch import nn

from nnunet_attention.plan_presets import PLAN_PRESETS
from nnunet_attention.trainer_step import build_network

NUM_CLASSES = 3
INPUT_CHANNELS = 2


def build(kwargs, patch, deep_supervision, seed=0, **options):
    torch.manual_seed(seed)
    network = AttentionUNet(UNetPlan.from_arch_kwargs(kwargs, patch), INPUT_CHANNELS, NUM_CLASSES, deep_supervision,
                            **options)
    network.apply(network.initialize)
    return network


def gated_skips(network: AttentionUNet) -> dict[int, MultiAttentionGate]:
    """Skip level -> its gates (decoder stage s filters the skip of level n_stages - 2 - s)."""
    n_stages = len(network.decoder.skip_filters) + 1
    gated = {}
    for s, skip_filter in enumerate(network.decoder.skip_filters):
        if isinstance(skip_filter, GatingSignalGate):
            skip_filter = skip_filter.gate
        if isinstance(skip_filter, MultiAttentionGate):
            gated[n_stages - 2 - s] = skip_filter
    return gated


@pytest.mark.parametrize("preset", ["acdc-2d", "acdc-3d_fullres"])
def test_acdc_topology_two_gates_per_skip_as_wide_as_the_skip(preset):
    """On nnU-Net's ACDC plans, built as the trainer builds them: every skip but the highest-resolution one has
    two gates whose intermediate width is the skip's channels and whose θ steps by the plan's stride to the level
    below; the gates are combined by a 1x1 conv (2C -> C), norm and nonlinearity; the deepest gates read the
    bottleneck through a 1x1 conv-norm-nonlin."""
    plan = PLAN_PRESETS[preset]
    network = build_network("nnUNetTrainerAttentionUNet", plan)
    features = plan.configuration_manager().network_arch_init_kwargs["features_per_stage"]
    strides = plan.configuration_manager().network_arch_init_kwargs["strides"]
    gated = gated_skips(network)
    assert sorted(gated) == list(range(1, len(features) - 1))
    for level, multi_gate in gated.items():
        assert len(multi_gate.gates) == 2
        for gate in multi_gate.gates:
            assert gate.theta.in_channels == gate.theta.out_channels == gate.phi.out_channels == features[level]
            assert gate.phi.in_channels == features[level + 1]
            assert list(gate.theta.kernel_size) == list(gate.theta.stride) == list(strides[level + 1])
        combine_conv, norm, nonlin = multi_gate.combine
        assert (combine_conv.in_channels, combine_conv.out_channels) == (2 * features[level], features[level])
        assert math.prod(combine_conv.kernel_size) == 1 and isinstance(norm, nn.InstanceNorm2d | nn.InstanceNorm3d)
        assert isinstance(nonlin, nn.LeakyReLU)
    deepest = network.decoder.skip_filters[0]
    assert isinstance(deepest, GatingSignalGate)
    assert deepest.gating_signal[0].in_channels == deepest.gating_signal[0].out_channels == features[-1]
    assert math.prod(deepest.gating_signal[0].kernel_size) == 1


@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", [(2, 6, False), (3, 5, True), (3, 7, False)])
def test_gate_theta_stride_is_the_plan_stride_between_levels(spatial_dims, n_stages, anisotropic):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic)
    network = build(kwargs, patch, deep_supervision=False, gate_top_skip=True, gates_per_skip=1)
    gated = gated_skips(network)
    assert sorted(gated) == list(range(n_stages - 1))
    for level, multi_gate in gated.items():
        (gate,) = multi_gate.gates
        assert list(gate.theta.stride) == list(kwargs["strides"][level + 1])
        assert list(gate.theta.kernel_size) == list(kwargs["strides"][level + 1])


@pytest.mark.parametrize("gate_top_skip", [False, True])
@pytest.mark.parametrize("gates_per_skip", [1, 2])
def test_gate_coefficients_are_captured_in_unit_interval_without_changing_outputs(gate_top_skip, gates_per_skip):
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    network = build(kwargs, patch, deep_supervision=False, gate_top_skip=gate_top_skip,
                    gates_per_skip=gates_per_skip).eval()
    image = torch.randn(1, INPUT_CHANNELS, *patch) * 10
    with torch.no_grad():
        plain_output = network(image)
        with capture_attention_maps(network) as maps:
            probed_output = network(image)
    torch.testing.assert_close(plain_output, probed_output)
    gated_levels = range(0 if gate_top_skip else 1, 4)
    assert len(maps) == len(gated_levels) * gates_per_skip
    cumulative = np.cumprod(np.array(kwargs["strides"]), axis=0)
    expected_sizes = sorted(tuple(int(p // c) for p, c in zip(patch, cumulative[level]))
                            for level in gated_levels for _ in range(gates_per_skip))
    assert sorted(tuple(m.shape[2:]) for m in maps.values()) == expected_sizes
    for coefficients in maps.values():
        assert coefficients.shape[:2] == (1, 1)
        assert coefficients.min() >= 0 and coefficients.max() <= 1
    # the probes are removed again: a later forward pass records nothing new
    recorded = dict(maps)
    network(image * 2)
    assert all(maps[name] is recorded[name] for name in recorded)


def test_bad_gate_count_is_refused():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    with pytest.raises(ValueError, match="gates_per_skip must be at least 1, got 0"):
        build(kwargs, patch, deep_supervision=False, gates_per_skip=0)


def test_gates_see_the_plan_norm_in_their_output_transform():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    gate = next(m for m in build(kwargs, patch, False).modules() if isinstance(m, AttentionGate))
    assert isinstance(gate.output[1], nn.InstanceNorm2d) and math.prod(gate.output[0].kernel_size) == 1
