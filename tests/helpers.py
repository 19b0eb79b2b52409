"""What the tests share: plans shaped like nnU-Net's planner output, the networks and trainers built on them at
the CPU test width, the attention blocks of the fp16 tests, and the CPU kernels of the bf16 autocast tests.

Only this module (with the slow references of :mod:`paper_references` and :mod:`mt_unet_reference`, and the
fingerprints of :mod:`fingerprints`) is imported by test modules; no test module imports another.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from nnunet_attention.architectures import UNetPlan
from nnunet_attention.architectures.blocks.cross_axis_attention import MultiScaleCrossAxisAttention
from nnunet_attention.architectures.blocks.external_attention import ExternalAttention
from nnunet_attention.architectures.blocks.gaussian_axial_attention import GaussianAxialAttention
from nnunet_attention.architectures.blocks.global_aggregation import GlobalAggregation
from nnunet_attention.architectures.blocks.guided_attention import ChannelAttention, PositionAttention
from nnunet_attention.architectures.blocks.local_global_attention import LocalGlobalGaussianAttention
from nnunet_attention.architectures.msga import MSGAOutputs
from nnunet_attention.trainers import TRAINERS
from nnunet_attention.trainers.msga import MSGALoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_attention.architecture_contract import output_tensors  # noqa: F401 - for the tests
from nnunet_attention.architecture_contract import without_dropout as disable_dropout  # noqa: F401
from nnunet_attention.plan_matrix import (  # noqa: F401 - the tests' plans and dataset
    INPUT_CHANNELS,
    NUM_CLASSES,
    make_plan,
    plan_from_layout,
)
from nnunet_attention.plan_matrix import PLAN_MATRIX as CONTRACT_PLAN_MATRIX

# ---- plans ----------------------------------------------------------------------------------------------------

#: (spatial_dims, n_stages, anisotropic) covering 2D/3D, isotropic/[1,2,2] strides and 4-7 stages
PLAN_MATRIX = [(plan.spatial_dims, plan.n_stages, plan.anisotropic) for plan in CONTRACT_PLAN_MATRIX]


#: lighter settings for the CPU test runs, per trainer, where the default network is too slow to run many
#: times on 2 cores: MSGA runs ~130 convolutions per step on the attention grid (an autoencoder at 2-8 x 64
#: channels and two attention branches per scale and step), seconds per step even on the demo's small 2d
#: plan. The default (64 channels, 4 scales) is exercised in test_msga.py and the benchmark. MONAI's SwinUNETR
#: attends within windows of 7**3 = 343 tokens at half the patch's resolution: at its narrowest width (12) with
#: windows of 3 (still padded and shifted on the matrix' grids), 2.2 s per 3D step of the matrix' largest plan
#: where windows of 5 took 7.5 s; UNETR's ViT-B (86M parameters): a ViT of width 48. MONAI's defaults are checked
#: against MONAI's own networks in test_monai_networks.py and run in the benchmark.
NARROW_ARCHITECTURE_KWARGS = {
    "nnUNetTrainerMSGA": {"attention_channels": 8, "n_scales": 2},
    "nnUNetTrainerSwinUNETR": {"feature_size": 12, "window_size": 3},
    "nnUNetTrainerUNETR": {"feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
}


# ---- networks -------------------------------------------------------------------------------------------------

ARCHITECTURES = {name: trainer.architecture_class for name, trainer in TRAINERS.items()}
#: the trainers whose networks run on any patch of a U-Net plan (``patch_divisor`` 1): the tests whose point is a
#: fixed odd plan or dataset shape (edge layouts, in-process learning on small cases, nnU-Net's own planned patches)
#: take these. SwinUNETR and UNETR need multiples of 32 and 16: the other tests round their patch
#: (``plan_matrix.patch_for_divisor``), test_monai_networks.py checks them against MONAI, and the end-to-end tests
#: train them on the plans `nnunet-attention plan` gives them.
ANY_PATCH_TRAINERS = sorted(name for name, trainer in TRAINERS.items() if trainer.patch_divisor == 1)


def build(name, kwargs, patch, deep_supervision, nnunet_init=True, seed=0, num_classes=NUM_CLASSES):
    torch.manual_seed(seed)
    deep_supervision = deep_supervision and TRAINERS[name].supports_deep_supervision
    network = ARCHITECTURES[name](UNetPlan.from_arch_kwargs(kwargs, patch), INPUT_CHANNELS, num_classes,
                                  deep_supervision, **NARROW_ARCHITECTURE_KWARGS.get(name, {}))
    if nnunet_init:
        network.apply(network.initialize)
    return network


def open_zero_initialised_gates(network: torch.nn.Module) -> None:
    """DANet gammas start at 0 (the modules start as the identity), which zeroes the gradients behind them in the
    first step by design; give them values so every path carries signal."""
    for module in network.modules():
        if isinstance(module, PositionAttention | ChannelAttention):
            torch.nn.init.constant_(module.gamma, 0.1)



def training_loss(outputs, target: torch.Tensor) -> torch.Tensor:
    """CE of each deep-supervision output (or of the one output) against the nearest-resized target; for MSGA its
    trainer's loss."""
    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
        resized = F.interpolate(target[:, None].float(), size=logits.shape[2:])[:, 0].long()
        return F.cross_entropy(logits.float(), resized)

    if isinstance(outputs, MSGAOutputs):
        return MSGALoss(lambda logits, _target: cross_entropy(logits))(outputs, target)
    if isinstance(outputs, torch.Tensor):
        return cross_entropy(outputs)
    return sum(cross_entropy(logits) for logits in outputs)


