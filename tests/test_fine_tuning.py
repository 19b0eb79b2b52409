"""Fine-tuning with nnU-Net's ``-pretrained_weights``: its loader (``load_pretrained_weights``, what
``nnUNetv2_train -pretrained_weights`` calls) transfers every weight but those whose key contains
``.seg_layers.``, and asserts that every other key exists with the same shape. So every layer whose shape depends
on the number of classes must be named ``seg_layers``, and nothing else may depend on it. The contract's
``pretrained-weights`` check (what ``check-architecture`` runs) for every trainer, 2D and 3D: a checkpoint for 3
classes loads into the network for 5; every weight but the class heads is the checkpoint's and the class heads
keep their fresh initialisation. The stock command on a dataset with another number of classes runs in the
end-to-end tests."""

import pytest
from helpers import harness_trainer_class
from nnunet_attention.trainers import TRAINERS

from nnunet_attention.architecture_contract import check_pretrained_weights, matrix_configuration
from nnunet_attention.plan_matrix import QUICK_PLANS


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
@pytest.mark.parametrize("plan", QUICK_PLANS, ids=lambda plan: plan.name)
def test_pretrained_weights_of_another_class_count_load_with_nnunets_loader(trainer_name, plan):
    trainer = TRAINERS[trainer_name]
    check_pretrained_weights(harness_trainer_class(trainer), matrix_configuration(trainer, plan))
