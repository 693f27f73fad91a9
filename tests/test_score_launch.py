"""`score.py --gpus N`: one process per GPU, started by score.py itself.

On these CPU machines the processes run with `--device cpu`; everything but the device is what a GPU machine
runs: the rank variables, the split of the shards, the one output folder, the signals, the exit status. The
GPU runs are experiments/multi_gpu/check_scoring.py's.
"""

import signal
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers_model import make_checkpoint, make_corpus, score_cmd, script_env

from curator.scoring.launch import rank_env


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def scores_by_id(out):
    rows = {}
    for f in sorted(out.glob("*/*.parquet")):
        t = pq.read_table(f).to_pydict()
        for i, row_id in enumerate(t["id"]):
            assert row_id not in rows, f"{row_id} written twice"
            rows[row_id] = (t["quality"][i], t["structured_data"][i], t["content_type_probs"][i])
    return rows


@pytest.mark.slow
def test_two_processes_write_what_one_writes(ckpt, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", shards=3, rows=40)
    one = subprocess.run(
        score_cmd(ckpt, corpus, tmp_path / "one"),
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        score_cmd(ckpt, corpus, tmp_path / "two", "--gpus", "2"),
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    assert "score.py --gpus 2: starting ranks 0-1 of 2, one per process on the CPU" in two.stderr
    # Each process is one rank and took its own shards: 6 shards (2 languages x 3), 3 each.
    assert "rank 0/2: 3 shards" in two.stderr and "rank 1/2: 3 shards" in two.stderr
    assert two.stderr.count("120 files scored") == 2
    assert "all 2 processes done" in two.stderr
    a, b = scores_by_id(tmp_path / "one"), scores_by_id(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 2 * 3 * 40
    for row_id, (qa, sa, pa_) in a.items():
        qb, sb, pb = b[row_id]
        assert abs(qa - qb) < 1e-5 and abs(sa - sb) < 1e-5 and np.allclose(pa_, pb, atol=1e-5), row_id


@pytest.mark.slow
def test_a_terminated_launch_stops_its_processes_and_resumes(ckpt, tmp_path):
    # Long enough that the run is still going when it is stopped.
    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=8, rows=600, repeat=8)
    out = tmp_path / "out"
    cmd = score_cmd(ckpt, corpus, out, "--gpus", "2", "--rows-per-part", "300", "--window", "128")
    proc = subprocess.Popen(
        cmd, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not list(out.glob("python/*.parquet")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # what a scheduler sends first
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    # Both processes got the signal (one that had finished its shards would have exited 0 instead).
    assert "failed (killed by signal 15)" in stderr, stderr
    assert "run the same command again" in stderr
    # No process of the launch is left running.
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes still running: {left}"
    done = len(list(out.glob("python/*.parquet")))
    assert done < 8, "the run finished before it was stopped"

    rerun = subprocess.run(cmd, env=script_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    ids = [
        i
        for f in sorted(out.glob("python/*.parquet"))
        for i in pq.read_table(f, columns=["id"])["id"].to_pylist()
    ]
    assert len(ids) == len(set(ids)) == 8 * 600


def test_usage_errors_come_before_any_process_starts(ckpt, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", shards=1, rows=4)
    for extra, message in (
        (["--gpus", "0"], "--gpus must be at least 1"),
        (["--gpus", "2", "--device", "cuda:1"], "leave out --device cuda:1"),
    ):
        r = subprocess.run(
            score_cmd(ckpt, corpus, tmp_path / "out", *extra),
            env=script_env(),
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and message in r.stderr, r.stderr
    # Under torchrun with several processes a machine, --gpus would start a second set of ranks on its GPUs.
    r = subprocess.run(
        score_cmd(ckpt, corpus, tmp_path / "out", "--gpus", "2"),
        env={**script_env(), "RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "one process per machine with --gpus" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_ranks_of_a_machine_within_a_larger_job():
    assert [e["RANK"] for e in rank_env(2, {})] == ["0", "1"]
    # Machine 1 of 3 (torchrun --nnodes 3 --nproc_per_node 1, or srun with one task a machine), 4 GPUs each.
    envs = rank_env(4, {"RANK": "1", "WORLD_SIZE": "3", "LOCAL_WORLD_SIZE": "1"})
    assert [(e["RANK"], e["LOCAL_RANK"]) for e in envs] == [("4", "0"), ("5", "1"), ("6", "2"), ("7", "3")]
    assert {e["WORLD_SIZE"] for e in envs} == {"12"} and {e["LOCAL_WORLD_SIZE"] for e in envs} == {"4"}
    slurm = rank_env(2, {"SLURM_PROCID": "2", "SLURM_NTASKS": "3", "SLURM_NTASKS_PER_NODE": "1(x3)"})
    assert [e["RANK"] for e in slurm] == ["4", "5"] and slurm[0]["SLURM_NTASKS"] == "6"
    with pytest.raises(ValueError, match="one process per machine"):
        rank_env(2, {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2(x2)"})
    with pytest.raises(ValueError, match="outside world size"):
        rank_env(2, {"RANK": "3", "WORLD_SIZE": "2"})


def test_workers_follow_srun_tasks_per_machine_as_srun_writes_them(monkeypatch):
    # srun writes "2(x3)" for two tasks on each of three machines; the runner reads it as the launcher does.
    from curator.scoring.runner import default_num_workers

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2(x3)")
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(32)))
    assert default_num_workers() == 14  # 32 cores / 2 tasks - 2