# ---- trainers -------------------------------------------------------------------------------------------------

def harness_trainer_class(trainer_class: type[nnUNetTrainer]) -> type[nnUNetTrainer]:
    """``trainer_class`` at the CPU test width (see NARROW_ARCHITECTURE_KWARGS), under its own name."""
    name = getattr(trainer_class, "controlled_trainer", None) or trainer_class.__name__  # a control: its trainer's
    narrow = NARROW_ARCHITECTURE_KWARGS.get(name)
    if not narrow:
        return trainer_class
    attributes = {"architecture_kwargs": {**trainer_class.architecture_kwargs, **narrow}, "__module__": __name__}
    return type(trainer_class.__name__, (trainer_class,), attributes)


def with_gates_open(trainer_class: type[nnUNetTrainer]) -> type[nnUNetTrainer]:
    """``trainer_class`` whose networks are built with their zero-initialised gates opened
    (:func:`open_zero_initialised_gates`), so that a comparison of two runs covers the paths behind them too."""
    def build_network_architecture(cls, *args, **kwargs):
        network = super(opened, cls).build_network_architecture(*args, **kwargs)
        open_zero_initialised_gates(network)
        return network

    opened = type(trainer_class.__name__, (trainer_class,), {
        "build_network_architecture": classmethod(build_network_architecture), "__module__": __name__})
    return opened


def make_trainer(trainer_class: type[nnUNetTrainer], plans: dict, dataset_json: dict, root: Path, monkeypatch,
                 initialize: bool = True, configuration: str | None = None, device: str = "cpu") -> nnUNetTrainer:
    """``trainer_class(plans, configuration, fold 0, dataset_json, device)`` with nnU-Net's folders under ``root``;
    initialized (network, loss, optimizer) unless ``initialize`` is False. ``configuration``: by default the plans'
    first."""
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(root / variable))
    trainer = construct_trainer(trainer_class, plans, dataset_json, root, configuration, device)
    if initialize:
        trainer.initialize()
    return trainer


