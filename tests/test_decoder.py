"""The hooked decoder is nnU-Net's UNetDecoder when no hook is set; its hooks take one entry per stage."""

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from helpers import make_plan
from nnunet_attention.architectures import UNetPlan
from nnunet_attention.architectures.decoder import HookedUNetDecoder
from torch import nn


@pytest.mark.parametrize("deep_supervision", [True, False])
@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)])
def test_hookless_decoder_reproduces_plain_unet(spatial_dims, anisotropic, deep_supervision):
    kwargs, patch = make_plan(spatial_dims, 5, anisotropic)
    torch.manual_seed(0)
    reference = PlainConvUNet(1, num_classes=3, deep_supervision=deep_supervision, **kwargs)
    plan = UNetPlan.from_arch_kwargs(kwargs, patch)
    encoder = plan.build_encoder(1)
    decoder = HookedUNetDecoder(plan, encoder, 3, deep_supervision)
    ours = nn.ModuleDict({"encoder": encoder, "decoder": decoder})
    ours.load_state_dict(reference.state_dict(), strict=True)  # identical keys: hooks add no parameters
    image = torch.randn(1, 1, *patch)
    with torch.no_grad():
        expected, actual = reference(image), decoder(encoder(image))
    if deep_supervision:
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e)
    else:
        torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("hook", ["skip_filters", "upsamplings"])
def test_wrong_number_of_hooks_is_rejected(hook):
    plan = UNetPlan.from_arch_kwargs(*make_plan(2, 4, False))
    with pytest.raises(ValueError, match=f"{hook} needs one entry per decoder stage \\(3\\), got 2"):
        HookedUNetDecoder(plan, plan.build_encoder(1), 2, False, **{hook: [None, None]})


def test_upsampling_hook_takes_the_place_of_the_stages_transposed_conv():
    plan = UNetPlan.from_arch_kwargs(*make_plan(2, 4, False))
    upsampling = nn.Upsample(scale_factor=2)
    decoder = HookedUNetDecoder(plan, plan.build_encoder(1), 2, False, upsamplings=[None, upsampling, None])
    assert decoder.transpconvs[1] is upsampling
    assert all(isinstance(decoder.transpconvs[s], nn.ConvTranspose2d) for s in (0, 2))
