"""The README's pipeline table, command by command, as a user types it: train, evaluate, export, score, filter,
each a subprocess with real arguments on the shipped data, each reading what the one before wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def run(*args, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_the_readme_pipeline_end_to_end(tmp_path):
    # train: the quickstart recipe for a few batches (+debug=fast), on the reading labels it ships with.
    run_dir = tmp_path / "run"
    out = run("train.py", "+experiment=quickstart", "+debug=fast", f"hydra.run.dir={run_dir}").stdout
    ckpt = next(
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("best checkpoint")
    )
    assert Path(ckpt).is_file() and (run_dir / "gold" / "metrics.json").is_file()
    assert "## Beside the test split" in (run_dir / "report.md").read_text()

    # evaluate: the same checkpoint on another split, its own report.
    run("evaluate.py", "--checkpoint", ckpt, "--data", REPO / "data/labeled/reading", "--split", "val",
        "--out", tmp_path / "eval", "--num-workers", "0")  # fmt: skip
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["content_type"]["n"] == 254  # every file of the reading labels' val split, once

    # export: one folder, with a card that shows the gold numbers beside the test split's.
    run("export.py", ckpt, tmp_path / "model")
    card = (tmp_path / "model" / "README.md").read_text()
    assert "Beside the test split" in card and "| gold |" in card
    assert json.loads((tmp_path / "model" / "curator_config.json").read_text())["with_path"] is True

    # score: two languages of the sample, a row per file.
    corpus = tmp_path / "corpus"
    for language in ("go", "shell"):
        shutil.copytree(REPO / "data/sample" / language, corpus / language)
    run("score.py", "--model", tmp_path / "model", "--corpus", corpus, "--out", tmp_path / "scores",
        "--num-workers", "1", "--no-progress")  # fmt: skip
    scores = pq.read_table(sorted((tmp_path / "scores").rglob("*.parquet")))
    assert scores.num_rows == 320 + 288 and scores.column("error").null_count == scores.num_rows

    # filter: the documented expression, junk rules on; the kept files are a subset with their contents.
    run("filter.py", "--scores", tmp_path / "scores", "--out", tmp_path / "kept",
        "--where", "quality >= 2.5 and structured_data >= 0.5 and content_type != 'generated'")  # fmt: skip
    kept = pq.read_table(sorted((tmp_path / "kept").glob("*/*.parquet")))
    assert 0 < kept.num_rows < scores.num_rows and "content" in kept.column_names
    assert set(kept.column("id").to_pylist()) <= set(scores.column("id").to_pylist())
    assert (tmp_path / "kept" / "filter_report.md").is_file()


@pytest.mark.slow
def test_two_training_processes_test_every_file_once_as_one_process_does(tmp_path):
    # DDP on two CPU processes (gloo): the test split and the gold set are shared among the ranks; the tested
    # checkpoint evaluated again by one process must give the same report.
    run_dir = tmp_path / "ddp"
    out = run("train.py", "+experiment=quickstart", "+debug=fast", "trainer=ddp", "trainer.accelerator=cpu",
              "trainer.devices=2", "trainer.precision=32", f"hydra.run.dir={run_dir}").stdout  # fmt: skip
    ckpt = next(
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("best checkpoint")
    )
    ddp = json.loads((run_dir / "metrics.json").read_text())
    gold = json.loads((run_dir / "gold" / "metrics.json").read_text())
    assert ddp["quality"]["n"] == 239 and gold["quality"]["n"] == 216  # every file once, not once per rank

    run("evaluate.py", "--checkpoint", ckpt, "--data", REPO / "data/labeled/reading", "--split", "test",
        "--out", tmp_path / "one", "--num-workers", "0")  # fmt: skip
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for head, key in [("quality", "mae"), ("quality", "spearman"), ("structured_data", "mae"),
                      ("content_type", "accuracy"), ("content_type", "macro_f1")]:  # fmt: skip
        assert one[head]["n"] == ddp[head]["n"]
        assert one[head][key] == pytest.approx(ddp[head][key], abs=1e-4), (head, key)
