"""Determinism on CPU: the same seed gives the same network, the same first-step loss and the same weights after
the step, for every registered trainer; another seed gives another loss (so the check can fail)."""

import pytest
import torch
from nnunet_attention.trainers import TRAINERS
from plan_factory import make_plan
from test_architecture_contract import INPUT_CHANNELS, NUM_CLASSES, build, training_loss


def first_step(name: str, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss of the first SGD step, weights after it) of ``name``'s network, everything drawn from ``seed``."""
    kwargs, patch = make_plan(2, 4, False)
    network = build(name, kwargs, patch, deep_supervision=True, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(2, INPUT_CHANNELS, *patch, generator=generator)
    target = torch.randint(0, NUM_CLASSES, (2, *patch), generator=generator)
    optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True)
    loss = training_loss(network(image), target)
    loss.backward()
    optimizer.step()
    return loss.detach(), {key: value.clone() for key, value in network.state_dict().items()}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_same_seed_same_first_step(name):
    loss, weights = first_step(name, seed=3)
    again_loss, again_weights = first_step(name, seed=3)
    assert torch.equal(loss, again_loss)
    assert all(torch.equal(weights[key], again_weights[key]) for key in weights)
    other_loss, _ = first_step(name, seed=4)
    assert not torch.equal(loss, other_loss)
