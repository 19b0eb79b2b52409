"""Multi-scale self-guided attention: DANet modules against their formulas, the eval output as the mean of the
step-2 heads, the trainer's loss terms against the paper's formula, gradients everywhere, the default width."""

import re

import pytest
import torch
import torch.nn.functional as F
from helpers import bf16_safe_kernels, make_plan
from nnunet_attention.architectures import MSGANet, UNetPlan
from nnunet_attention.architectures.blocks.guided_attention import (
    ChannelAttention,
    PositionAttention,
    SemanticAutoencoder,
    halving_strides,
)
from nnunet_attention.trainers import nnUNetTrainerMSGA
from nnunet_attention.trainers.msga import MSGALoss
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from paper_references import channel_attention_reference, position_attention_reference
from torch import nn


def nnunet_dice_ce() -> nn.Module:
    """nnU-Net's Dice+CE as its trainer builds it for label maps (deep supervision off)."""
    return DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)


def narrow_network(spatial_dims=2, n_stages=5, anisotropic=False, channels=8, seed=0):
    kwargs, patch = make_plan(spatial_dims, n_stages, anisotropic)
    torch.manual_seed(seed)
    network = MSGANet(UNetPlan.from_arch_kwargs(kwargs, patch), 2, 3, attention_channels=channels)
    network.apply(network.initialize)
    return network, patch


def open_gammas(network: nn.Module) -> None:
    """DANet's gammas start at 0 (modules start as the identity); give them values to exercise the attention."""
    for module in network.modules():
        if isinstance(module, PositionAttention | ChannelAttention):
            nn.init.constant_(module.gamma, 0.5)


def test_position_attention_equals_danet_formula():
    torch.manual_seed(0)
    module = PositionAttention(nn.Conv3d, 16).double()
    nn.init.constant_(module.gamma, 0.7)
    x = torch.randn(2, 16, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(module(x), position_attention_reference(module, x))


def test_channel_attention_equals_danet_formula():
    module = ChannelAttention().double()
    nn.init.constant_(module.gamma, 0.3)
    x = torch.randn(2, 6, 7, 9, dtype=torch.float64)
    torch.testing.assert_close(module(x), channel_attention_reference(module, x))


def test_channel_attention_energy_does_not_overflow_fp16():
    x = torch.full((1, 4, 64, 64), 8.0)  # energy 4096 * 64 = 262144 > fp16's 65504
    with torch.autocast("cpu", dtype=torch.float16):
        assert torch.isfinite(ChannelAttention()(x.half())).all()


@pytest.mark.parametrize("grid", [(12, 20), (7, 9), (1, 6, 10)])
def test_autoencoder_reconstructs_the_input_size_and_halves_where_it_can(grid):
    strides = halving_strides(grid, 2)
    assert all(s[0] == 1 for s in strides) if grid[0] == 1 else strides[0] == (2,) * len(grid)
    one_stage_plan = {**make_plan(len(grid), 1, anisotropic=False)[0], "norm_op": None, "nonlin": nn.ReLU}
    autoencoder = SemanticAutoencoder(UNetPlan.from_arch_kwargs(one_stage_plan, grid), 4, [3] * len(grid), strides)
    latent, reconstruction = autoencoder(torch.randn(2, 4, *grid))
    assert reconstruction.shape == (2, 4, *grid)
    assert latent.shape[1] == 16


def test_eval_output_is_the_mean_of_the_step_two_heads_at_full_resolution():
    network, patch = narrow_network()
    open_gammas(network)
    image = torch.randn(2, 2, *patch)
    with torch.no_grad():
        training_outputs = network.train()(image)
        prediction = network.eval()(image)
    n = len(network.scale_levels)
    assert n == 4 and len(training_outputs.logits) == 2 * n
    assert all(logits.shape == (2, 3, *patch) for logits in training_outputs.logits)
    torch.testing.assert_close(prediction, torch.stack(training_outputs.logits[n:]).mean(dim=0))


def test_loss_is_the_papers_sum_over_heads_semantic_codes_and_reconstructions():
    network, patch = narrow_network(3, 4, anisotropic=True)
    outputs = network(torch.randn(2, 2, *patch))
    target = torch.randint(0, 3, (2, 1, *patch))
    segmentation = nnunet_dice_ce()
    loss = MSGALoss(segmentation)
    terms = loss.terms(outputs, target)
    assert all(torch.isfinite(value) and value > 0 for value in terms.values())
    n = len(network.scale_levels)
    assert len(outputs.semantic_pairs) == n and len(outputs.reconstruction_pairs) == 2 * n
    expected = (
        sum(segmentation(logits, target) for logits in outputs.logits)
        + 0.25 * sum(((a - b) ** 2).mean() for a, b in outputs.semantic_pairs)
        + 0.1 * sum(((x - r) ** 2).mean() for x, r in outputs.reconstruction_pairs)
    )
    torch.testing.assert_close(loss(outputs, target), expected)
    # evaluation mode: one tensor, plain Dice+CE (what nnU-Net's validation step computes)
    network.eval()
    with torch.no_grad():
        prediction = network(torch.randn(2, 2, *patch))
    torch.testing.assert_close(loss(prediction, target), segmentation(prediction, target))


@pytest.mark.parametrize("spatial_dims,n_stages,anisotropic", [(2, 5, False), (3, 5, True)])
def test_every_parameter_gets_a_gradient_from_the_trainers_loss(spatial_dims, n_stages, anisotropic):
    network, patch = narrow_network(spatial_dims, n_stages, anisotropic)
    open_gammas(network)
    target = torch.randint(0, 3, (2, 1, *patch))
    MSGALoss(nnunet_dice_ce())(network(torch.randn(2, 2, *patch)), target).backward()
    silent = [name for name, p in network.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not silent


def test_default_width_trains_a_step_on_a_2d_plan():
    """At the paper's 64 channels one SGD step of nnU-Net's settings on the trainer's loss moves every parameter
    but position attention's projections (its gamma starts at 0, so no gradient reaches them yet) and lowers the
    loss on the batch."""
    kwargs, patch = make_plan(2, 5, anisotropic=False)
    torch.manual_seed(0)
    network = MSGANet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 3)
    network.apply(network.initialize)
    assert network.projections[0][0].out_channels == 64
    assert network.autoencoders[0].encoder[-1].kernel_size in (2, (2, 2))
    optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True)
    image, target = torch.randn(1, 1, *patch), torch.randint(0, 3, (1, 1, *patch))
    loss_function = MSGALoss(nnunet_dice_ce())
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    loss = loss_function(network(image), target)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    unmoved = {name for name, p in network.named_parameters() if torch.equal(p, before[name])}
    behind_zero_gamma = {name for name, _ in network.named_parameters()
                         if re.search(r"\.position\.attention\.(query|key|value)\.", name)}
    assert behind_zero_gamma and unmoved == behind_zero_gamma
    with torch.no_grad():
        assert loss_function(network(image), target) < loss


