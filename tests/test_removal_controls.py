"""The removal controls (``nnUNetTrainer<X>_NoAttention``): each trainer's network with its attention removed and
everything else kept.

The rule is written here a second time, independently of the architectures' ``without_attention()``: as forward
hooks on the trainer's own network (a residual attention block returns its input; a gate's coefficients are 1; the
up-sampling block's attention path adds nothing). With the trainer's weights, the control must compute exactly
what the hooked trainer network computes, and keep every parameter it has under the trainer's name and shape.
"""

from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunet_attention.architectures.attention_removal import remove_attention
from nnunet_attention.architectures.blocks.attention_gate import AttentionGate
from nnunet_attention.architectures.blocks.attention_probe import attention_probes
from nnunet_attention.architectures.blocks.cross_axis_attention import MultiScaleCrossAxisAttention
from nnunet_attention.architectures.blocks.guided_attention import ChannelAttention, PositionAttention
from nnunet_attention.architectures.blocks.mixed_transformer import MixedTransformerStage
from nnunet_attention.architectures.blocks.transformer_blocks import ProbedSwinBlock, ProbedViTBlock
from nnunet_attention.architectures.non_local_unet import BottomBlock, UpAggregation
from nnunet_attention.trainers import CONTROLS, TRAINERS
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_attention.plans_fabricator import plans_for
from nnunet_attention.registry import control_of, controlled_trainer
from tests.helpers import (
    INPUT_CHANNELS,
    NUM_CLASSES,
    disable_dropout,
    harness_trainer_class,
    make_plan,
    open_zero_initialised_gates,
    output_tensors,
)

#: residual attention blocks ``x + attention(x)``: the rule makes each return its input
RESIDUAL_ATTENTION = (MixedTransformerStage, MultiScaleCrossAxisAttention, PositionAttention, ChannelAttention,
                      BottomBlock)
PLANS = {"2d": dict(spatial_dims=2, n_stages=5, anisotropic=False),
         "3d anisotropic": dict(spatial_dims=3, n_stages=5, anisotropic=True)}
#: transformer blocks: the rule makes the response their self-attention adds zero
TRANSFORMER_BLOCKS = (ProbedSwinBlock, ProbedViTBlock)


def test_every_trainer_has_its_control_and_nnunets_lookup_finds_it():
    assert sorted(CONTROLS) == sorted(f"{name}_NoAttention" for name in TRAINERS)
    for name, trainer in TRAINERS.items():
        control = CONTROLS[control_of(name)]
        assert issubclass(control, trainer) and control.controlled_trainer == name
        assert recursive_find_trainer_class_by_name(control.__name__) is control  # as nnUNetv2_train -tr finds it


def test_schedule_variants_pair_with_the_controls_variants():
    assert control_of("nnUNetTrainerMTUNet_5epochs_20iters") == "nnUNetTrainerMTUNet_NoAttention_5epochs_20iters"
    assert controlled_trainer("nnUNetTrainerMTUNet_NoAttention_5epochs_20iters") == "nnUNetTrainerMTUNet"
    assert control_of("nnUNetTrainer") is None and control_of("nnUNetTrainer_5epochs") is None
    assert controlled_trainer("nnUNetTrainerMTUNet_5epochs") is None


def networks(name: str, plan_id: str, deep_supervision: bool = True) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(trainer's network, control's network) built by the trainer classes as nnU-Net's trainer builds them, in
    float64, dropout off."""
    arch_kwargs, patch = make_plan(**PLANS[plan_id], patch_divisor=TRAINERS[name].patch_divisor)
    plans = PlansManager(plans_for(arch_kwargs, patch))
    configuration = plans.get_configuration(plans.available_configurations[0])
    built = []
    for trainer in (TRAINERS[name], CONTROLS[control_of(name)]):
        torch.manual_seed(0)
        trainer = harness_trainer_class(trainer)
        built.append(disable_dropout(trainer.build_network_architecture(
            plans, configuration, INPUT_CHANNELS, NUM_CLASSES,
            deep_supervision and trainer.supports_deep_supervision).double()))
    return tuple(built)


def hook_the_removal_rule(network: torch.nn.Module) -> list[str]:
    """Hook the rule onto ``network``'s attention blocks; return the names of the modules the rule removes."""
    removed = []
    for name, module in network.named_modules():
        if isinstance(module, RESIDUAL_ATTENTION):
            module.register_forward_hook(lambda _m, inputs, _out: inputs[0])
            removed.append(name)
        elif isinstance(module, AttentionGate):
            module.coefficient_probe.register_forward_hook(lambda _m, _in, out: torch.ones_like(out))
            removed += [f"{name}.{part}" for part in ("theta", "phi", "psi")]
        elif isinstance(module, UpAggregation):
            module.aggregation.register_forward_hook(lambda _m, _in, out: torch.zeros_like(out))
            removed.append(f"{name}.aggregation")
        elif isinstance(module, TRANSFORMER_BLOCKS):
            module.attention_probe.register_forward_hook(lambda _m, _in, out: torch.zeros_like(out))
            removed += [f"{name}.norm1", f"{name}.attn"]
        elif name.endswith("gating_signal"):  # the Attention U-Net's projection that only feeds the gates
            removed.append(name)
    return removed


@pytest.mark.parametrize("plan_id", sorted(PLANS))
@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_the_control_differs_from_its_trainer_in_the_attention_alone(name, plan_id):
    trainer_network, control_network = networks(name, plan_id)
    open_zero_initialised_gates(trainer_network)  # DANet's gammas start at 0: the attention would add nothing
    trainer_weights, control_weights = trainer_network.state_dict(), control_network.state_dict()
    # what remains keeps the trainer's names and shapes; what goes lies in the attention the rule removes
    assert set(control_weights) < set(trainer_weights)
    assert all(control_weights[key].shape == trainer_weights[key].shape for key in control_weights)
    removed = hook_the_removal_rule(trainer_network)
    assert removed, f"{name} has no attention block the rule knows"
    for key in set(trainer_weights) - set(control_weights):
        assert any(key.startswith(f"{module}.") for module in removed), key
    control_network.load_state_dict({key: trainer_weights[key] for key in control_weights})
    assert not attention_probes(control_network)  # a control exposes no attention maps

    image = torch.randn(2, INPUT_CHANNELS, *trainer_network.plan.patch_size, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    expected, actual = output_tensors(trainer_network(image)), output_tensors(control_network(image))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_the_attention_changes_the_trainers_output(name):
    """The equality above is not vacuous: unhooked, the trainer's network computes something else."""
    trainer_network, control_network = networks(name, "2d", deep_supervision=False)
    open_zero_initialised_gates(trainer_network)
    weights = trainer_network.state_dict()
    control_network.load_state_dict({key: weights[key] for key in control_network.state_dict()})
    image = torch.randn(1, INPUT_CHANNELS, *trainer_network.plan.patch_size, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    trainer_network.eval(), control_network.eval()
    assert (trainer_network(image) - control_network(image)).abs().max() > 1e-4


def test_a_network_without_attention_cannot_be_a_control():
    arch_kwargs, _ = make_plan(**PLANS["2d"])
    unet = PlainConvUNet(input_channels=1, num_classes=2, **arch_kwargs)
    with pytest.raises(TypeError, match="has no block with a without_attention"):
        remove_attention(unet)
