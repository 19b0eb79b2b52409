"""The contract a network keeps to train here as an nnU-Net trainer, as checks that anyone can run on their own.

One implementation serves the test suite (``tests/test_architecture_contract.py`` runs it for every registered
trainer) and ``nnunet-attention check-architecture MODULE:CLASS`` (a researcher's own network), so the two cannot
drift. A subject is a trainer class (an :class:`~nnunet_attention.trainers.base.AttentionTrainerBase` subclass
naming its ``architecture_class``) or an architecture class (a
:class:`~nnunet_attention.architectures.planned_network.PlannedNetwork` subclass), which is checked under the base
trainer. Every check builds the network the way the trainer does, from plans shaped like nnU-Net's planner output
(:mod:`.plan_matrix`: 2D and 3D, isotropic and ``[1, 2, 2]`` strides, 4 to 7 stages, plain and ResEnc), and runs
what nnU-Net will run:

- ``output``: in evaluation mode without deep supervision (as the predictor builds it), one logits tensor
  ``(B, classes, *patch)``;
- ``deep-supervision``: nnU-Net's outputs at its deep-supervision scales (a prefix of at least two, highest
  resolution first), and nnU-Net's switch (``decoder.deep_supervision``) giving the first alone; or, for a network
  that declares none, a ValueError when asked for it;
- ``weights``: the same state dict with and without deep supervision (nnU-Net trains with it and predicts
  without, from one checkpoint);
- ``gradients``: every parameter receives a finite gradient in the trainer's training step (nnU-Net's DDP runs
  without ``find_unused_parameters``: an unused parameter stops multi-GPU training);
- ``fp16``: the trainer's step under fp16 autocast (nnU-Net's AMP) on inputs of magnitude 10 gives a finite loss
  and finite gradients;
- ``compile``: ``torch.compile(fullgraph=True)`` traces the network in one graph in training (the trainer's loss
  and gradients equal eager ones, compared in float64) and in evaluation with the attention probes hooked (as
  ``attention-maps`` runs);
- ``attention-maps``: every attention probe has a unique file-safe name, fires in one forward pass, lies on a grid
  aligned with the patch (the patch divided by a whole number along each axis: a level of the plan, a
  transformer's token grid), and summarises to ``(B, 1, *grid)`` inside its declared range;
- ``pretrained-weights``: nnU-Net's ``-pretrained_weights`` loader moves a checkpoint for another number of
  classes into the network: only layers named ``seg_layers`` depend on the classes;
- ``memory-estimate``: the planner's estimate (one training step on fake tensors) runs: ``nnunet-attention plan``
  can plan for the network.

A network that needs its patch divisible by more than the plan's strides (``patch_divisor``) is checked on the
matrix's plans with their patch rounded up to it, as ``nnunet-attention plan`` rounds it; a plan the network
refuses with a ``PlanError`` (a message naming the constraint and the fix) is not applicable to it.

A failed check is a :class:`CheckResult` with the reason and the plan; any other exception the network raises is
a failure too (its type and message are the reason).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from nnunet_attention.architectures.plan import PlanError

from .errors import UsageError
from .plan_matrix import PLAN_MATRIX as PLANS_OF_THE_MATRIX
from .plan_matrix import QUICK_PLANS, ContractPlan
from .planned_configuration import PlannedConfiguration

#: what nnU-Net's ``-pretrained_weights`` loader leaves out of the transfer (``load_pretrained_weights``)
SEGMENTATION_LAYERS = ".seg_layers."
#: a probe's map name: what ``attention-maps`` writes its files under
MAP_NAME = re.compile(r"[a-z0-9_]+")
#: z-scored CT-like intensities reach ±10
FP16_INPUT_MAGNITUDE = 10.0
DROPOUT_SEED = 5


class ContractViolation(AssertionError):
    """A promise of the contract the network breaks; the message says which and how."""


class NotApplicable(Exception):
    """The check does not apply to the network (the message says why)."""


@dataclass(frozen=True)
class CheckResult:
    check: str
    plan: str
    passed: bool | None  # None: not applicable
    reason: str = ""

    def line(self) -> str:
        status = {True: "ok", False: "FAIL", None: "skip"}[self.passed]
        return f"{status:<4}  {self.check:<18} {self.plan}" + (f": {self.reason}" if self.reason else "")


# ---- the subject ---------------------------------------------------------------------------------------------

def subject_trainer(subject: type) -> type:
    """The trainer class the checks run: ``subject`` itself where it is a trainer naming an architecture; for an
    architecture class, the base trainer with it as ``architecture_class``."""
    from nnunet_attention.architectures.planned_network import PlannedNetwork
    from nnunet_attention.trainers.base import AttentionTrainerBase

    if isinstance(subject, type) and issubclass(subject, AttentionTrainerBase):
        if subject.architecture_class is None:
            raise UsageError(f"{subject.__name__} names no architecture_class: set it to your network's class")
        return subject
    if isinstance(subject, type) and issubclass(subject, PlannedNetwork):
        name = f"nnUNetTrainer{subject.__name__}"
        return type(name, (AttentionTrainerBase,), {"architecture_class": subject, "__module__": subject.__module__,
                                                    "__qualname__": name})
    raise UsageError(
        f"{getattr(subject, '__name__', subject)!r} is neither a trainer (a subclass of "
        f"nnunet_attention.trainers.base.AttentionTrainerBase naming its architecture_class) nor an architecture "
        f"(a subclass of nnunet_attention.architectures.PlannedNetwork): see documentation/your_own_network.md")


def load_subject(reference: str) -> type:
    """``MODULE:CLASS`` imported (the module from ``sys.path``, as ``python -c 'import MODULE'`` would find it)."""
    module_name, separator, class_name = reference.partition(":")
    if not separator or not module_name or not class_name:
        raise UsageError(f"{reference!r} is not MODULE:CLASS (e.g. my_package.my_network:MyNetwork)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise UsageError(f"no module {error.name!r} on the Python path: install your package (pip install -e "
                             f".) or run from the folder that holds it") from None
        raise
    if not hasattr(module, class_name):
        import difflib

        close = difflib.get_close_matches(class_name, [n for n in vars(module) if not n.startswith("_")], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(f"module {module_name} has no {class_name}{hint}")
    return getattr(module, class_name)


def with_classes(configuration: PlannedConfiguration, num_classes: int) -> PlannedConfiguration:
    """The same plan for a dataset of the same channels and ``num_classes`` labels."""
    from .plans_fabricator import dataset_json_for

    return dataclasses.replace(configuration,
                               dataset_json=dataset_json_for(configuration.input_channels, num_classes))


def build(trainer: type, configuration: PlannedConfiguration, deep_supervision: bool, seed: int = 0) -> nn.Module:
    """The trainer's network on ``configuration`` (as ``build_network_architecture`` builds it, nnU-Net's
    initialisation), seeded."""
    torch.manual_seed(seed)
    return trainer.build_network_architecture(configuration.plans_manager(), configuration.configuration_manager(),
                                              configuration.input_channels, configuration.num_classes,
                                              deep_supervision)


def images(configuration: PlannedConfiguration, magnitude: float = 1.0) -> torch.Tensor:
    """A seeded batch of 2 random images of the plan's patch."""
    generator = torch.Generator().manual_seed(0)
    return magnitude * torch.randn(2, configuration.input_channels, *configuration.patch_size, generator=generator)


