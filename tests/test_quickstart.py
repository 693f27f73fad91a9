"""The README's first command, as a user runs it: the quickstart trains on the shipped sample, writes its
report, and the error-analysis notebook runs top to bottom on what it wrote."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_notebook import images_of, run_notebook

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_then_error_analysis(tmp_path, monkeypatch):
    run_dir = tmp_path / "quickstart"
    proc = subprocess.run(
        [sys.executable, "train.py", "+experiment=quickstart", f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"test report:     {run_dir / 'report.md'}" in proc.stdout
    report = json.loads((run_dir / "metrics.json").read_text())
    assert {"quality", "structured_data", "content_type"} <= set(report)
    # The sample's test split: every file of the test repositories, once.
    assert report["content_type"]["n"] > 200
    best = next(
        line.split(":", 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.startswith("best checkpoint")
    )

    nb = run_notebook(tmp_path, monkeypatch, best, REPO / "data/labeled/reading")
    assert len(images_of(nb)) == 6