def test_attention_level_respects_the_position_budget():
    kwargs, patch = make_plan(2, 6, anisotropic=False)  # patch 96 x 160; level 2 is 24 x 40 = 960 positions
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    assert MSGANet(plan, 1, 2, attention_channels=8).scale_levels == (2, 3, 4, 5)
    tight = MSGANet(plan, 1, 2, attention_channels=8, max_attention_positions=300)
    assert tight.scale_levels == (3, 4, 5)


def test_deep_supervision_is_refused_with_what_to_do():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    with pytest.raises(ValueError, match="supervises all eight heads at full resolution\\); its trainer switches "
                                         "nnU-Net's off: build it with deep_supervision=False"):
        MSGANet(UNetPlan.from_arch_kwargs(kwargs, patch), 1, 2, deep_supervision=True)
    assert not nnUNetTrainerMSGA.supports_deep_supervision


def test_amp_bf16_step_on_ct_like_intensities_is_finite():
    network, patch = narrow_network(3, 4, anisotropic=True)
    open_gammas(network)
    target = torch.randint(0, 3, (2, 1, *patch))
    with bf16_safe_kernels(torch.bfloat16):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = MSGALoss(nnunet_dice_ce())(network(torch.randn(2, 2, *patch) * 10), target)
        loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in network.parameters())


def test_reconstruction_term_compares_each_autoencoder_input_with_its_output():
    network, patch = narrow_network()
    outputs = network(torch.randn(1, 2, *patch))
    for step_input, reconstruction in outputs.reconstruction_pairs:
        assert step_input.shape == reconstruction.shape
        assert step_input.shape[1] == 2 * network.projections[0][0].out_channels
    for first, second in outputs.semantic_pairs:
        assert first.shape == second.shape
    assert F.mse_loss(*outputs.reconstruction_pairs[0]) > 0