def output_tensors(outputs) -> list[torch.Tensor]:
    """Every tensor a network returns: one, a deep-supervision list, or nested tuples (MSGA's outputs)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for item in outputs for tensor in output_tensors(item)]


def deep_supervision_scales(trainer: type, configuration: PlannedConfiguration) -> list[list[float]]:
    """The scales ``trainer``'s loss and data loader use on the plan, from the trainer's own method."""
    view = SimpleNamespace(enable_deep_supervision=True, configuration_manager=configuration.configuration_manager())
    return [list(scale) for scale in trainer._get_deep_supervision_scales(view)]


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


# ---- the checks ----------------------------------------------------------------------------------------------

def check_output(trainer: type, configuration: PlannedConfiguration) -> None:
    network = build(trainer, configuration, deep_supervision=False).eval()
    with torch.no_grad():
        output = network(images(configuration))
    if not isinstance(output, torch.Tensor):
        raise ContractViolation(f"without deep supervision in evaluation mode it returned {type(output).__name__}, "
                                f"not one logits tensor (nnU-Net's predictor takes one)")
    expected = [2, configuration.num_classes, *configuration.patch_size]
    if _shape(output) != expected:
        raise ContractViolation(f"output {_shape(output)} where nnU-Net expects {expected} (batch, classes, patch)")


def check_deep_supervision(trainer: type, configuration: PlannedConfiguration) -> None:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if not trainer.supports_deep_supervision:
        try:
            build(trainer, configuration, deep_supervision=True)
        except ValueError:
            return
        raise ContractViolation("declares no deep supervision (supports_deep_supervision = False) but builds with "
                                "deep_supervision=True instead of refusing it")
    network = without_dropout(build(trainer, configuration, deep_supervision=True))
    image = images(configuration)
    with torch.no_grad():
        outputs = network(image)
    if isinstance(outputs, torch.Tensor) or len(outputs) < 2:
        raise ContractViolation("with deep supervision it must return a list of at least two logits tensors, "
                                "highest resolution first (one output makes nnU-Net's loss weights NaN)")
    scales = deep_supervision_scales(trainer, configuration)
    nnunet_scales = deep_supervision_scales(nnUNetTrainer, configuration)
    if len(outputs) != len(scales) or scales != nnunet_scales[:len(scales)]:
        raise ContractViolation(f"{len(outputs)} outputs where the trainer's loss uses {len(scales)} scales, a "
                                f"prefix of nnU-Net's {nnunet_scales}")
    for index, (output, scale) in enumerate(zip(outputs, scales)):
        expected = [2, configuration.num_classes,
                    *[round(p * s) for p, s in zip(configuration.patch_size, scale)]]
        if _shape(output) != expected:
            raise ContractViolation(f"deep-supervision output {index} is {_shape(output)}, not {expected} (scale "
                                    f"{scale} of the plan's strides)")
    nnUNetTrainer.set_deep_supervision_enabled(SimpleNamespace(network=network, is_ddp=False), False)
    with torch.no_grad():
        single = network(image)
    if not isinstance(single, torch.Tensor) or not torch.allclose(single, outputs[0], rtol=1e-5, atol=1e-6):
        raise ContractViolation("with nnU-Net's switch off (decoder.deep_supervision = False) the network must "
                                "return the first deep-supervision output alone")


def check_weights(trainer: type, configuration: PlannedConfiguration) -> None:
    if not trainer.supports_deep_supervision:
        raise NotApplicable("no deep supervision: one network for training and prediction")
    with_supervision = build(trainer, configuration, deep_supervision=True).state_dict()
    without = build(trainer, configuration, deep_supervision=False)
    if list(with_supervision) != list(without.state_dict()):
        extra = sorted(set(with_supervision) ^ set(without.state_dict()))[:3]
        raise ContractViolation(f"the state dict differs with and without deep supervision (e.g. {extra}): nnU-Net "
                                f"predicts without it from the checkpoint trained with it")
    without.load_state_dict(with_supervision, strict=True)


@contextlib.contextmanager
def _trainer_step(trainer: type, configuration: PlannedConfiguration, amp: bool, intensity: float = 1.0):
    """The trainer's own step (its network, loss, optimizer; nnU-Net's ``train_step``, see
    :class:`~nnunet_attention.trainer_step.TrainerStep`) on the plan, on a seeded batch of that intensity."""
    from .trainer_step import constructed_trainer, prepare_training_step, training_batch

    with constructed_trainer(trainer, configuration) as constructed:
        torch.manual_seed(0)
        step = prepare_training_step(constructed, 2, amp)
        step.batch = training_batch(constructed, torch.Generator().manual_seed(0), intensity=intensity)
        yield step


def _non_finite_gradients(network: nn.Module) -> list[str]:
    """The names of the parameters whose gradient holds an inf or a NaN."""
    return [name for name, p in network.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]


def check_gradients(trainer: type, configuration: PlannedConfiguration) -> None:
    with _trainer_step(trainer, configuration, amp=False) as step:
        weights = getattr(step.trainer.loss, "weight_factors", None)
        if weights is not None:  # nnU-Net's deep-supervision loss under DDP weights its lowest output 1e-6, not 0
            step.trainer.loss.weight_factors = tuple(weight or 1e-6 for weight in weights)
        step()
        missing = [name for name, p in step.network.named_parameters() if p.requires_grad and p.grad is None]
        if missing:
            raise ContractViolation(f"{len(missing)} parameter(s) received no gradient in the training step "
                                    f"(e.g. {missing[:3]}): nnU-Net's DDP stops on unused parameters; remove them "
                                    f"or use them in forward")
        infinite = _non_finite_gradients(step.network)
        if infinite:
            raise ContractViolation(f"non-finite gradients in {infinite[:3]}")


def check_fp16(trainer: type, configuration: PlannedConfiguration) -> None:
    with _trainer_step(trainer, configuration, amp=True, intensity=FP16_INPUT_MAGNITUDE) as step:
        step.trainer.optimizer.step = lambda *args, **kwargs: None  # the gradients are checked, not applied
        loss = step()
        if not torch.isfinite(loss):
            raise ContractViolation(f"the loss under fp16 autocast is {float(loss)} on inputs of magnitude "
                                    f"{FP16_INPUT_MAGNITUDE:g}: an intermediate overflows fp16 (largest finite "
                                    f"65504); compute it in float32 (torch.autocast(enabled=False)) or rescale it")
        infinite = _non_finite_gradients(step.network)
        if infinite:
            raise ContractViolation(f"non-finite gradients under fp16 autocast in {infinite[:3]} (before nnU-Net's "
                                    f"grad scaler, which would skip every step)")


def _graph_break(error: Exception) -> ContractViolation:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ContractViolation(f"torch.compile(fullgraph=True) cannot trace it in one graph: {first_line}")


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, scale: float | None = None) -> None:
    """float64 agreement up to a compiler's reassociation: 1e-9 of ``scale`` (default: the largest magnitude)
    absolute, else 1e-6 relative."""
    scale = float(expected.abs().max()) if scale is None else scale
    try:
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-9 * max(scale, 1e-6))
    except AssertionError as error:
        raise ContractViolation(f"compiled {what} differs from eager: {str(error).splitlines()[0]}") from None


def _in_float64(value):
    """A batch's tensors (or a list of them) in float64."""
    return [_in_float64(item) for item in value] if isinstance(value, list) else value.double()