def construct_trainer(trainer_class: type[nnUNetTrainer], plans: dict, dataset_json: dict, root: Path,
                      configuration: str | None = None, device: str = "cpu") -> nnUNetTrainer:
    """``trainer_class(plans, configuration, fold 0, dataset_json, device)``, not initialized, with a preprocessed
    folder under ``root`` for nnU-Net's ``initialize()`` to find its dataset class in."""
    configuration = configuration or next(iter(plans["configurations"]))
    data_identifier = PlansManager(plans).get_configuration(configuration).data_identifier
    data_folder = root / "nnUNet_preprocessed" / plans["dataset_name"] / data_identifier
    data_folder.mkdir(parents=True, exist_ok=True)
    (data_folder / "case.b2nd").touch()  # nnU-Net picks its dataset class from the preprocessed files' ending
    return trainer_class({**copy.deepcopy(plans), "continue_training": False}, configuration, 0, dataset_json,
                         torch.device(device))


# ---- attention blocks under fp16 ------------------------------------------------------------------------------

MAGNITUDE = 300.0
#: id -> (block factory, input shape)
BLOCKS = {
    # the same block: the up-sampling one shares its attention; only its query is a transposed conv, whose fp16
    # weight gradient overflows at inputs of 300 whatever the softmax (a conv matter, which nnU-Net's GradScaler
    # handles; in the network the block's input is normalised)
    "global aggregation 3d": (lambda: GlobalAggregation(nn.Conv3d, 16, 8, 2), (2, 16, 4, 6, 6)),
    "position attention 2d": (lambda: PositionAttention(nn.Conv2d, 16), (2, 16, 8, 8)),
    "channel attention 3d": (ChannelAttention, (2, 16, 4, 6, 6)),
    "cross-axis attention 3d": (lambda: MultiScaleCrossAxisAttention(nn.Conv3d, 16, 2), (2, 16, 4, 6, 6)),
    "gaussian axial attention 2d": (lambda: GaussianAxialAttention(16), (2, 8, 8, 16)),
    "local-global attention 2d": (lambda: LocalGlobalGaussianAttention(16, (4, 4), 2), (2, 8, 8, 16)),
    "external attention": (lambda: ExternalAttention(16, 2), (2, 64, 16)),
}


#: largest error of an fp16 autocast run against float64, relative to the largest magnitude of the compared tensor
#: (fp16's unit roundoff is 4.9e-4; measured at most 2.1e-3 over these blocks)
FP16_TOLERANCE = 1e-2


def block_and_half_input(block_id: str, magnitude: float):
    """The block (seeded, zero-initialised gates opened, dropout off) and an fp16 input of that magnitude."""
    factory, shape = BLOCKS[block_id]
    torch.manual_seed(0)
    block = disable_dropout(factory())
    open_zero_initialised_gates(block)
    return block, (magnitude * torch.randn(shape)).half()


def largest_relative_error(actual: torch.Tensor, expected: torch.Tensor, scale: float | None = None) -> float:
    scale = float(expected.abs().max()) if scale is None else scale
    return float((actual.double() - expected).abs().max()) / scale


# ---- bf16 autocast on the CPU ---------------------------------------------------------------------------------
#Convolution kernels for the bf16 autocast tests on the CPU.
#
#oneDNN's bf16 ``Conv3d`` weight gradient is wrong on some CPUs with native bf16 instructions (seen on an AMD
#EPYC with ``avx512_bf16``, torch 2.14.1): for a plain ``nn.Conv3d(8, 16, 3, padding=1)`` on an input of
#shape ``(2, 8, 2, 4, 12)`` it returns inf or values orders of magnitude off PyTorch's own kernel, different
#from call to call, with no code of this package involved. nnU-Net autocasts only on CUDA, so no training run
#goes through that kernel; the AMP tests check the networks' numerics, so their bf16 steps run on PyTorch's
#native convolution kernels (:func:`bf16_safe_kernels`), whose gradient ``test_architecture_contract`` checks
#against float64.

@contextmanager
def bf16_safe_kernels(dtype: torch.dtype) -> Iterator[None]:
    """Context for a CPU forward and backward under autocast to ``dtype``: oneDNN off for bf16 (see the module
    docstring), unchanged for fp16. Enclose the backward too: the backward picks its kernel when it runs."""
    enabled = torch.backends.mkldnn.enabled
    if dtype == torch.bfloat16:
        torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled
