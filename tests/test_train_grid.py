"""The grid runner's scheduling with stand-in jobs (a short sleep each): one job per GPU slot at a time, failures
reported, and the Slurm script's shape. The real grid runs in ``test_grid_and_compare.py``."""

import subprocess
import sys
import time

from nnunet_attention.train_grid import TrainingJob, grid, run_jobs, slurm_script

JOB_SECONDS = 0.4


def test_one_job_per_slot_at_a_time_and_failures_are_named():
    jobs = grid(990, ["2d"], ["A", "B"], ["0", "1", "2"])
    started: list[tuple[str, str, float]] = []

    def launch(job: TrainingJob, slot: str | None) -> subprocess.Popen:
        started.append((job.name, slot, time.monotonic()))
        code = 1 if job.name == "B 2d fold 1" else 0
        stand_in = f"import time, sys; time.sleep({JOB_SECONDS}); sys.exit({code})"
        return subprocess.Popen([sys.executable, "-c", stand_in])

    failed = run_jobs(jobs, ["0", "1"], launch, poll_seconds=0.05)
    assert failed == ["B 2d fold 1"]
    assert [name for name, _, _ in started] == [job.name for job in jobs]
    assert {slot for _, slot, _ in started} == {"0", "1"}
    for slot in ("0", "1"):
        starts = [at for _, s, at in started if s == slot]
        assert all(later - earlier >= JOB_SECONDS for earlier, later in zip(starts, starts[1:]))
    assert started[1][2] - started[0][2] < JOB_SECONDS  # the two slots run side by side


def test_grid_order_and_the_slurm_script_header():
    jobs = grid(27, ["2d", "3d_fullres"], ["nnUNetTrainer", "nnUNetTrainerMTUNet"], ["0", "1"], "nnUNetPlans_X")
    assert [job.name for job in jobs][:3] == ["nnUNetTrainer 2d fold 0", "nnUNetTrainer 2d fold 1",
                                              "nnUNetTrainer 3d_fullres fold 0"]
    script = slurm_script(jobs, partition="gpu")
    assert "#SBATCH --array=0-7" in script and "#SBATCH --partition=gpu" in script
    assert "'nnUNetv2_train 27 3d_fullres 1 -tr nnUNetTrainerMTUNet -p nnUNetPlans_X --c'" in script
