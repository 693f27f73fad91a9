"""Two training processes under DDP (CPU, gloo), each with two dataloader workers: every train row is read
exactly once per epoch across ranks and workers, and both ranks take the same number of steps. train.py runs as
users run it, with the row record on (`callbacks.train_rows.enabled=true`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import make_labeled_shards

from curator.data.shards import labeled_files
from curator.tasks.rows import check_rows

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_ranks_with_workers_read_every_train_row_once_per_epoch(tmp_path):
    # 143 train rows in row groups of 40: they divide evenly among neither the 2 ranks (71 and 72) nor the 4
    # slots, nor into batches of 5.
    data = make_labeled_shards(tmp_path / "labeled", n_files=237, row_group_size=40)
    train_ids = set(pq.read_table(labeled_files(data, "train"), columns=["id"]).column("id").to_pylist())
    assert len(train_ids) == 143
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "train.py", "model=tiny", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.precision=32", "logger=none", f"data.root={data}", "data.max_length=32", "data.batch_size=5",
           "data.eval_batch_size=16", "data.num_workers=2", "data.unit_rows=16", "trainer.max_epochs=2",
           "trainer.limit_test_batches=0", "+trainer.num_sanity_val_steps=0", "callbacks.train_rows.enabled=true",
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = check_rows(run_dir / "train_rows", train_ids)
    assert [e["epoch"] for e in result["epochs"]] == [0, 1]
    for epoch in result["epochs"]:
        assert epoch["ranks_recorded"] == epoch["world_size"] == 2
        assert (
            epoch["rows"] == epoch["distinct_rows"] == 143 and not epoch["missed"] and not epoch["repeated"]
        )
        # 72 rows on the larger rank: 15 steps of at most 5 files on both ranks.
        assert epoch["steps_per_rank"] == {0: 15, 1: 15}
        assert sorted(epoch["rows_per_rank"].values()) == [71, 72]
        assert 1 <= epoch["smallest_batch"] and epoch["largest_batch"] <= 5
    assert result["ok"]
    # Each epoch shuffles: the ranks keep their rows but take them in another order.
    first, second = (json.loads((run_dir / "train_rows" / f"epoch_00{e}" / "rank_0.json").read_text())["ids"]
                     for e in (0, 1))  # fmt: skip
    assert sorted(first) == sorted(second) and first != second
