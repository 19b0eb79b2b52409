"""``torch.compile``, as nnU-Net runs every network on CUDA by default (the trainer compiles it for training, the
predictor for inference when ``nnUNet_compile`` is set).

For every registered trainer, on a 2D and an anisotropic 3D plan, the contract's ``compile`` check
(``architecture_contract.check_compile``, what ``check-architecture`` runs): ``torch.compile(fullgraph=True)``
traces the network in one graph (a graph break raises) in training mode as the trainer runs it (its loss, deep
supervision where the trainer uses it, dropout on) and in evaluation mode as the predictor runs it (no_grad) with
the attention probes hooked (forward hooks, which must not break the graph); the compiled outputs, loss, every
gradient and every map equal eager execution. Zero-initialised gates are opened so that the paths behind them are
compared too. The default suite compiles with ``aot_eager`` (Dynamo's tracing and AOTAutograd's joint
forward-backward graph, without code generation: what breaks graphs and autograd); ``pytest -m inductor`` runs the
same check with nnU-Net's backend, inductor (minutes on a CPU).
"""

import pytest
from helpers import harness_trainer_class, with_gates_open
from nnunet_attention.trainers import TRAINERS

from nnunet_attention.architecture_contract import check_compile, matrix_configuration
from nnunet_attention.plan_matrix import QUICK_PLANS

BACKENDS = [pytest.param("aot_eager", id="aot_eager"),
            pytest.param("inductor", id="inductor", marks=pytest.mark.inductor)]


#: (trainer, plan): every trainer on both plans, but MONAI's networks on one by default: UNETR (8 s per case on 2
#: cores) in 3D, SwinUNETR (11 s in 2D, 20-28 s in 3D) in 2D; MONAI's 4D and 5D branches (window partitioning,
#: shifting, masking) are written alike, and the other case runs with -m slow (and in `check-architecture --quick`,
#: which compiles on the 3D plan)
MONAI_DEFAULT_DIMS = {"nnUNetTrainerSwinUNETR": 2, "nnUNetTrainerUNETR": 3}
CASES = [pytest.param(name, plan, id=f"{name}-{plan.name}",
                      marks=[pytest.mark.slow] if MONAI_DEFAULT_DIMS.get(name, plan.spatial_dims) != plan.spatial_dims
                      else [])
         for name in sorted(TRAINERS) for plan in QUICK_PLANS]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("trainer_name,plan", CASES)
def test_compiled_training_and_inference_are_one_graph_and_equal_eager(trainer_name, plan, backend):
    trainer = TRAINERS[trainer_name]
    check_compile(with_gates_open(harness_trainer_class(trainer)), matrix_configuration(trainer, plan), backend)
