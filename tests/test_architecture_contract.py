"""The contract every trainer's architecture keeps, over the plan matrix (2D/3D, isotropic/[1,2,2], 4-7
stages). Parametrized over the trainer registry: a trainer added to the package is covered here. The checks are
the ones ``nnunet-attention check-architecture`` runs on a user's network (nnunet_attention.architecture_contract);
the tests here add what holds for this package's networks beyond that contract (exact map names, a non-zero
gradient for every parameter, bf16 as well as fp16 steps).
"""

import dataclasses
import math
import re

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    ARCHITECTURES,
    CONTRACT_PLAN_MATRIX,
    INPUT_CHANNELS,
    NUM_CLASSES,
    bf16_safe_kernels,
    build,
    harness_trainer_class,
    make_plan,
    open_zero_initialised_gates,
    output_tensors,
    training_loss,
)
from nnunet_attention.architectures.blocks.attention_probe import attention_probes, capture_attention_maps
from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention
from nnunet_attention.trainers import TRAINERS

from nnunet_attention.architecture_contract import run_check

#: parameters whose gradient is zero by construction: the Gaussian axial score offset (documented where it is
#: defined) and the biases of key projections (global aggregation, DANet position attention, Gaussian axial
#: attention), which add q·b to all of a query's scores alike, a constant the softmax cancels. Their
#: computed gradients are float rounding noise, exactly zero with some thread counts.
ZERO_GRADIENT_BY_DESIGN = ("global_attention.bias", "key.bias")


#: the contract's checks that run on every plan of the matrix (the others, on fewer plans, below and in
#: test_compile.py); ResEnc plans for the state-dict check, where the residual encoder adds parameters
MATRIX_CASES = [(check, plan) for check in ("output", "deep-supervision", "attention-maps")
                for plan in CONTRACT_PLAN_MATRIX] + [
    ("weights", plan) for plan in CONTRACT_PLAN_MATRIX
    for plan in (plan, dataclasses.replace(plan, residual=True))]


@pytest.mark.parametrize("check,plan", MATRIX_CASES, ids=lambda case: getattr(case, "name", case))
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_contract_holds_on_every_plan_of_the_matrix(name, check, plan):
    """What ``nnunet-attention check-architecture`` runs (one implementation, architecture_contract): one output
    at the patch, nnU-Net's deep-supervision scales (or a refusal where the network has none), one state dict
    with and without deep supervision, every attention map named and on its level's grid in its range."""
    result = run_check(harness_trainer_class(TRAINERS[name]), check, plan)
    if check == "weights" and not TRAINERS[name].supports_deep_supervision:
        assert result.passed is None, result.line()

    else:
        assert result.passed, result.line()


#: map names on the 5-stage plans (levels 0-4): what each map is and the encoder level it sits at
MAP_NAMES_AT_FIVE_STAGES = {
    "nnUNetTrainerAttentionUNet": [f"gate_level{level}_{gate}" for level in (3, 2, 1) for gate in (0, 1)],
    "nnUNetTrainerMCANet": ["mca_axis0", "mca_axis1", "mca_axis2"],
    "nnUNetTrainerMSGA": ["guided_attention_level3", "guided_attention_level4"],
    "nnUNetTrainerMTUNet": [f"lgg_sa_{place}_level{level}_block{block}"
                            for place, level in (("encoder", 3), ("bottleneck", 4), ("decoder", 3))
                            for block in (0, 1)],
    "nnUNetTrainerNonLocalUNet": ["global_aggregation_bottleneck_level4", "global_aggregation_up_to_level3"],
    "nnUNetTrainerSwinUNETR": [f"window_attention_stage{stage}_block{block}" for stage in (1, 2, 3, 4)
                               for block in (0, 1)],
    "nnUNetTrainerUNETR": [f"self_attention_block{block}" for block in range(12)],
}
#: names that give the grid a transformer's map lies on, as a fraction of the patch: a Swin stage's 1/2**stage,
#: a ViT's tokens 1/16
MAP_ON_ITS_TOKEN_GRID = {re.compile(r"^window_attention_stage(\d)"): lambda match: 2 ** int(match.group(1)),
                         re.compile(r"^self_attention_block"): lambda match: 16}


#: names whose ``level{L}`` is the level whose grid the map is on (MSGA's guided attention maps all lie on the
#: finest fused level's grid; MCANet's on E1's)
MAP_ON_ITS_LEVEL = re.compile(r"^(gate|lgg_sa_[a-z]+|global_aggregation_[a-z_]+)_level(\d+)")


def test_map_names_say_what_each_map_is_and_where():
    """The names ``attention-maps`` writes its files under, exactly, on a 3D 5-stage plan; a map whose name gives
    its level lies on that level's grid."""
    names = {}
    for name in ARCHITECTURES:
        kwargs, patch = make_plan(3, 5, anisotropic=True, patch_divisor=TRAINERS[name].patch_divisor)
        network = build(name, kwargs, patch, False).eval()
        probes = attention_probes(network)
        names[name] = [probe.map_name for probe in probes.values()]
        with torch.no_grad(), capture_attention_maps(network) as maps:
            network(torch.randn(1, INPUT_CHANNELS, *patch))
        for path, probe in probes.items():
            level = MAP_ON_ITS_LEVEL.match(probe.map_name)
            if level:
                assert tuple(maps[path].shape[2:]) == network.plan.grids[int(level.group(2))], probe.map_name
            for pattern, fraction in MAP_ON_ITS_TOKEN_GRID.items():
                if match := pattern.match(probe.map_name):
                    assert list(maps[path].shape[2:]) == [size // fraction(match) for size in patch], probe.map_name
    assert names == MAP_NAMES_AT_FIVE_STAGES


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize(
    "spatial_dims,n_stages,anisotropic,residual",
    [(2, 5, False, False), (2, 4, True, True), (3, 4, True, False), (3, 5, False, True)],
)
def test_every_parameter_receives_a_gradient(name, spatial_dims, n_stages, anisotropic, residual):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic, residual=residual,
                              patch_divisor=TRAINERS[name].patch_divisor)
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


#: SwinUNETR's smallest 3D patch (32 x 32 x 64) with MONAI's full-resolution conv blocks: fp16 Conv3d on a CPU runs
#: PyTorch's reference kernel (slow_conv3d), 10 s per step, 50 s per case: its 2D cases run by default, its 3D
#: ones with -m slow (and `nnunet-attention check-architecture --quick`'s fp16 check takes one such step)
AMP_CASES = [pytest.param(name, dims, marks=pytest.mark.slow) if (name, dims) == ("nnUNetTrainerSwinUNETR", 3)
             else (name, dims) for name in sorted(ARCHITECTURES) for dims in (2, 3)]


@pytest.mark.parametrize("name,spatial_dims", AMP_CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_amp_training_stays_finite(name, spatial_dims, dtype):
    kwargs, patch = make_plan(spatial_dims, 4, anisotropic=spatial_dims == 3,
                              patch_divisor=TRAINERS[name].patch_divisor)
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
