"""MT-UNet specifics: where the MTMs go, windows from the plan, AMP stays finite."""

import pytest
from nnunet_attention.architectures import MTUNet
from nnunet_attention.architectures.blocks.mixed_transformer import MixedTransformerStage
from nnunet_attention.architectures.plan import choose_attention_levels, stage_grids
from plan_factory import make_plan


def test_levels_follow_token_count_and_always_include_the_bottleneck():
    # nnU-Net's ACDC 2d plan: patch 256x224, 7 levels, strides 2 from level 1 on
    grids = stage_grids((256, 224), [(1, 1)] + [(2, 2)] * 6)
    assert grids[3] == (32, 28) and grids[6] == (4, 3)
    assert choose_attention_levels(grids, 7, max_positions=1024, max_levels=3) == [4, 5, 6]
    assert choose_attention_levels(grids, 7, max_positions=1024, max_levels=5) == [3, 4, 5, 6]
    assert choose_attention_levels(grids, 7, max_positions=10, max_levels=3) == [6]
    assert choose_attention_levels(None, 7, max_positions=10, max_levels=3) == [4, 5, 6]


def test_mtms_sit_in_encoder_bottleneck_and_the_decoder_stages_of_the_same_levels():
    kwargs, patch = make_plan(2, 6, anisotropic=False)
    network = MTUNet(1, 2, patch_size=patch, mtm_levels=[3, 5], **kwargs)
    encoder_levels = [i for i, b in enumerate(network.encoder_blocks) if isinstance(b, MixedTransformerStage)]
    decoder_levels = [6 - 2 - s for s, b in enumerate(network.decoder.stage_blocks)
                      if isinstance(b, MixedTransformerStage)]
    assert encoder_levels == [3, 5] and decoder_levels == [3]


def test_windows_follow_the_planned_grids():
    kwargs, patch = make_plan(3, 5, anisotropic=True)
    assert stage_grids(patch, kwargs["strides"])[3] == (2, 2, 6)
    network = MTUNet(1, 2, patch_size=patch, mtm_levels=[3], window_size=4, **kwargs)
    stage = network.encoder_blocks[3]
    assert stage.blocks[0].local_global_attention.window == (2, 2, 4)


def test_bad_level_override_names_the_valid_range():
    kwargs, patch = make_plan(2, 4, anisotropic=False)
    with pytest.raises(ValueError, match="mtm_levels \\[4\\] must be level indices in 0..3"):
        MTUNet(1, 2, patch_size=patch, mtm_levels=[4], **kwargs)
