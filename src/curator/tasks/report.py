"""Evaluation reports: the seed's tables as Markdown and JSON, confusion-matrix plots, and the same to W&B.

Input is the nested dict from `curator.tasks.metrics.evaluate` (or `CuratorMetrics.compute()`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from curator.tasks.metrics import flatten_for_logging

SEED_NAME = "code-curator-v1"
# The seed's published test results (DESIGN.md), keyed like flatten_for_logging's names without a prefix.
SEED_RESULTS: dict[str, dict[str, float]] = {
    "quality": {"mae": 0.598, "rounded_accuracy": 0.553, "spearman": 0.575, "f1/level_5": 0.01},
    "structured_data": {"mae": 0.421, "rounded_accuracy": 0.667, "spearman": 0.807},
    "content_type": {"accuracy": 0.875, "macro_f1": 0.678},
}
SEED_NOTE = (
    f"{SEED_NAME}'s numbers are its published test results, measured on its own test split with labels from "
    "gpt-5-nano. A different label source (another judge, the heuristic labeler) and a different split change "
    "what the same metric means, so read the difference as a direction, not as a ranking."
)

METRIC_NAMES = {
    "mae": "MAE",
    "rounded_accuracy": "Rounded accuracy",
    "spearman": "Spearman",
    "accuracy": "Accuracy",
    "macro_f1": "Macro F1",
    "f1/level_5": "F1 of level 5",
}
# The seed's summary columns per kind of head.
ORDINAL_SUMMARY = ("mae", "rounded_accuracy", "spearman")
CLASSIFICATION_SUMMARY = ("accuracy", "macro_f1")


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.3f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines


def _heads(report: dict):
    """(head, head report) pairs; skips other entries, such as the `meta` of a reloaded metrics.json."""
    return [(head, r) for head, r in report.items() if isinstance(r, dict) and "confusion" in r]


def _rows_of(head_report: dict) -> tuple[str, dict]:
    """("Level", per_level) for an ordinal head, ("Class", per_class) for the classifier."""
    if "per_level" in head_report:
        return "Level", head_report["per_level"]
    return "Class", head_report["per_class"]


def _axis_labels(head_report: dict) -> list[str]:
    return [str(x) for x in head_report.get("levels", head_report.get("classes", []))]


def headline_rows(report: dict) -> list[list]:
    """[head, metric, this model, seed, difference] for every number the seed published."""
    ours = flatten_for_logging(report, "", stats=("f1",))
    rows = []
    for head, metrics in SEED_RESULTS.items():
        for key, seed in metrics.items():
            value = ours.get(f"{head}/{key}")
            diff = "n/a" if value is None else f"{value - seed:+.3f}"
            rows.append([head, METRIC_NAMES[key], value, seed, diff])
    return rows


def side_by_side(reports: dict[str, dict]) -> str:
    """The summary numbers of several evaluations of one model (the test split, the gold set) as one Markdown
    table, a column each, and how many files each had."""
    flat = {name: flatten_for_logging(r, "", stats=()) for name, r in reports.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))
    rows = [
        [k.split("/")[0], METRIC_NAMES.get(k.split("/", 1)[1], k), *(f.get(k) for f in flat.values())]
        for k in keys
    ]
    files = ", ".join(f"{name}: {next(r for _, r in _heads(rep))['n']}" for name, rep in reports.items())
    return "\n".join(_table(["Head", "Metric", *reports], rows) + ["", f"Files: {files}."])


def report_markdown(report: dict, title: str, meta: dict | None = None, images: dict | None = None) -> str:
    """The Markdown report; `images` maps a head to the file name of its confusion plot, relative to it."""
    lines = [f"# {title}", ""]
    if meta:
        lines += _table(["Setting", "Value"], [[str(k), str(v)] for k, v in meta.items()]) + [""]

    lines += ["## Headline", ""]
    lines += _table(
        ["Head", "Metric", "This model", f"Seed ({SEED_NAME})", "Difference"], headline_rows(report)
    )
    lines += ["", SEED_NOTE, ""]

    for head, head_report in _heads(report):
        row_name, rows = _rows_of(head_report)
        summary = ORDINAL_SUMMARY if row_name == "Level" else CLASSIFICATION_SUMMARY
        lines += [f"## {head}", "", f"Files: {head_report['n']}", ""]
        lines += _table([METRIC_NAMES[k] for k in summary], [[head_report[k] for k in summary]])
        lines += ["", f"### Per {row_name.lower()}", ""]
        lines += _table(
            [row_name, "Precision", "Recall", "F1", "Support"],
            [[str(name), r["precision"], r["recall"], r["f1"], r["support"]] for name, r in rows.items()],
        )
        kind = row_name.lower()
        lines += ["", f"### Confusion matrix (rows: true {kind}, columns: predicted {kind})", ""]
        labels = _axis_labels(head_report)
        lines += _table(
            ["true \\ predicted", *labels],
            [[label, *counts] for label, counts in zip(labels, head_report["confusion"], strict=True)],
        )
        if images and head in images:
            lines += ["", f"![{head} confusion matrix]({images[head]})"]
        lines.append("")
    return "\n".join(lines)


def plot_confusion(head_report: dict, title: str, path: Path) -> Path:
    """A confusion-matrix PNG: colour is the share of each true row (so rare levels stay visible), text the count."""
    # Figure + Agg canvas directly, not pyplot: no global backend switch and no figure left open.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(head_report["confusion"], dtype=np.int64)
    row_sums = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=np.float64), where=row_sums > 0)
    labels = _axis_labels(head_report)
    n = len(labels)

    fig = Figure(figsize=(1.6 + 0.65 * n, 1.2 + 0.6 * n))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true row")
    ax.set_xticks(range(n), labels, rotation=45 if n > 5 else 0, ha="right" if n > 5 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _json_ready(value):
    """Plain JSON: numpy scalars to Python numbers, NaN/inf to null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_report(report: dict, out_dir, title: str, meta: dict | None = None) -> dict[str, Path]:
    """Write `metrics.json`, `report.md` and `confusion_<head>.png` per head into `out_dir`.

    metrics.json holds the report as `evaluate` returns it (level keys become strings), plus a top-level
    `meta` entry when `meta` is given. Returns the paths by name: `metrics`, `report`, `confusion_<head>`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    images = {}
    for head, head_report in _heads(report):
        name = f"confusion_{head}.png"
        paths[f"confusion_{head}"] = plot_confusion(head_report, f"{title}: {head}", out_dir / name)
        images[head] = name

    payload = dict(report) if meta is None else {**report, "meta": meta}
    paths["metrics"] = out_dir / "metrics.json"
    paths["metrics"].write_text(json.dumps(_json_ready(payload), indent=2, allow_nan=False) + "\n")
    paths["report"] = out_dir / "report.md"
    paths["report"].write_text(report_markdown(report, title, meta, images))
    return paths


def _wandb_run(run_or_logger):
    # Lightning's WandbLogger keeps the run behind `.experiment`; look it up on the type, because a disabled
    # wandb run answers any attribute.
    if run_or_logger is not None and isinstance(getattr(type(run_or_logger), "experiment", None), property):
        return run_or_logger.experiment
    return run_or_logger


def log_report_to_wandb(report: dict, wandb_run_or_logger, prefix: str = "test") -> dict:
    """Log a report to W&B: summary scalars (also into the run summary), per-level/per-class tables with an F1
    bar chart, and each confusion matrix as a table drawn with W&B's confusion-matrix chart.

    A no-op (returns {}) when wandb is not installed or the run is None; otherwise returns what was logged.
    """
    run = _wandb_run(wandb_run_or_logger)
    if run is None:
        return {}
    try:
        import wandb
    except ImportError:
        return {}

    base = f"{prefix.rstrip('/')}/" if prefix else ""
    scalars = flatten_for_logging(report, prefix)
    logged: dict = dict(scalars)
    for head, head_report in _heads(report):
        row_name, rows = _rows_of(head_report)
        kind = row_name.lower()
        table = wandb.Table(
            columns=[kind, "precision", "recall", "f1", "support"],
            data=[
                [str(name), r["precision"], r["recall"], r["f1"], r["support"]] for name, r in rows.items()
            ],
        )
        logged[f"{base}{head}/per_{kind}"] = table
        logged[f"{base}{head}/f1_per_{kind}"] = wandb.plot.bar(
            table, kind, "f1", title=f"{base}{head}: F1 per {kind}"
        )

        # wandb.plot.confusion_matrix wants raw predictions; with only the matrix, feed its chart the counts.
        labels = _axis_labels(head_report)
        cells = [
            [labels[i], labels[j], int(count)]
            for i, counts in enumerate(head_report["confusion"])
            for j, count in enumerate(counts)
        ]
        matrix = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=cells)
        logged[f"{base}{head}/confusion"] = wandb.plot_table(
            "wandb/confusion_matrix/v1",
            matrix,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": f"{base}{head}: confusion matrix"},
        )
    run.log(logged)
    run.summary.update(scalars)
    return logged
