"""Fine-tuning with nnU-Net's ``-pretrained_weights``: its loader (``load_pretrained_weights``, what
``nnUNetv2_train -pretrained_weights`` calls) transfers every weight but those whose key contains
``.seg_layers.``, and asserts that every other key exists with the same shape. So every layer whose shape depends
on the number of classes must be named ``seg_layers``, and nothing else may depend on it. The stock command on a
dataset with another number of classes runs in the end-to-end tests."""

import pytest
import torch
from helpers import build, make_plan
from nnunet_attention.trainers import TRAINERS
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

SOURCE_CLASSES, TARGET_CLASSES = 3, 5
SKIPPED = ".seg_layers."


@pytest.mark.parametrize("trainer_name", sorted(TRAINERS))
@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)], ids=["2d", "3d"])
def test_pretrained_weights_of_another_class_count_load_with_nnunets_loader(trainer_name, spatial_dims, anisotropic,
                                                                              tmp_path):
    """A checkpoint of the network for 3 classes loads into the network for 5 classes: every weight but the
    class heads is the checkpoint's, the class heads keep their fresh initialisation, and they are all the
    weights whose shape depends on the number of classes."""
    kwargs, patch = make_plan(spatial_dims, 5, anisotropic)
    source = build(trainer_name, kwargs, patch, deep_supervision=True, seed=1, num_classes=SOURCE_CLASSES)
    target = build(trainer_name, kwargs, patch, deep_supervision=True, seed=2, num_classes=TARGET_CLASSES)
    source_weights, fresh_weights = source.state_dict(), {k: v.clone() for k, v in target.state_dict().items()}
    assert list(source_weights) == list(fresh_weights)
    class_dependent = sorted(k for k in source_weights if source_weights[k].shape != fresh_weights[k].shape)
    heads = sorted(k for k in source_weights if SKIPPED in k)
    assert class_dependent and class_dependent == heads

    checkpoint = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": source_weights}, checkpoint)
    load_pretrained_weights(target, str(checkpoint))
    for key, loaded in target.state_dict().items():
        expected = fresh_weights[key] if SKIPPED in key else source_weights[key]
        assert torch.equal(loaded, expected), key
