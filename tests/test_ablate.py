"""ablate.py end to end on CPU: a tiny pool from data/sample, a tiny classifier checkpoint, a tiny LM.

It runs the command as a user does (a subprocess, which itself runs score.py and filter.py as subprocesses)
and checks the table: every arm and seed, finite numbers, the same tokens in every arm; then that a second
run resumes (retrains nothing).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_model import make_checkpoint

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
POOL_PER_LANGUAGE = 40
HELDOUT_PER_LANGUAGE = 6


def tiny_harvest(root: Path) -> Path:
    """The harvester's layout from the sample: per language, whole packages held out, the rest a pool."""
    for lang_dir in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
        table = pq.read_table(lang_dir / "part-00000.parquet")
        rows = sorted(table.to_pylist(), key=lambda r: r["id"])
        repos = sorted({r["max_stars_repo_name"] for r in rows})
        held = set(repos[:2])
        heldout = [r for r in rows if r["max_stars_repo_name"] in held][:HELDOUT_PER_LANGUAGE]
        pool = [r for r in rows if r["max_stars_repo_name"] not in held][:POOL_PER_LANGUAGE]
        for split, part in (("corpus", pool), ("heldout", heldout)):
            (root / split / lang_dir.name).mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pylist(part, schema=table.schema), root / split / lang_dir.name / "p.parquet"
            )
    return root


def run_ablate(tmp_path: Path, ckpt: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(REPO / "ablate.py"),
        "--corpus", str(tmp_path / "harvest"),
        "--model", str(ckpt),
        "--out", str(tmp_path / "out"),
        # A random classifier scores every file alike, so the classifier arm here filters on a signal column
        # through the same filter.py expression path that a quality threshold takes.
        "--classifier-where", "long=quality >= 1 and num_lines >= 30",
        "--junk-rules-arm",
        "--heuristic-min-quality", "3",
        "--seeds", "0", "1",
        "--preset", "tiny",
        "--train-tokens", "4096",
        "--tokenizer-chars", "200000",
        "--subset-tokens", "30000",
        "--eval-files-per-language", "2",
        "--score-arg=--num-workers=0",
        *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.slow
def test_ablate_end_to_end_and_resume(tmp_path):
    tiny_harvest(tmp_path / "harvest")
    ckpt = make_checkpoint(tmp_path / "clf.ckpt", max_length=64)
    result = run_ablate(tmp_path, ckpt)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    out = tmp_path / "out"
    data = json.loads((out / "results.json").read_text())
    arms = {"random", "classifier_long", "junk_rules", "heuristic_q3"}
    assert set(data["arms"]) == arms
    assert sorted((r["arm"], r["seed"]) for r in data["runs"]) == sorted((a, s) for a in arms for s in (0, 1))
    tokens = [a["subset_tokens"] for a in data["arms"].values()]
    assert max(tokens) <= min(tokens) * 1.01, tokens
    for r in data["runs"]:
        assert {"humaneval", "heldout/python", "heldout/shell"} <= set(r["eval"])
        for v in r["eval"].values():
            assert math.isfinite(v["bits_per_byte"]) and v["bits_per_byte"] > 0
            assert math.isfinite(v["loss"]) and v["tokens"] > 0
        assert r["train"]["train_tokens"] >= 4096
    # The two seeds train different models: a spread of exactly zero would mean the seed is ignored.
    he = data["arms"]["random"]["bits_per_byte"]["humaneval"]
    assert he["n"] == 2 and he["max"] > he["min"]
    # The classifier arm draws only from what filter.py kept, and that is a real subset of the pool.
    kept = json.loads((out / "subsets" / "classifier_long.json").read_text())
    assert 0 < kept["files"] < json.loads((out / "subsets" / "random.json").read_text())["files"] + 1000
    table = (out / "results.md").read_text()
    for arm in arms:
        assert f"| {arm} | 2 |" in table
    assert "MBPP: n/a" in table
    assert (out / "results.png").stat().st_size > 1000

    again = run_ablate(tmp_path, ckpt)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == len(arms) * 2
    assert "training on" not in again.stdout


def test_ablate_refuses_other_settings_in_the_same_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "plan.json").write_text(json.dumps({"preset": "small"}))
    tiny_harvest(tmp_path / "harvest")
    result = run_ablate(tmp_path, tmp_path / "missing.ckpt")
    assert result.returncode != 0
    assert "was made with other settings" in result.stderr
