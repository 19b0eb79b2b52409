"""Multi-GPU readiness: nnU-Net's ``-num_gpus`` wraps the network in DistributedDataParallel without
``find_unused_parameters``, so every parameter must take part in every step. Checked on CPU with gloo and
2 processes for every registered trainer, deep supervision on: two steps run (DDP raises on the second
if a parameter went unused in the first) and the averaged gradients equal one process's on the full batch.
"""

import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from distributed_steps import CASES, WORLD_SIZE, case_network_and_batch, ddp_worker, gradients
from test_architecture_contract import training_loss


@pytest.fixture(scope="module")
def ddp_gradients():
    """Rank 0's gradients after the DDP steps, per case (one pair of processes runs every case)."""
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(ddp_worker, args=(str(Path(folder) / "rendezvous"), folder), nprocs=WORLD_SIZE, join=True)
        yield [torch.load(Path(folder) / f"{index}.pt") for index in range(len(CASES))]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}-{c[1]}d" for c in CASES])
def test_ddp_gradients_equal_a_single_process_step_on_the_full_batch(index, ddp_gradients):
    network, image, target = case_network_and_batch(*CASES[index])
    training_loss(network(image), target).backward()
    expected = gradients(network)
    assert list(ddp_gradients[index]) == list(expected)
    for name, gradient in expected.items():
        torch.testing.assert_close(ddp_gradients[index][name], gradient, rtol=1e-9, atol=1e-12,
                                   msg=lambda message, name=name: f"{name}: {message}")