def check_compile(trainer: type, configuration: PlannedConfiguration, backend: str = "aot_eager") -> None:
    """Compiled and eager runs compared in float64: a compiler's reordering of float32 sums alone differs by up to
    ~1e-3 of the largest gradient in a deep network (MSGA at full width on the 3d quick plan, where float32 eager
    itself is 1% off float64), while a wrong graph differs by far more than float64's rounding."""
    from nnunet_attention.architectures.blocks.attention_probe import capture_attention_maps

    with _trainer_step(trainer, configuration, amp=False) as step:
        network, loss_function = step.network.double(), step.trainer.loss
        data, target = step.batch["data"].double(), _in_float64(step.batch["target"])
        if backend == "inductor":  # inductor draws dropout masks from its own generator; aot_eager from eager's
            without_dropout(network)

        def run(module):
            network.zero_grad(set_to_none=True)
            torch.manual_seed(DROPOUT_SEED)  # the same dropout masks in both runs
            outputs = module(data)
            loss = loss_function(outputs, target)
            loss.backward()
            return ([t.detach() for t in output_tensors(outputs)], loss.detach(),
                    {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None})

        torch._dynamo.reset()
        compiled = torch.compile(network, backend=backend, fullgraph=True)
        eager_outputs, eager_loss, eager_gradients = run(network)
        try:
            compiled_outputs, compiled_loss, compiled_gradients = run(compiled)
        except torch._dynamo.exc.TorchDynamoException as error:
            raise _graph_break(error) from None
        for index, (actual, expected) in enumerate(zip(compiled_outputs, eager_outputs)):
            _assert_close(actual, expected, f"output {index}")
        _assert_close(compiled_loss, eager_loss, "loss")
        largest = max((float(g.abs().max()) for g in eager_gradients.values()), default=0.0)
        for name, gradient in eager_gradients.items():
            _assert_close(compiled_gradients[name], gradient, f"gradient of {name}", scale=largest)

    network = build(trainer, configuration, deep_supervision=False).eval().double()
    image = images(configuration).double()
    with torch.no_grad():
        with capture_attention_maps(network) as eager_maps:
            eager = network(image)
        torch._dynamo.reset()
        try:
            with capture_attention_maps(network) as compiled_maps:
                logits = torch.compile(network, backend=backend, fullgraph=True)(image)
        except torch._dynamo.exc.TorchDynamoException as error:
            raise _graph_break(error) from None
    _assert_close(logits, eager, "logits in evaluation mode with the attention probes hooked")
    for name, attention_map in eager_maps.items():
        _assert_close(compiled_maps[name], attention_map, f"attention map {name}")


