"""SwinUNETR and UNETR on nnU-Net plans: MONAI's networks, computed unchanged, on patches they can run.

The networks here take over MONAI's modules (probed transformer blocks, the output layer under nnU-Net's name
``seg_layers``); the reference is MONAI's own network, built by MONAI, holding the same weights. The contract
(test_architecture_contract.py) and the removal controls (test_removal_controls.py) cover the rest.
"""

from __future__ import annotations

import re

import pytest
import torch
from helpers import INPUT_CHANNELS, NUM_CLASSES, make_plan
from monai.networks.nets import UNETR, SwinUNETR
from nnunet_attention.architectures import SwinUNETRNet, UNetPlan, UNETRNet, capture_attention_maps
from nnunet_attention.architectures.plan import PlanError

#: MONAI's key of the output convolution -> ours
OUTPUT_LAYER = ("out.conv.conv.", "out.seg_layers.0.")
#: (network, MONAI's class, options, patch): MONAI's defaults in 2D; narrower in 3D (a float64 SwinUNETR step at
#: its default width takes ~15 s on 2 cores), with SwinUNETR's windows still padded (16-token grid, windows of 5)
CASES = {
    "swin_unetr-2d": (SwinUNETRNet, SwinUNETR, {}, [64, 96]),
    "swin_unetr-3d": (SwinUNETRNet, SwinUNETR, {"feature_size": 12, "window_size": 5}, [32, 32, 64]),
    "unetr-2d": (UNETRNet, UNETR, {}, [64, 96]),
    "unetr-3d": (UNETRNet, UNETR, {"feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
                 [32, 48, 64]),
}


def plan_at(patch: list[int]) -> UNetPlan:
    arch_kwargs, _ = make_plan(len(patch), 4, anisotropic=False)
    return UNetPlan.from_arch_kwargs(arch_kwargs, patch)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_network_computes_monais_network_with_its_weights(case):
    ours_class, monai_class, options, patch = CASES[case]
    torch.manual_seed(0)
    ours = ours_class(plan_at(patch), INPUT_CHANNELS, NUM_CLASSES, **options).double().eval()
    extra = {"img_size": patch} if monai_class is UNETR else {}
    monai = monai_class(in_channels=INPUT_CHANNELS, out_channels=NUM_CLASSES, spatial_dims=len(patch), **options,
                        **extra).double().eval()
    weights = {key.split(".", 1)[1].replace(*reversed(OUTPUT_LAYER)): value
               for key, value in ours.state_dict().items()}
    # every weight of MONAI's network is ours under MONAI's name, but the cross-attention norms that UNETR's
    # blocks build and never use
    missing, unexpected = monai.load_state_dict(weights, strict=False)
    assert not unexpected and all(".norm_cross_attn." in key for key in missing)
    assert bool(missing) == (monai_class is UNETR)
    image = torch.randn(2, INPUT_CHANNELS, *patch, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = ours(image)
        assert logits.shape == (2, NUM_CLASSES, *patch)
        torch.testing.assert_close(logits, monai(image), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("network,divisor", [(SwinUNETRNet, 32), (UNETRNet, 16)])
def test_a_patch_the_network_cannot_run_is_refused_naming_the_constraint_and_the_fix(network, divisor):
    """The synthetic 2d set's 96 x 112 patch: 112 is no multiple of 32 (and 96 x 104 none of 16); the message
    names the divisor, a patch that fits the plan's strides too, and the planner."""
    patch = [96, 112] if divisor == 32 else [96, 104]
    arch_kwargs, _ = make_plan(2, 4, anisotropic=False)
    plan = UNetPlan.from_arch_kwargs(arch_kwargs, patch)
    fitting = [96, 128] if divisor == 32 else [96, 112]
    with pytest.raises(PlanError, match=rf"every patch axis divisible by {divisor} .*patch_size "
                                        rf"{re.escape(str(patch))} is not.*nnunet-attention plan -d DATASET -tr .*"
                                        rf"e\.g\. {re.escape(str(fitting))}"):
        network(plan, INPUT_CHANNELS, NUM_CLASSES)


def test_a_vit_blocks_map_is_the_rms_of_its_self_attention_response_on_the_token_grid():
    """The map of UNETR's block 4 written from its formula: the block's self-attention on its normalised input
    tokens, RMS over channels, tokens laid out row-major on the 2 x 3 x 4 grid of a 32 x 48 x 64 patch (as MONAI's
    patch embedding flattens them)."""
    _, _, options, patch = CASES["unetr-3d"]
    network = UNETRNet(plan_at(patch), INPUT_CHANNELS, NUM_CLASSES, **options).double().eval()
    block = network.unetr.vit.blocks[4]
    block_input = {}
    block.register_forward_pre_hook(lambda _module, arguments: block_input.setdefault("tokens", arguments[0]))
    image = torch.randn(2, INPUT_CHANNELS, *patch, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(image)
        response = block.attn(block.norm1(block_input["tokens"]))  # (B, tokens, C)
    expected = response.square().mean(dim=-1).sqrt().reshape(2, 1, 2, 3, 4)
    summary = block.attention_probe.summarize(maps["unetr.vit.blocks.4.attention_probe"])
    torch.testing.assert_close(summary, expected.float(), rtol=1e-6, atol=1e-7)
