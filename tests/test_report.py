"""The report writer's files and the W&B logging, on small reports whose numbers can be checked by hand."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from curator.labels import LABEL_SETS
from curator.tasks.metrics import evaluate, flatten_for_logging
from curator.tasks.report import SEED_RESULTS, log_report_to_wandb, write_report

COARSE = list(LABEL_SETS["coarse"].classes)


@pytest.fixture
def report():
    # quality levels after rounding: 1 3 3 2 4 4 against 1 2 3 3 4 5
    predictions = {
        "quality": np.array([1.2, 2.6, 3.0, 2.4, 4.4, 3.6]),
        "structured_data": np.array([0.0, 1.0, 2.0, 3.0, 2.0, 0.4]),
        "content_type": np.array([0, 0, 1, 2, 2, 0]),
    }
    targets = {
        "quality": np.array([1, 2, 3, 3, 4, 5]),
        "structured_data": np.array([0, 1, 2, 3, 3, 0]),
        "content_type": np.array([0, 0, 1, 2, 3, 1]),
    }
    return evaluate(predictions, targets, COARSE)


def test_seed_results_are_the_published_numbers():
    assert SEED_RESULTS["quality"] == {
        "mae": 0.598,
        "rounded_accuracy": 0.553,
        "spearman": 0.575,
        "f1/level_5": 0.01,
    }
    assert SEED_RESULTS["structured_data"] == {"mae": 0.421, "rounded_accuracy": 0.667, "spearman": 0.807}
    assert SEED_RESULTS["content_type"] == {"accuracy": 0.875, "macro_f1": 0.678}
    # Every seed number names a value the report produces.
    assert all(f"{h}/{k}" in flatten_for_logging(_full_report()) for h, m in SEED_RESULTS.items() for k in m)


def _full_report():
    rng = np.random.default_rng(0)
    target = {
        "quality": rng.integers(1, 6, 30),
        "structured_data": rng.integers(0, 4, 30),
        "content_type": rng.integers(0, 5, 30),
    }
    return evaluate({k: v.astype(float) for k, v in target.items()}, target, COARSE)


def test_write_report_files_and_markdown_rows(report, tmp_path):
    paths = write_report(
        report, tmp_path / "eval", "Test split", meta={"checkpoint": "last.ckpt", "labeler": "heuristic"}
    )
    assert set(paths) == {
        "metrics",
        "report",
        "confusion_quality",
        "confusion_structured_data",
        "confusion_content_type",
    }
    for head in ("quality", "structured_data", "content_type"):
        png = paths[f"confusion_{head}"]
        assert png.name == f"confusion_{head}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    md = paths["report"].read_text().splitlines()
    assert md[0] == "# Test split"
    expected = [
        "| checkpoint | last.ckpt |",
        # headline: MAE (0.2+0.6+0+0.6+0.4+1.4)/6 = 0.533, three of six levels right
        "| quality | MAE | 0.533 | 0.598 | -0.065 |",
        "| quality | Rounded accuracy | 0.500 | 0.553 | -0.053 |",
        "| quality | F1 of level 5 | 0.000 | 0.010 | -0.010 |",
        "| content_type | Accuracy | 0.667 | 0.875 | -0.208 |",
        "| MAE | Rounded accuracy | Spearman |",
        "| Accuracy | Macro F1 |",
        # quality per level
        "| Level | Precision | Recall | F1 | Support |",
        "| 1 | 1.000 | 1.000 | 1.000 | 1 |",
        "| 2 | 0.000 | 0.000 | 0.000 | 1 |",
        "| 3 | 0.500 | 0.500 | 0.500 | 2 |",
        "| 4 | 0.500 | 1.000 | 0.667 | 1 |",
        "| 5 | 0.000 | 0.000 | 0.000 | 1 |",
        # quality confusion, rows true level
        "| true \\ predicted | 1 | 2 | 3 | 4 | 5 |",
        "| 3 | 0 | 1 | 1 | 0 | 0 |",
        "| 5 | 0 | 0 | 0 | 1 | 0 |",
        # content_type per class: "other" never occurs and is still listed
        "| Class | Precision | Recall | F1 | Support |",
        "| code | 0.667 | 1.000 | 0.800 | 2 |",
        "| other | 0.000 | 0.000 | 0.000 | 0 |",
        "| true \\ predicted | code | test | config_or_data | generated | other |",
        "| test | 1 | 1 | 0 | 0 | 0 |",
        "![quality confusion matrix](confusion_quality.png)",
        "![content_type confusion matrix](confusion_content_type.png)",
    ]
    for line in expected:
        assert line in md, line
    summary = md.index("| MAE | Rounded accuracy | Spearman |")
    assert md[summary + 2].startswith("| 0.533 | 0.500 | ")


def test_metrics_json_is_the_report(report, tmp_path):
    paths = write_report(report, tmp_path, "t", meta={"labeler": "heuristic"})

    def no_nan(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    saved = json.loads(paths["metrics"].read_text(), parse_constant=no_nan)
    assert saved["meta"] == {"labeler": "heuristic"}
    assert saved["quality"]["mae"] == report["quality"]["mae"]
    assert saved["quality"]["per_level"]["3"] == report["quality"]["per_level"][3]
    assert saved["content_type"]["confusion"] == report["content_type"]["confusion"]
    assert "meta" not in json.loads(write_report(report, tmp_path / "b", "t")["metrics"].read_text())
    # A reloaded metrics.json (string level keys, a meta entry) renders the same tables.
    again = write_report(saved, tmp_path / "c", "t", meta=saved["meta"])["report"].read_text()
    assert again == paths["report"].read_text()


def test_report_with_a_head_turned_off(report, tmp_path):
    partial = {k: v for k, v in report.items() if k != "structured_data"}
    paths = write_report(partial, tmp_path, "no structured data")
    md = paths["report"].read_text()
    assert "| structured_data | MAE | n/a | 0.421 | n/a |" in md
    assert "## structured_data" not in md
    assert "confusion_structured_data" not in paths


# --- W&B -------------------------------------------------------------------------------------------------------


class FakeRun:
    def __init__(self):
        self.logged, self.summary = [], {}

    def log(self, data):
        self.logged.append(data)


class FakeLogger:
    """Shaped like Lightning's WandbLogger: the run sits behind an `experiment` property."""

    def __init__(self, run):
        self._run = run

    @property
    def experiment(self):
        return self._run