def check_attention_maps(trainer: type, configuration: PlannedConfiguration) -> None:
    from nnunet_attention.architectures.blocks.attention_probe import attention_probes, capture_attention_maps

    network = build(trainer, configuration, deep_supervision=False).eval()
    probes = attention_probes(network)
    if not probes:
        raise NotApplicable("no attention probe (AttentionProbe) in the network: attention-maps has nothing to "
                            "export")
    names = [probe.map_name for probe in probes.values()]
    bad = [name for name in names if not (name and MAP_NAME.fullmatch(name))]
    if bad or len(set(names)) != len(names):
        raise ContractViolation(f"map names must be unique and of a-z, 0-9 and _ (file names): {names}")
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(images(configuration, magnitude=10))
    silent = sorted(set(probes) - set(maps))
    if silent:
        raise ContractViolation(f"probes that never fired in a forward pass: {silent}")
    patch = configuration.patch_size
    for path, probe in probes.items():
        grid = maps[path].shape[2:]
        if len(grid) != len(patch) or any(size < 1 or whole % size for size, whole in zip(grid, patch)):
            raise ContractViolation(f"map {probe.map_name} is on a {list(grid)} grid, which does not divide the "
                                    f"patch {list(patch)} along every axis: attention-maps resamples a map to the "
                                    f"image, which lines up only for a grid the patch is a whole multiple of")
        summary = probe.summarize(maps[path])
        if summary.shape[:2] != (2, 1) or summary.ndim != 2 + len(configuration.patch_size):
            raise ContractViolation(f"map {probe.map_name} summarises to {_shape(summary)}, not (B, 1, *grid)")
        low, high = probe.value_range
        if not (torch.isfinite(summary).all() and low <= summary.min() and summary.max() <= high):
            raise ContractViolation(f"map {probe.map_name} has values in [{float(summary.min()):.3g}, "
                                    f"{float(summary.max()):.3g}], outside its declared range [{low}, {high}]")


