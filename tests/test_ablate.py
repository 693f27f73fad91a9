"""ablate.py end to end on CPU: a tiny pool from data/sample, a tiny classifier checkpoint, a tiny LM.

It runs the command as a user does (subprocesses, which themselves run score.py and filter.py as subprocesses),
in two stages as on a GPU machine: the prepare stage first without the classifier, then with it; the train stage
on two processes, given the corpus at another path; then checks the table: every arm and seed, finite numbers,
the same tokens in every arm; and that a second train run resumes (retrains nothing).
"""

from __future__ import annotations

import json
import math
import shutil
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


SETTINGS = [
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
]  # fmt: skip
ARMS = {"random", "classifier_long", "junk_rules", "heuristic_q3"}


def run_ablate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "ablate.py"), "--out", str(tmp_path / "out"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_ablate_prepare_then_train_in_parallel_and_resume(tmp_path):
    harvest = tiny_harvest(tmp_path / "harvest")
    ckpt = make_checkpoint(tmp_path / "clf.ckpt", max_length=64)
    out = tmp_path / "out"

    # Prepare without the classifier: everything else is done, and the train stage refuses.
    first = ok(run_ablate(tmp_path, "--stage", "prepare", "--corpus", str(harvest), *SETTINGS))
    assert "run --stage prepare again with --model" in first.stdout
    assert (out / "prepared" / "tokenizer.json").exists()
    assert (out / "cache" / "heuristic_labels.parquet").exists()
    early = run_ablate(tmp_path, "--stage", "train")
    assert early.returncode != 0 and "run `ablate.py --stage prepare`" in early.stderr

    # The classifier added later: the corpus and the other settings come from plan.json.
    ok(run_ablate(tmp_path, "--stage", "prepare", "--model", str(ckpt)))
    manifest = json.loads((out / "prepared" / "manifest.json").read_text())
    assert set(manifest["arms"]) == ARMS
    assert manifest["humaneval"]["licence"] == "MIT (OpenAI)"
    assert (out / "prepared" / "eval" / "HumanEval.LICENSE").read_text().startswith("The MIT License")

    # The train stage reads only plan.json and prepared/: here with the corpus moved elsewhere, and the runs
    # spread over two processes.
    moved = tmp_path / "elsewhere"
    shutil.move(harvest, moved)
    # A time limit already passed: no run starts, exit status 3 says "run me again".
    late = run_ablate(tmp_path, "--stage", "train", "--stop-after", "1")
    assert late.returncode == 3 and "re-run to go on" in late.stdout, (
        late.stdout[-2000:] + late.stderr[-2000:]
    )
    result = ok(run_ablate(tmp_path, "--stage", "train", "--corpus", str(moved), "--devices", "cpu", "cpu"))
    assert "[cpu#0]" in result.stdout and "[cpu#1]" in result.stdout
    assert "tokens/s" in result.stdout

    data = json.loads((out / "results.json").read_text())
    assert set(data["arms"]) == ARMS
    assert sorted((r["arm"], r["seed"]) for r in data["runs"]) == sorted((a, s) for a in ARMS for s in (0, 1))
    tokens = [a["subset_tokens"] for a in data["arms"].values()]
    assert max(tokens) == min(tokens) == 30000, tokens
    for r in data["runs"]:
        assert {"humaneval", "heldout/python", "heldout/shell"} <= set(r["eval"])
        for v in r["eval"].values():
            assert math.isfinite(v["bits_per_byte"]) and v["bits_per_byte"] > 0
            assert math.isfinite(v["loss"]) and v["tokens"] > 0
        assert r["train"]["train_tokens"] >= 4096 and r["train"]["tokens_per_s"] > 0
    # The two seeds train different models: a spread of exactly zero would mean the seed is ignored.
    he = data["arms"]["random"]["bits_per_byte"]["humaneval"]
    assert he["n"] == 2 and he["max"] > he["min"]
    # The classifier arm draws only from what filter.py kept, and that is a real subset of the pool.
    kept = json.loads((out / "subsets" / "classifier_long.json").read_text())
    assert 0 < kept["kept_files"] < json.loads((out / "subsets" / "random.json").read_text())["kept_files"]
    listed = (out / "prepared" / "subsets" / "classifier_long.txt").read_text().split()
    assert len(listed) == kept["files"]
    table = (out / "results.md").read_text()
    for arm in ARMS:
        assert f"| {arm} | 2 |" in table
    assert "MBPP: n/a" in table and "tokens/s" in table
    assert (out / "results.png").stat().st_size > 1000

    again = ok(run_ablate(tmp_path, "--stage", "train"))
    assert "8 done before, 0 to run" in again.stdout
    assert "training on" not in again.stdout
    (out / "results.md").unlink()
    assert "results (8 of 8 runs)" in ok(run_ablate(tmp_path, "--stage", "report")).stdout
    assert (out / "results.md").exists()


def test_ablate_refuses_other_settings_in_the_same_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "plan.json").write_text(json.dumps({"preset": "small"}))
    harvest = tiny_harvest(tmp_path / "harvest")
    result = run_ablate(
        tmp_path, "--corpus", str(harvest), "--model", str(tmp_path / "missing.ckpt"), *SETTINGS
    )
    assert result.returncode != 0
    assert "was made with other settings (preset)" in result.stderr


def test_ablate_refuses_another_corpus_but_not_another_path(tmp_path):
    harvest = tiny_harvest(tmp_path / "harvest")
    out = tmp_path / "out"
    ok(run_ablate(tmp_path, "--stage", "prepare", "--corpus", str(harvest), "--heuristic-min-quality", "0",
                  "--classifier-where", "x=quality >= 3", "--tokenizer-chars", "1000", "--preset", "tiny",
                  "--eval-files-per-language", "1"))  # fmt: skip
    assert (out / "prepared" / "tokenizer.json").exists()
    shutil.copytree(harvest, tmp_path / "copy")
    assert run_ablate(tmp_path, "--stage", "prepare", "--corpus", str(tmp_path / "copy")).returncode == 0
    pq.write_table(
        pa.table({"id": ["x"], "content": ["changed"]}), tmp_path / "copy" / "corpus" / "go" / "x.parquet"
    )
    other = run_ablate(tmp_path, "--stage", "prepare", "--corpus", str(tmp_path / "copy"))
    assert other.returncode != 0 and "other settings (corpus_fingerprint)" in other.stderr
