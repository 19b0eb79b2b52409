"""The contract every trainer's architecture keeps, over the plan matrix (2D/3D, isotropic/[1,2,2], 4-7
stages). Parametrized over the trainer registry: a trainer added to the package is covered here.
"""

import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    ARCHITECTURES,
    INPUT_CHANNELS,
    NUM_CLASSES,
    PLAN_MATRIX,
    bf16_safe_kernels,
    build,
    disable_dropout,
    make_plan,
    open_zero_initialised_gates,
    output_tensors,
    training_loss,
)
from nnunet_attention.architectures import UNetPlan
from nnunet_attention.architectures.blocks.attention_probe import attention_probes, capture_attention_maps
from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention
from nnunet_attention.trainers import TRAINERS
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

#: parameters whose gradient is zero by construction: the Gaussian axial score offset (documented where it is
#: defined) and the biases of key projections (global aggregation, DANet position attention, Gaussian axial
#: attention), which add q·b to all of a query's scores alike, a constant the softmax cancels. Their
#: computed gradients are float rounding noise, exactly zero with some thread counts.
ZERO_GRADIENT_BY_DESIGN = ("global_attention.bias", "key.bias")


#: trainers whose networks give nnU-Net's multi-resolution deep-supervision outputs (the others refuse them)
DEEP_SUPERVISED = sorted(name for name, trainer in TRAINERS.items() if trainer.supports_deep_supervision)


def deep_supervision_scales(trainer_class, strides):
    """The scales a trainer's loss and data loader use for this plan, from the trainer method itself."""
    trainer_view = SimpleNamespace(
        enable_deep_supervision=True, configuration_manager=SimpleNamespace(pool_op_kernel_sizes=strides)
    )
    return trainer_class._get_deep_supervision_scales(trainer_view)


@pytest.mark.parametrize("name", sorted(set(ARCHITECTURES) - set(DEEP_SUPERVISED)))
@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", PLAN_MATRIX)
def test_networks_without_deep_supervision_give_one_full_resolution_output(name, spatial_dims, n_stages, anisotropic):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic)
    with pytest.raises(ValueError, match="no multi-resolution deep supervision"):
        ARCHITECTURES[name](UNetPlan.from_arch_kwargs(kwargs, patch), INPUT_CHANNELS, NUM_CLASSES, True)
    network = build(name, kwargs, patch, deep_supervision=False).eval()
    with torch.no_grad():
        output = network(torch.randn(2, INPUT_CHANNELS, *patch))
    assert list(output.shape) == [2, NUM_CLASSES, *patch]


#: map names on the 5-stage plans (levels 0-4): what each map is and the encoder level it sits at
MAP_NAMES_AT_FIVE_STAGES = {
    "nnUNetTrainerAttentionUNet": [f"gate_level{level}_{gate}" for level in (3, 2, 1) for gate in (0, 1)],
    "nnUNetTrainerMCANet": ["mca_axis0", "mca_axis1", "mca_axis2"],
    "nnUNetTrainerMSGA": ["guided_attention_level3", "guided_attention_level4"],
    "nnUNetTrainerMTUNet": [f"lgg_sa_{place}_level{level}_block{block}"
                            for place, level in (("encoder", 3), ("bottleneck", 4), ("decoder", 3))
                            for block in (0, 1)],
    "nnUNetTrainerNonLocalUNet": ["global_aggregation_bottleneck_level4", "global_aggregation_up_to_level3"],
}
#: names whose ``level{L}`` is the level whose grid the map is on (MSGA's guided attention maps all lie on the
#: finest fused level's grid; MCANet's on E1's)
MAP_ON_ITS_LEVEL = re.compile(r"^(gate|lgg_sa_[a-z]+|global_aggregation_[a-z_]+)_level(\d+)")


def test_map_names_say_what_each_map_is_and_where():
    """The names ``attention-maps`` writes its files under, exactly, on a 3D 5-stage plan."""
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    names = {name: [probe.map_name for probe in attention_probes(build(name, kwargs, patch, False)).values()]
             for name in ARCHITECTURES}
    assert names == MAP_NAMES_AT_FIVE_STAGES


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", PLAN_MATRIX)
def test_every_map_is_named_on_its_levels_grid_and_summarised_in_its_declared_range(name, spatial_dims, n_stages,
                                                                                     anisotropic):
    """What ``nnunet-attention attention-maps`` exports: every probe has a unique file-safe name, fires in one
    inference forward pass on the grid of the level its name gives, and summarises to ``(B, 1, *grid)`` with values
    inside the range the probe documents."""
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic)
    network = build(name, kwargs, patch, deep_supervision=False).eval()
    open_zero_initialised_gates(network)
    probes = attention_probes(network)
    assert probes, f"{name} exposes no attention map"
    map_names = [probe.map_name for probe in probes.values()]
    assert all(map_name and re.fullmatch(r"[a-z0-9_]+", map_name) for map_name in map_names), map_names
    assert len(set(map_names)) == len(map_names), map_names
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(10 * torch.randn(2, INPUT_CHANNELS, *patch))
    assert sorted(maps) == sorted(probes)
    for path, probe in probes.items():
        level = MAP_ON_ITS_LEVEL.match(probe.map_name)
        if level:
            assert tuple(maps[path].shape[2:]) == network.plan.grids[int(level.group(2))], probe.map_name
        summary = probe.summarize(maps[path])
        assert summary.shape[:2] == (2, 1) and summary.ndim == 2 + spatial_dims, path
        low, high = probe.value_range
        assert torch.isfinite(summary).all() and low <= summary.min() and summary.max() <= high, path