def check_pretrained_weights(trainer: type, configuration: PlannedConfiguration) -> None:
    import tempfile
    from pathlib import Path

    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    from .nnunet_commands import nnunet_chatter_hidden

    supervised = trainer.supports_deep_supervision
    source = build(trainer, with_classes(configuration, 3), deep_supervision=supervised, seed=1)
    target = build(trainer, with_classes(configuration, 5), deep_supervision=supervised, seed=2)
    source_weights = source.state_dict()
    fresh = {key: value.clone() for key, value in target.state_dict().items()}
    class_dependent = sorted(k for k in source_weights if k in fresh and source_weights[k].shape != fresh[k].shape)
    misnamed = [key for key in class_dependent if SEGMENTATION_LAYERS not in key]
    if misnamed:
        raise ContractViolation(f"weights whose shape depends on the number of classes outside layers named "
                                f"seg_layers: {misnamed[:3]}; nnU-Net's -pretrained_weights loader transfers every "
                                f"weight but those whose key contains '{SEGMENTATION_LAYERS}'")
    with tempfile.TemporaryDirectory(prefix="nnunet_attention_contract_") as temporary:
        checkpoint = Path(temporary) / "checkpoint_final.pth"
        torch.save({"network_weights": source_weights}, checkpoint)
        try:
            with nnunet_chatter_hidden():
                load_pretrained_weights(target, str(checkpoint))
        except AssertionError as error:
            raise ContractViolation(f"nnU-Net's -pretrained_weights loader refuses a checkpoint of the same "
                                    f"network for another number of classes: {error}") from None
    for key, loaded in target.state_dict().items():
        expected = fresh[key] if SEGMENTATION_LAYERS in key else source_weights[key]
        if not torch.equal(loaded, expected):
            raise ContractViolation(f"{key} is not what nnU-Net's loader should leave there")