def test_wandb_is_a_no_op_without_a_run_or_without_wandb(report, monkeypatch):
    assert log_report_to_wandb(report, None, "test") == {}
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    run = FakeRun()
    assert log_report_to_wandb(report, run, "test") == {}
    assert run.logged == []


def test_wandb_payload(report):
    wandb = pytest.importorskip("wandb")
    run = FakeRun()
    logged = log_report_to_wandb(report, FakeLogger(run), "test")
    assert run.logged == [logged]
    assert run.summary == flatten_for_logging(report, "test")

    table = logged["test/quality/per_level"]
    assert isinstance(table, wandb.Table)
    assert table.columns == ["level", "precision", "recall", "f1", "support"]
    assert [row[0] for row in table.data] == ["1", "2", "3", "4", "5"]
    assert table.data[3][3] == pytest.approx(2 / 3)
    assert logged["test/content_type/per_class"].data[-1] == ["other", 0.0, 0.0, 0.0, 0]
    for head in ("quality", "structured_data", "content_type"):
        assert f"test/{head}/f1_per_{'class' if head == 'content_type' else 'level'}" in logged
        assert f"test/{head}/confusion" in logged
    # The confusion chart is fed every cell of the matrix: 5x5 for quality.
    cells = logged["test/quality/confusion"].table.data
    assert len(cells) == 25 and ["3", "2", 1] in cells and sum(c[2] for c in cells) == 6


# "offline" starts the wandb-core service: a few seconds, so it carries the slow marker.
@pytest.mark.parametrize("mode", ["disabled", pytest.param("offline", marks=pytest.mark.slow)])
def test_wandb_real_run(report, tmp_path, monkeypatch, mode):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(mode=mode, dir=str(tmp_path), project="curator-tests")
    try:
        logged = log_report_to_wandb(report, run, "test")
        assert "test/content_type/macro_f1" in logged
    finally:
        run.finish()
    if mode == "offline":
        assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
