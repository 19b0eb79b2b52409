"""The grid runner's scheduling with stand-in jobs (a short sleep each): one job per GPU slot at a time, failures
reported, and the Slurm script's shape. The real grid runs in ``test_grid_and_compare.py``."""

import os
import signal
import subprocess
import sys
import threading
import time

from nnunet_attention.nnunet_layout import NNUNET_FOLDERS
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


#: a stand-in for nnUNetv2_train: it saves a checkpoint at once, as training does; started with --c it validates
#: (writes the fold's summary) and ends, else it trains on (sleeps) until stopped
STAND_IN_TRAINING = """
import pathlib, sys, time
dataset, configuration, fold = sys.argv[1:4]
trainer, plans = sys.argv[sys.argv.index("-tr") + 1], sys.argv[sys.argv.index("-p") + 1]
folder = pathlib.Path(RESULTS) / "Dataset990_Grid" / f"{trainer}__{plans}__{configuration}" / f"fold_{fold}"
(folder / "validation").mkdir(parents=True, exist_ok=True)
(folder / "checkpoint_latest.pth").write_text("")
if "--c" in sys.argv:
    (folder / "validation" / "summary.json").write_text("{}")
else:
    time.sleep(60)
"""


def test_ctrl_c_stops_the_grid_with_a_message_and_the_same_command_resumes_it(tmp_path, monkeypatch, capsys):
    from nnunet_attention import cli, train_grid

    folders = {name: tmp_path / name for name in NNUNET_FOLDERS}
    (folders["nnUNet_raw"] / "Dataset990_Grid").mkdir(parents=True)
    for variable, folder in folders.items():
        monkeypatch.setenv(variable, str(folder))
    script = tmp_path / "nnUNetv2_train_stand_in.py"
    script.write_text(f"RESULTS = {str(folders['nnUNet_results'])!r}\n" + STAND_IN_TRAINING)
    monkeypatch.setattr(train_grid, "console_command", lambda name: [sys.executable, str(script)])
    checkpoint = folders["nnUNet_results"] / "Dataset990_Grid" / "nnUNetTrainer__nnUNetPlans__2d" / "fold_0" / (
        "checkpoint_latest.pth")

    def press_ctrl_c_once_training_saved_a_checkpoint():
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    command = ["train-grid", "-d", "990", "-c", "2d", "-tr", "nnUNetTrainer", "-f", "0", "-device", "cpu", "--logs",
               str(tmp_path / "logs")]
    # Ctrl-C as at a terminal: a shell without job control (CI running the tests in the background) starts them
    # with SIGINT ignored
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        presser = threading.Thread(target=press_ctrl_c_once_training_saved_a_checkpoint)
        presser.start()
        assert cli.main(command) == 130
        presser.join()
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    output = capsys.readouterr().out
    assert "nnUNetTrainer 2d fold 0: starting" in output
    assert "interrupted (Ctrl-C): the running jobs were stopped. The same command continues the grid" in output
    assert not checkpoint.with_name("validation").joinpath("summary.json").exists()
    assert cli.main(command) == 0  # resumed from the checkpoint with --c, and finished
    output = capsys.readouterr().out
    assert "nnUNetTrainer 2d fold 0: continuing" in output and "all 1 jobs of the grid are finished" in output
    assert checkpoint.with_name("validation").joinpath("summary.json").is_file()