@pytest.mark.parametrize("name", DEEP_SUPERVISED)
@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", PLAN_MATRIX)
def test_outputs_match_nnunet_deep_supervision_scales(name, spatial_dims, n_stages, anisotropic):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic)
    network = disable_dropout(build(name, kwargs, patch, deep_supervision=True))
    image = torch.randn(2, INPUT_CHANNELS, *patch)
    with torch.no_grad():
        outputs = network(image)
    scales = deep_supervision_scales(TRAINERS[name], kwargs["strides"])
    nnunet_scales = deep_supervision_scales(nnUNetTrainer, kwargs["strides"])
    # highest resolution first, a prefix of nnU-Net's scales, at least two (one output makes nnU-Net's weights NaN)
    assert len(outputs) == len(scales) >= 2
    assert [list(s) for s in scales] == [list(s) for s in nnunet_scales[: len(scales)]]
    for output, scale in zip(outputs, scales):
        assert list(output.shape) == [2, NUM_CLASSES, *[round(p * s) for p, s in zip(patch, scale)]]

    network.decoder.deep_supervision = False
    with torch.no_grad():
        single = network(image)
    assert list(single.shape) == [2, NUM_CLASSES, *patch]
    torch.testing.assert_close(single, outputs[0])


@pytest.mark.parametrize("name", DEEP_SUPERVISED)
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "resenc"])
@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", PLAN_MATRIX)
def test_same_state_dict_with_and_without_deep_supervision(name, spatial_dims, n_stages, anisotropic, residual):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic, residual=residual)
    with_ds = build(name, kwargs, patch, deep_supervision=True).state_dict()
    without_ds = build(name, kwargs, patch, deep_supervision=False)
    assert list(with_ds) == list(without_ds.state_dict())
    without_ds.load_state_dict(with_ds, strict=True)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize(
    "spatial_dims,n_stages,anisotropic,residual",
    [(2, 5, False, False), (2, 4, True, True), (3, 4, True, False), (3, 5, False, True)],
)
def test_every_parameter_receives_a_gradient(name, spatial_dims, n_stages, anisotropic, residual):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic, residual=residual)
    # PyTorch's default init: nnU-Net's ResEnc init zeroes each block's last norm, which zeroes the
    # block's other gradients in the first step by design.
    network = build(name, kwargs, patch, deep_supervision=True, nnunet_init=False)
    open_zero_initialised_gates(network)
    # axial attention over a single window token has a constant softmax: its q, k and shift get no signal
    single_token_grids = set()
    for module_name, module in network.named_modules():
        if isinstance(module, GaussianAxialAttention):
            module.register_forward_hook(
                lambda _m, inputs, _out, prefix=module_name: single_token_grids.add(prefix)
                if math.prod(inputs[0].shape[1:-1]) == 1 else None
            )
    outputs = network(torch.randn(2, INPUT_CHANNELS, *patch))
    sum(o.square().mean() for o in output_tensors(outputs)).backward()
    assert all(p.grad is not None for p in network.parameters())
    silent = [n for n, p in network.named_parameters() if not torch.any(p.grad != 0)]
    without_signal = [
        n for n in silent
        if not n.endswith(ZERO_GRADIENT_BY_DESIGN) and not any(n.startswith(g + ".") for g in single_token_grids)
    ]
    assert not without_signal


def amp_training_step(network, optimizer, scaler, image, target, dtype) -> torch.Tensor:
    """nnU-Net's step: autocast forward, training loss, scaled backward, unscale, clip to 12, step, update."""
    optimizer.zero_grad(set_to_none=True)
    with bf16_safe_kernels(dtype):
        with torch.autocast("cpu", dtype=dtype):
            loss = training_loss(network(image), target)
        scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_amp_training_stays_finite(name, spatial_dims, dtype):
    kwargs, patch = make_plan(spatial_dims, 4, anisotropic=spatial_dims == 3)
    network = build(name, kwargs, patch, deep_supervision=True)
    optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True)
    scaler = torch.amp.GradScaler("cpu", enabled=dtype == torch.float16)
    image = torch.randn(2, INPUT_CHANNELS, *patch) * 10  # z-scored CT-like intensities reach ±10
    target = torch.randint(0, NUM_CLASSES, (2, *patch))
    before = [p.detach().clone() for p in network.parameters()]
    # fp16: the scaler may skip the first steps (its initial scale 2^16 overflows), as under nnU-Net
    losses = [amp_training_step(network, optimizer, scaler, image, target, dtype) for _ in range(4)]
    assert all(torch.isfinite(loss) for loss in losses)
    assert all(torch.isfinite(p).all() for p in network.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, network.parameters())), "no step was taken"
    # the gradients themselves, unscaled (the scaler would hide an inf by skipping the step)
    network.zero_grad(set_to_none=True)
    with bf16_safe_kernels(dtype):
        with torch.autocast("cpu", dtype=dtype):
            loss = training_loss(network(image), target)
        loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


def test_bf16_kernels_of_the_amp_tests_give_the_float64_convolution_gradient():
    """On the depth-2 input where oneDNN's bf16 Conv3d weight gradient is inf or garbage on some CPUs (see
    ``helpers.bf16_safe_kernels``), the kernels the AMP tests run give the float64 gradient up to bf16 rounding."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(8, 16, 3, padding=1)
    image, upstream = torch.randn(2, 8, 2, 4, 12), torch.randn(2, 16, 2, 4, 12)
    weight, bias = conv.weight.double(), conv.bias.double()
    expected = torch.autograd.grad(
        (F.conv3d(image.double(), weight, bias, padding=1) * upstream.double()).sum(), weight
    )[0]
    with bf16_safe_kernels(torch.bfloat16):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = conv(image)
        got = torch.autograd.grad((output.float() * upstream).sum(), conv.weight)[0]
    assert (got.double() - expected).abs().max() <= 0.02 * expected.abs().max()
