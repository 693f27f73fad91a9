"""The SIGTERM check among DDP ranks every N steps (`curator.tasks.sigterm`): on a real Trainer, Lightning's
per-step broadcast runs only at every N-th global step and still stops training when it says so; and train.py
under DDP (2 CPU processes, gloo) stops on SIGTERM with both ranks gone, as users' schedulers send it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import make_labeled_shards
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import SIGTERMException

from curator.tasks.sigterm import SigtermCheckEveryNSteps

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


class Broadcasts:
    """Stands in for torch.distributed.broadcast in one process: records the global step of each call and
    writes `flag` into the tensor, as rank 0's broadcast would."""

    def __init__(self, trainer: L.Trainer):
        self.trainer, self.steps, self.flag = trainer, [], 0

    def __call__(self, tensor, src=0, **kwargs):
        self.steps.append(self.trainer.global_step)
        tensor.fill_(self.flag)


def _fit_with_check(monkeypatch, tmp_path, every_n_steps: int, max_steps: int, sigterm_at: int | None = None):
    """Trains BoringModel as one rank among two; returns the trainer, the broadcasts and the SIGTERMException
    that stopped training (None when it ran to max_steps)."""
    trainer = L.Trainer(
        max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[SigtermCheckEveryNSteps(every_n_steps)],
        default_root_dir=tmp_path,
    )  # fmt: skip
    broadcasts = Broadcasts(trainer)
    # Lightning broadcasts only with more than one process: a real process group of one, seen by the loop as a
    # rank among two.
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    monkeypatch.setattr(type(trainer), "world_size", property(lambda self: 2))
    monkeypatch.setattr(torch.distributed, "broadcast", broadcasts)

    class Model(BoringModel):
        def on_train_batch_start(self, batch, batch_idx):
            if sigterm_at is not None and self.trainer.global_step == sigterm_at:
                broadcasts.flag = 1  # another rank was sent SIGTERM

    stopped = None
    try:
        trainer.fit(Model())
    except SIGTERMException as e:
        stopped = e
    finally:
        torch.distributed.destroy_process_group()
    return trainer, broadcasts, stopped


def test_the_broadcast_runs_at_every_nth_step_only(monkeypatch, tmp_path):
    trainer, broadcasts, stopped = _fit_with_check(monkeypatch, tmp_path, every_n_steps=10, max_steps=35)
    assert stopped is None and trainer.global_step == 35
    assert broadcasts.steps == [0, 10, 20, 30]


def test_every_step_is_lightnings_own(monkeypatch, tmp_path):
    _, broadcasts, stopped = _fit_with_check(monkeypatch, tmp_path, every_n_steps=1, max_steps=6)
    assert stopped is None
    assert broadcasts.steps == [0, 1, 2, 3, 4, 5]


def test_a_sigterm_from_another_rank_stops_training_at_the_next_check(monkeypatch, tmp_path):
    trainer, broadcasts, stopped = _fit_with_check(
        monkeypatch, tmp_path, every_n_steps=10, max_steps=100, sigterm_at=13
    )
    # Seen at the check of step 20, not before: training stopped there.
    assert isinstance(stopped, SIGTERMException)
    assert broadcasts.steps == [0, 10, 20]
    assert trainer.global_step == 20


def test_every_n_steps_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        SigtermCheckEveryNSteps(0)


@pytest.mark.slow
def test_train_py_under_ddp_stops_both_ranks_on_sigterm(tmp_path):
    data = make_labeled_shards(tmp_path / "labeled", n_files=120, row_group_size=40)
    run_dir = tmp_path / "run"
    # Many epochs: the run would go on for a long time if the SIGTERM were not acted on.
    cmd = [sys.executable, "train.py", "model=tiny", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.precision=32", "logger=none", f"data.root={data}", "data.max_length=32", "data.batch_size=4",
           "data.num_workers=0", "trainer.max_epochs=500", "trainer.limit_test_batches=0",
           "+trainer.num_sanity_val_steps=0", "callbacks.progress_lines.every_n_steps=1",
           "callbacks.progress_lines.when=always", "callbacks.sigterm_check.every_n_steps=5",
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if " step 3/" in line:  # training is under way on both ranks
                break
        else:
            pytest.fail("training never started:\n" + "".join(lines[-40:]))
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        rest, _ = proc.communicate(timeout=120)
        stopped_in = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = "".join(lines) + rest
    assert stopped_in < 120, log[-3000:]
    # No rank is left behind in the run's session (a rank waiting in a collective would be); a rank that is
    # still shutting down gets a few seconds.
    for _ in range(30):
        left = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(proc.pid)], capture_output=True, text=True)
        if not left.stdout.strip():
            break
        time.sleep(1)
    assert not left.stdout.strip(), f"processes left: {left.stdout}\n{log[-2000:]}"
    assert "epoch 500/500" not in log
