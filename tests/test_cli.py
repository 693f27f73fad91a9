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
