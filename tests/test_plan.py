"""The typed plan view every architecture is built from: what it reads from nnU-Net's arch_kwargs, what it refuses."""

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from helpers import make_plan, plan_from_layout
from nnunet_attention.architectures import UNetPlan


def test_per_axis_values_are_expanded_and_grids_follow_the_strides():
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    kwargs["kernel_sizes"] = 3  # nnU-Net accepts scalars for every per-stage value
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    assert plan.kernel_sizes == ((3, 3, 3),) * 5
    assert plan.strides == ((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))
    assert plan.grids == ((4, 16, 48), (4, 8, 24), (4, 4, 12), (2, 2, 6), (1, 1, 3))
    assert plan.cumulative_strides == ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16))
    assert [plan.first_level_at_stride(s) for s in (1, 2, 4, 8, 16, 32)] == [0, 1, 2, 3, 4, 5]
    assert (plan.n_stages, plan.spatial_dims, plan.is_residual) == (5, 3, False)


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "resenc"])
def test_encoder_and_decoder_convs_are_those_of_nnunets_own_unet(residual):
    kwargs, patch = make_plan(2, 5, anisotropic=False, residual=residual)
    kwargs["n_conv_per_stage_decoder"] = [3, 2, 1, 1]  # lowest resolution first, as nnU-Net writes it
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    assert plan.decoder_convs == (1, 1, 2, 3)  # by level: the stage producing level 3 has 3 convs
    assert len(plan.decoder_convs_at(3, 64).convs) == 3
    reference = (ResidualEncoderUNet if residual else PlainConvUNet)(1, num_classes=2, **kwargs)
    encoder = plan.build_encoder(1)
    encoder.load_state_dict(reference.encoder.state_dict(), strict=True)
    image = torch.randn(1, 1, *patch)
    with torch.no_grad():
        for ours, theirs in zip(encoder(image), reference.encoder(image), strict=True):
            torch.testing.assert_close(ours, theirs)


def test_first_stages_is_the_shallower_plan():
    kwargs, patch = make_plan(2, 6, anisotropic=False)
    kwargs["n_conv_per_stage_decoder"] = [5, 4, 3, 2, 1]
    stem = UNetPlan.from_arch_kwargs(kwargs, patch).first_stages(3)
    assert stem.features_per_stage == (4, 8, 16) and stem.strides == ((1, 1), (2, 2), (2, 2))
    assert stem.decoder_convs == (1, 2) and stem.patch_size == tuple(patch)
    with pytest.raises(ValueError, match="a plan of 6 stages has no first 7 stages"):
        UNetPlan.from_arch_kwargs(kwargs, patch).first_stages(7)


def test_deepest_levels_keep_the_bottleneck_and_drop_grids_over_the_budget():
    # nnU-Net's ACDC 2d plan: patch 256 x 224, strides 2 from level 1 on: level 3 is 32 x 28
    plan = UNetPlan.from_arch_kwargs(plan_from_layout([[1, 1]] + [[2, 2]] * 5, [[3, 3]] * 6), [256, 224])
    assert plan.grids[3] == (32, 28)
    assert plan.deepest_levels(3) == (3, 4, 5)
    assert plan.deepest_levels(3, max_positions=500) == (4, 5)
    assert plan.deepest_levels(3, max_positions=1) == (5,)
    assert plan.deepest_levels(9) == (0, 1, 2, 3, 4, 5)


def test_conv_norm_nonlin_pads_odd_kernels_and_steps_with_kernel_equal_to_stride():
    plan = UNetPlan.from_arch_kwargs(*make_plan(3, 4, anisotropic=True))
    same = plan.conv_norm_nonlin(4, 6, 3)
    step = plan.conv_norm_nonlin(4, 6, (1, 2, 2), (1, 2, 2))
    image = torch.randn(1, 4, 2, 8, 6)
    assert same(image).shape == (1, 6, 2, 8, 6) and step(image).shape == (1, 6, 2, 4, 3)
    assert [type(m) for m in same] == [torch.nn.Conv3d, torch.nn.InstanceNorm3d, torch.nn.LeakyReLU]


def test_unknown_plan_key_is_rejected_with_its_name():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    with pytest.raises(TypeError, match="unknown plan arch_kwargs \\['n_convs_per_stag'\\]"):
        UNetPlan.from_arch_kwargs({**kwargs, "n_convs_per_stag": 2}, patch)


def test_missing_encoder_depth_is_rejected():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    del kwargs["n_conv_per_stage"]
    with pytest.raises(TypeError, match="n_conv_per_stage', 'n_blocks_per_stage'"):
        UNetPlan.from_arch_kwargs(kwargs, patch)


def test_per_stage_list_of_the_wrong_length_names_the_key():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    kwargs["features_per_stage"] = [4, 8, 16]
    with pytest.raises(ValueError, match="'features_per_stage' has 3 entries but needs 4"):
        UNetPlan.from_arch_kwargs(kwargs, patch)


def test_patch_of_the_wrong_dimensionality_is_refused():
    kwargs, _ = make_plan(3, 4, anisotropic=False)
    with pytest.raises(ValueError, match="patch_size \\[32, 32\\] has 2 axes but the plan's conv_op Conv3d has 3"):
        UNetPlan.from_arch_kwargs(kwargs, [32, 32])
