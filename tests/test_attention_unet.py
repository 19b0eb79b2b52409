"""Attention U-Net specifics: gate placement, θ strides, gate coefficients (the shared contract is in
test_architecture_contract.py)."""


import numpy as np
import pytest
import torch
from nnunet_attention.architectures import AttentionUNet, capture_attention_maps
from nnunet_attention.architectures.blocks.attention_gate import AttentionGate
from plan_factory import make_plan

NUM_CLASSES = 3
INPUT_CHANNELS = 2


def build(kwargs, deep_supervision, seed=0, **extra):
    torch.manual_seed(seed)
    network = AttentionUNet(INPUT_CHANNELS, NUM_CLASSES, deep_supervision=deep_supervision, **kwargs, **extra)
    network.apply(network.initialize)
    return network


@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", [(2, 6, False), (3, 5, True), (3, 7, False)])
def test_gate_theta_stride_is_the_plan_stride_between_levels(spatial_dims, n_stages, anisotropic):
    kwargs, _ = make_plan(spatial_dims, n_stages, anisotropic)
    network = build(kwargs, deep_supervision=False, gate_top_skip=True)
    gates = [m for m in network.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == n_stages - 1
    # decoder stage s gates skip level n_stages-2-s; θ steps from that level to the level below it
    for s, skip_filter in enumerate(network.decoder.skip_filters):
        gate = skip_filter if isinstance(skip_filter, AttentionGate) else skip_filter.gate
        level = n_stages - 2 - s
        assert list(gate.theta.stride) == list(kwargs["strides"][level + 1])
        assert list(gate.theta.kernel_size) == list(kwargs["strides"][level + 1])


@pytest.mark.parametrize("gate_top_skip", [False, True])
def test_gate_coefficients_are_captured_in_unit_interval_without_changing_outputs(gate_top_skip):
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    network = build(kwargs, deep_supervision=False, gate_top_skip=gate_top_skip).eval()
    image = torch.randn(1, INPUT_CHANNELS, *patch) * 10
    with torch.no_grad():
        plain_output = network(image)
        with capture_attention_maps(network) as maps:
            probed_output = network(image)
    torch.testing.assert_close(plain_output, probed_output)
    assert len(maps) == 4 if gate_top_skip else 3
    cumulative = np.cumprod(np.array(kwargs["strides"]), axis=0)
    gated_levels = cumulative[: len(maps) + (not gate_top_skip)]
    expected_sizes = {tuple(int(p // c) for p, c in zip(patch, cum)) for cum in gated_levels}
    for coefficients in maps.values():
        assert coefficients.shape[:2] == (1, 1)
        assert tuple(coefficients.shape[2:]) in expected_sizes
        assert coefficients.min() >= 0 and coefficients.max() <= 1
    # the probes are removed again: a later forward pass records nothing
    network(image)
    assert len(maps) == (4 if gate_top_skip else 3)


def test_highest_resolution_skip_is_ungated_by_default():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    network = build(kwargs, deep_supervision=False)
    with capture_attention_maps(network) as maps:
        network(torch.randn(1, INPUT_CHANNELS, *patch))
    smallest_gated = min(m.shape[-1] for m in maps.values())
    largest_gated = max(m.shape[-1] for m in maps.values())
    assert largest_gated == patch[-1] // 2 and smallest_gated == patch[-1] // 4
