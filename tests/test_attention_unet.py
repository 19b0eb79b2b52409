"""Attention U-Net over the plan matrix: shapes, deep supervision, state dicts, gradients, gates."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnunet_attention.architectures import AttentionUNet, capture_attention_maps
from nnunet_attention.architectures.blocks.attention_gate import AttentionGate
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from plan_factory import PLAN_MATRIX, make_plan

NUM_CLASSES = 3
INPUT_CHANNELS = 2


def build(kwargs, deep_supervision, seed=0, nnunet_init=True, **extra):
    torch.manual_seed(seed)
    network = AttentionUNet(INPUT_CHANNELS, NUM_CLASSES, deep_supervision=deep_supervision, **kwargs, **extra)
    if nnunet_init:
        network.apply(network.initialize)
    return network


def nnunet_deep_supervision_scales(strides):
    """nnU-Net's own scales for this plan, from the trainer method itself."""
    trainer_view = SimpleNamespace(
        enable_deep_supervision=True, configuration_manager=SimpleNamespace(pool_op_kernel_sizes=strides)
    )
    return nnUNetTrainer._get_deep_supervision_scales(trainer_view)


@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", PLAN_MATRIX)
def test_outputs_match_nnunet_deep_supervision_scales(spatial_dims, n_stages, anisotropic):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic)
    network = build(kwargs, deep_supervision=True)
    image = torch.randn(2, INPUT_CHANNELS, *patch)
    with torch.no_grad():
        outputs = network(image)
    scales = nnunet_deep_supervision_scales(kwargs["strides"])
    assert len(outputs) == len(scales) == n_stages - 1
    for output, scale in zip(outputs, scales):
        expected = [2, NUM_CLASSES, *[int(round(p * s)) for p, s in zip(patch, scale)]]
        assert list(output.shape) == expected

    network.decoder.deep_supervision = False
    with torch.no_grad():
        single = network(image)
    assert list(single.shape) == [2, NUM_CLASSES, *patch]
    torch.testing.assert_close(single, outputs[0])


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "resenc"])
@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", PLAN_MATRIX)
def test_same_state_dict_with_and_without_deep_supervision(spatial_dims, n_stages, anisotropic, residual):
    kwargs, _ = make_plan(spatial_dims, n_stages, anisotropic, residual=residual)
    with_ds = build(kwargs, deep_supervision=True).state_dict()
    without_ds = build(kwargs, deep_supervision=False)
    assert list(with_ds) == list(without_ds.state_dict())
    without_ds.load_state_dict(with_ds, strict=True)


@pytest.mark.parametrize(
    "spatial_dims,n_stages,anisotropic,residual",
    [(2, 5, False, False), (2, 4, True, True), (3, 4, True, False), (3, 5, False, True)],
)
def test_every_parameter_receives_a_gradient(spatial_dims, n_stages, anisotropic, residual):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic, residual=residual)
    # PyTorch's default init: nnU-Net's ResEnc init zeroes each block's last norm, which zeroes the
    # block's other gradients in the first step by design.
    network = build(kwargs, deep_supervision=True, nnunet_init=False)
    outputs = network(torch.randn(2, INPUT_CHANNELS, *patch))
    sum(o.square().mean() for o in outputs).backward()
    missing = [n for n, p in network.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


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


def test_unknown_plan_key_is_rejected_with_its_name():
    kwargs, _ = make_plan(2, 4, anisotropic=False)
    with pytest.raises(TypeError, match="unknown plan arch_kwargs \\['n_convs_per_stag'\\]"):
        AttentionUNet(1, 2, **kwargs, n_convs_per_stag=2)


def test_missing_encoder_depth_is_rejected():
    kwargs, _ = make_plan(2, 4, anisotropic=False)
    del kwargs["n_conv_per_stage"]
    with pytest.raises(TypeError, match="n_conv_per_stage', 'n_blocks_per_stage'"):
        AttentionUNet(1, 2, **kwargs)


def test_feature_map_size_estimate_grows_with_patch():
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    network = build(kwargs, deep_supervision=True)
    small = network.compute_conv_feature_map_size(patch)
    large = network.compute_conv_feature_map_size([p * 2 for p in patch])
    assert 0 < small < large
