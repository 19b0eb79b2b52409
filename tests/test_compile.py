"""``torch.compile``, as nnU-Net runs every network on CUDA by default (the trainer compiles it for training, the
predictor for inference when ``nnUNet_compile`` is set).

For every registered trainer, on a 2D and an anisotropic 3D plan, ``torch.compile(fullgraph=True)`` must trace the
network in one graph (a graph break raises), in training mode as the trainer runs it (deep supervision where the
trainer uses it, dropout on) and in evaluation mode as the predictor runs it (no_grad), also while attention maps
are captured (their probes are forward hooks, which must not break the graph). The compiled forward, and in
training the loss and every gradient, must equal eager execution. The default suite compiles with ``aot_eager``
(Dynamo's tracing and AOTAutograd's joint forward-backward graph, without code generation: what breaks graphs and
autograd); ``pytest -m inductor`` runs the same checks with nnU-Net's backend, inductor (minutes on a CPU).
"""

import pytest
import torch
from helpers import (
    INPUT_CHANNELS,
    NUM_CLASSES,
    build,
    disable_dropout,
    make_plan,
    open_zero_initialised_gates,
    output_tensors,
    training_loss,
)
from nnunet_attention.architectures.blocks.attention_probe import capture_attention_maps
from nnunet_attention.trainers import TRAINERS

PLANS = {"2d": (2, 5, False), "3d-anisotropic": (3, 5, True)}
BACKENDS = [pytest.param("aot_eager", id="aot_eager"),
            pytest.param("inductor", id="inductor", marks=pytest.mark.inductor)]
DROPOUT_SEED = 5


def network_and_batch(trainer_name: str, plan: str, deep_supervision: bool = True):
    """The trainer's network on the plan (deep supervision where the trainer uses it), gates opened, and a batch."""
    kwargs, patch = make_plan(*PLANS[plan])
    network = build(trainer_name, kwargs, patch, deep_supervision=deep_supervision)
    torch.manual_seed(1)
    open_zero_initialised_gates(network)
    image = torch.randn(2, INPUT_CHANNELS, *patch)
    target = torch.randint(0, NUM_CLASSES, (2, *patch))
    return network, image, target


def assert_close_to(actual: torch.Tensor, expected: torch.Tensor, what: str, scale: float | None = None) -> None:
    """float32 agreement up to the reassociation a compiler may do: absolute error at most 1e-4 of ``scale`` (by
    default the tensor's largest magnitude), else relative error at most 1e-3."""
    scale = float(expected.abs().max()) if scale is None else scale
    torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-4 * max(scale, 1e-6),
                               msg=lambda message: f"{what}: {message}")


def training_step(module: torch.nn.Module, network: torch.nn.Module, image, target):
    """Loss and per-parameter gradients of one training step of ``module`` (``network`` or its compiled form)."""
    network.zero_grad(set_to_none=True)
    torch.manual_seed(DROPOUT_SEED)  # the same dropout masks in both runs
    outputs = module(image)
    loss = training_loss(outputs, target)
    loss.backward()
    return [t.detach() for t in output_tensors(outputs)], loss.detach(), {
        name: p.grad.clone() for name, p in network.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
def test_compiled_training_step_is_one_graph_and_equals_eager(trainer_name, plan, backend):
    network, image, target = network_and_batch(trainer_name, plan)
    if backend == "inductor":
        disable_dropout(network)  # inductor draws dropout masks from its own generator; aot_eager from eager's
    torch._dynamo.reset()
    compiled = torch.compile(network, backend=backend, fullgraph=True)
    # against inductor, eager runs PyTorch's own CPU kernels: oneDNN's float32 Conv3d weight gradient is off by up
    # to 3% on some CPUs (seen with avx512_bf16 on MCANet's first conv, where float64 and inductor agree to 2e-4);
    # aot_eager runs the very kernels eager runs
    with torch.backends.mkldnn.flags(enabled=backend != "inductor"):
        eager_outputs, eager_loss, eager_gradients = training_step(network, network, image, target)
    compiled_outputs, compiled_loss, compiled_gradients = training_step(compiled, network, image, target)
    assert len(compiled_outputs) == len(eager_outputs)
    for index, (actual, expected) in enumerate(zip(compiled_outputs, eager_outputs)):
        assert_close_to(actual, expected, f"output {index}")
    assert_close_to(compiled_loss, eager_loss, "loss")
    assert sorted(compiled_gradients) == sorted(eager_gradients)
    # on the network's largest gradient: some are zero by construction (a bias before a norm) and only rounding
    # noise in both runs
    largest = max(float(gradient.abs().max()) for gradient in eager_gradients.values())
    for name, gradient in eager_gradients.items():
        assert_close_to(compiled_gradients[name], gradient, name, scale=largest)


#: inference is compiled on the anisotropic 3d plan in the default run (the same blocks' code as in 2d, and the
#: 2d graph is traced by the training-mode test); the 2d plan with -m slow
INFERENCE_PLANS = [pytest.param("2d", marks=pytest.mark.slow), "3d-anisotropic"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("plan", INFERENCE_PLANS)
@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
def test_compiled_inference_with_attention_maps_captured_is_one_graph_and_equals_eager(trainer_name, plan, backend):
    """As the predictor runs the network (built without deep supervision, eval, no_grad), compiled once with the
    probes' hooks in place, as for an attention-map export (Dynamo does not guard on hooks: a network traced
    before they were added would run without them, so they are added before compiling). The hooks only read
    tensors, so the graph traced here is the predictor's plus the maps' outputs."""
    network, image, _ = network_and_batch(trainer_name, plan, deep_supervision=False)
    network.eval()
    with torch.no_grad():
        with capture_attention_maps(network) as eager_maps:
            eager = network(image)
        torch._dynamo.reset()
        with capture_attention_maps(network) as compiled_maps:
            logits = torch.compile(network, backend=backend, fullgraph=True)(image)
    assert_close_to(logits, eager, "logits while maps are captured")
    assert eager_maps and sorted(compiled_maps) == sorted(eager_maps)
    for name, attention_map in eager_maps.items():
        assert_close_to(compiled_maps[name], attention_map, name)
