"""The entry points as a user meets them: `--help` answers at once, and bad input gets one line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
ENTRY_POINTS = ["train", "evaluate", "score", "export", "filter", "sample"]
# Each takes seconds to import; none is needed to print the usage.
HEAVY = {"torch", "lightning", "transformers"}


def run(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level package names from `python -X importtime` output ('import time: self | cumulative | name')."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_answers_before_the_heavy_imports(name):
    proc = run("-X", "importtime", f"{name}.py", "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Hydra's help for train.py lists the config groups; argparse's starts with "usage:".
    assert ("Configuration groups" if name == "train" else "usage:") in proc.stdout
    assert "Traceback" not in proc.stderr
    heavy = HEAVY & imported_modules(proc.stderr)
    assert not heavy, f"{name}.py --help imports {sorted(heavy)}"


@pytest.mark.slow
def test_training_into_a_log_prints_progress_lines_and_no_noise(tmp_path):
    """stdout to a pipe, as under Slurm or nohup: plain progress lines, no bar, nothing to learn to ignore."""
    proc = run(
        "train.py",
        "+experiment=quickstart",
        "+debug=fast",
        "trainer.limit_train_batches=4",
        "callbacks.progress_lines.every_n_steps=2",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    progress = [line for line in out.splitlines() if "files/s" in line and "step " in line]
    assert len(progress) == 2, out[-3000:]  # steps 2 and 4
    assert "epoch 1/1  step 2/4" in progress[0] and "loss " in progress[0] and "eta " in progress[0]
    assert "epoch 1 validation: val/loss" in out
    for noise in ("LOAD REPORT", "UNEXPECTED", "Tip:", "is deprecated", "Loading weights"):
        assert noise not in out, noise
    # No progress bar: in a log it shows only its last state, at the end of each epoch.
    assert not [line for line in out.splitlines() if line.startswith(("Epoch ", "Validation", "Testing"))]
    # Lightning's lines once each, not also through its own console handler.
    assert out.count("Seed set to 42") == 1


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """Good and bad inputs side by side: a model, a corpus and labeled shards, and broken versions of each."""
    from helpers_model import make_checkpoint, make_corpus

    from curator.scoring.runner import score_corpus

    root = tmp_path_factory.mktemp("bad")
    make_checkpoint(root / "model.ckpt")
    make_corpus(root / "corpus", languages=("python", "go"), shards=1, rows=8)
    score_corpus(root / "model.ckpt", root / "corpus", root / "scores", num_workers=0, progress=False)
    (root / "empty").mkdir()
    not_parquet = b"these bytes are not a parquet file" * 4
    (root / "corrupt_corpus" / "python").mkdir(parents=True)
    (root / "corrupt_corpus" / "python" / "train-00000.parquet").write_bytes(not_parquet)
    (root / "corrupt_shards" / "train").mkdir(parents=True)
    (root / "corrupt_shards" / "train" / "python.parquet").write_bytes(not_parquet)
    (root / "notes.ckpt").write_text("not a checkpoint\n")
    (root / "folder_without_model").mkdir()
    return root


TRAIN = ["train.py", "+debug=fast", "model=tiny", "trainer=cpu"]
# (command line with {root} for the fixture's folder, a phrase the one line must hold); {out} must not appear.
BAD_INPUT = {
    "train-missing-data": ([*TRAIN, "data.root={root}/missing"], "no labeled data at"),
    "train-empty-data": ([*TRAIN, "data.root={root}/empty"], "no labeled shards"),
    "train-corrupt-data": ([*TRAIN, "data.root={root}/corrupt_shards"], "not a readable parquet file"),
    "evaluate-missing-checkpoint": (
        ["evaluate.py", "--checkpoint", "{root}/missing.ckpt", "--data", "{root}/corpus", "--out", "{out}"],
        "no checkpoint at",
    ),
    "evaluate-not-a-checkpoint": (
        ["evaluate.py", "--checkpoint", "{root}/notes.ckpt", "--data", "{root}/corpus", "--out", "{out}"],
        "is not a checkpoint",
    ),
    "evaluate-missing-data": (
        ["evaluate.py", "--checkpoint", "{root}/model.ckpt", "--data", "{root}/missing", "--out", "{out}"],
        "no labeled data at",
    ),
    "evaluate-empty-data": (
        ["evaluate.py", "--checkpoint", "{root}/model.ckpt", "--data", "{root}/empty", "--out", "{out}"],
        "no labeled shards",
    ),
    "evaluate-corrupt-data": (
        [
            "evaluate.py",
            "--checkpoint",
            "{root}/model.ckpt",
            "--data",
            "{root}/corrupt_shards",
            "--out",
            "{out}",
        ],
        "not a readable parquet file",
    ),
    "export-missing-checkpoint": (["export.py", "{root}/missing.ckpt", "{out}"], "no checkpoint at"),
    "export-not-a-checkpoint": (["export.py", "{root}/notes.ckpt", "{out}"], "is not a checkpoint"),
    "export-a-folder": (["export.py", "{root}/folder_without_model", "{out}"], "is a folder"),
    "score-missing-corpus": (
        ["score.py", "--model", "{root}/model.ckpt", "--corpus", "{root}/missing", "--out", "{out}"],
        "is not a directory",
    ),
    "score-empty-corpus": (
        ["score.py", "--model", "{root}/model.ckpt", "--corpus", "{root}/empty", "--out", "{out}"],
        "no corpus files",
    ),
    "score-missing-model": (
        ["score.py", "--model", "{root}/missing.ckpt", "--corpus", "{root}/corpus", "--out", "{out}"],
        "no checkpoint or exported model",
    ),
    "score-not-a-checkpoint": (
        ["score.py", "--model", "{root}/notes.ckpt", "--corpus", "{root}/corpus", "--out", "{out}"],
        "is not a checkpoint",
    ),
    "score-wrong-model-folder": (
        ["score.py", "--model", "{root}/folder_without_model", "--corpus", "{root}/corpus", "--out", "{out}"],
        "not an exported model",
    ),
    "score-fp8-without-gpu": (
        [
            "score.py",
            "--model",
            "{root}/model.ckpt",
            "--corpus",
            "{root}/corpus",
            "--out",
            "{out}",
            "--precision",
            "fp8",
            "--device",
            "cpu",
        ],
        "precision fp8 needs a CUDA GPU of compute capability 8.9 or newer",
    ),
    "filter-missing-scores": (
        ["filter.py", "--scores", "{root}/missing", "--out", "{out}"],
        "scores_meta.json",
    ),
    "filter-empty-scores": (["filter.py", "--scores", "{root}/empty", "--out", "{out}"], "scores_meta.json"),
    "filter-missing-corpus": (
        ["filter.py", "--scores", "{root}/scores", "--out", "{out}", "--corpus", "{root}/missing"],
        "is not a directory",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_on_stderr(case, bad, tmp_path):
    argv, phrase = BAD_INPUT[case]
    out = tmp_path / "out"
    # train.py writes into Hydra's run folder, a log of the attempt; the other commands must create nothing.
    argv = [a.format(root=bad, out=out) for a in argv] + (
        [f"hydra.run.dir={out}"] if case[:5] == "train" else []
    )
    prog = argv[0]
    proc = run(str(REPO / prog), *argv[1:], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr[-2000:]
    assert phrase in lines[0]
    if prog != "train.py":
        assert not out.exists()


def test_a_corrupt_corpus_file_is_named_with_advice_that_fits(bad, tmp_path):
    proc = run(
        str(REPO / "score.py"), "--model", f"{bad}/model.ckpt", "--corpus", f"{bad}/corrupt_corpus",
        "--out", f"{tmp_path}/out", "--num-workers", "0", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "corrupt_corpus/python/train-00000.parquet" in proc.stderr
    # A retry helps with a cause that passes, not with a corrupt file.
    assert "must be fixed or removed" in proc.stderr
    assert "run the same command again to retry them" not in proc.stderr


def help_examples(name: str) -> list[str]:
    """The example commands in `NAME.py --help`, each with its continuation lines joined."""
    text = run(f"{name}.py", "--help").stdout
    examples, current = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None and stripped.startswith(f"python {name}.py"):
            current = ""
        if current is not None:
            current += stripped.removesuffix("\\").strip() + " "
            if not stripped.endswith("\\"):
                examples.append(current.strip())
                current = None
    return examples


@pytest.mark.parametrize("name", ["evaluate", "score", "export", "filter", "sample"])
def test_help_examples_are_whole_commands_on_paths_train_writes(name):
    examples = help_examples(name)
    assert examples, f"{name}.py --help shows no example"
    for example in examples:
        # A line continuation lost in the docstring shows as a run of spaces inside one line.
        assert "   " not in example, example
        # train.py writes checkpoints into Hydra's run folder (conf/hydra/default.yaml, conf/paths/default.yaml).
        for ckpt in [word for word in example.split() if word.endswith(".ckpt")]:
            assert ckpt.startswith("logs/train/runs/") and "/checkpoints/" in ckpt, example


def test_filter_report_shows_a_budget_cutoff_only_where_the_budget_cut(bad, tmp_path):
    import json

    def filter_report(out, *args):
        proc = run("filter.py", "--scores", str(bad / "scores"), "--out", str(out), "--report-only", *args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads((out / "filter_report.json").read_text())["languages"]

    unbudgeted = filter_report(tmp_path / "all")
    # python's budget is larger than all its files: it never applies. go's keeps about half of its tokens.
    languages = filter_report(
        tmp_path / "out",
        "--token-budget-lang", "python=1e12",
        "--token-budget-lang", f"go={unbudgeted['go']['kept_tokens'] // 2}",
    )  # fmt: skip
    assert languages["python"]["kept_files"] == unbudgeted["python"]["kept_files"]
    assert languages["python"]["budget_cutoff"] is None
    assert 0 < languages["go"]["kept_files"] < unbudgeted["go"]["kept_files"]
    assert languages["go"]["budget_cutoff"] is not None
    report = (tmp_path / "out" / "filter_report.md").read_text().splitlines()
    python_row = next(line for line in report if line.startswith("| python"))
    assert python_row.split("|")[-2].strip() == ""  # the last cell, the budget cutoff, is empty