def check_memory_estimate(trainer: type, configuration: PlannedConfiguration) -> None:
    from .memory_estimate import training_step_peak_bytes

    peak = training_step_peak_bytes(trainer, configuration, 2)
    if not peak > 0:
        raise ContractViolation(f"the planner's estimate is {peak} bytes")


def without_dropout(network: nn.Module) -> nn.Module:
    """Dropout layers and attention dropout (an ``attention_dropout`` attribute) off, in training mode too: for
    two forward passes that must compute the same function (their random masks would differ)."""
    for module in network.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.0
    return network


@dataclass(frozen=True)
class Check:
    """One promise: its name, what it runs, on which plans in a full run and with ``--quick``."""

    name: str
    run: Callable[[type, PlannedConfiguration], None]
    plans: Sequence[ContractPlan]
    quick_plans: Sequence[ContractPlan]


#: every check, in the order they run
CHECKS = {check.name: check for check in (
    Check("output", check_output, PLANS_OF_THE_MATRIX, QUICK_PLANS),
    Check("deep-supervision", check_deep_supervision, PLANS_OF_THE_MATRIX, QUICK_PLANS),
    Check("weights", check_weights, PLANS_OF_THE_MATRIX, QUICK_PLANS[:1]),
    Check("attention-maps", check_attention_maps, PLANS_OF_THE_MATRIX, QUICK_PLANS),
    Check("gradients", check_gradients, QUICK_PLANS, QUICK_PLANS[1:]),
    Check("fp16", check_fp16, QUICK_PLANS, QUICK_PLANS[1:]),
    Check("pretrained-weights", check_pretrained_weights, QUICK_PLANS, QUICK_PLANS[:1]),
    Check("memory-estimate", check_memory_estimate, QUICK_PLANS[:1], QUICK_PLANS[:1]),
    Check("compile", check_compile, QUICK_PLANS, QUICK_PLANS[1:]),
)}


def matrix_configuration(trainer: type, plan: ContractPlan) -> PlannedConfiguration:
    """``plan`` of the matrix for ``trainer``'s network: its patch rounded up to the multiple the network declares
    (``patch_divisor``), as ``nnunet-attention plan`` rounds it."""
    return plan.configuration(getattr(trainer, "patch_divisor", 1))


def run_check(trainer: type, check: str, plan: ContractPlan | PlannedConfiguration) -> CheckResult:
    """``check`` of ``trainer``'s network on ``plan`` (one of the matrix, for a dataset of 2 channels and 3
    classes, or a planned configuration): passed, failed with the reason, or not applicable. An exception the
    network raises is a failure with its type and message."""
    try:
        CHECKS[check].run(trainer, matrix_configuration(trainer, plan) if isinstance(plan, ContractPlan) else plan)
    except NotApplicable as reason:
        return CheckResult(check, plan.name, None, str(reason))
    except PlanError as refusal:  # the network's own refusal of a plan it cannot run, with the fix
        return CheckResult(check, plan.name, None, f"the network refuses this plan: {refusal}")
    except ContractViolation as reason:
        return CheckResult(check, plan.name, False, str(reason))
    except Exception as error:  # noqa: BLE001 - the network's own error is the finding
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return CheckResult(check, plan.name, False, f"raised {type(error).__name__}: {message}")
    return CheckResult(check, plan.name, True)


def check_architecture(subject: type, quick: bool = False, checks: Sequence[str] | None = None,
                       configurations: Sequence[PlannedConfiguration] | None = None) -> Iterator[CheckResult]:
    """Every check (or those named) of ``subject`` (a trainer or architecture class) as they run: on each check's
    plans of the matrix (``quick``: its quick plans), or on each of ``configurations`` (a user's plans)."""
    trainer = subject_trainer(subject)
    for name in checks or CHECKS:
        check = CHECKS[name]
        plans = configurations or (check.quick_plans if quick else check.plans)
        for plan in plans:
            yield run_check(trainer, name, plan)
