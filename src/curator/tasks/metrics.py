"""Evaluation metrics for the three heads, as the seed model reports them.

Regression outputs are rounded and clipped into the rubric's levels (`OrdinalHead.to_levels`) and then reported
per level; MAE and Spearman use the raw scores. Every function here works on plain numpy arrays so that a
notebook, the scoring stage and the LightningModule share one implementation; `CuratorMetrics` only collects
tensors across batches (and ranks) and hands them to `evaluate`.

Conventions a caller relies on:
- Precision of a level nobody predicted, recall of a level with no support, and F1 when both are 0 are 0.
- `macro_f1` averages F1 over the classes (levels) that occur in the targets or the predictions, which is
  sklearn's `f1_score(average="macro")` with `labels=None`. Classes that occur in neither are still listed
  in `per_class` / `per_level` with zeros, but do not pull the average down.
- Spearman is 0.0 when either side is constant (or fewer than two samples): the correlation is undefined
  there, and a constant predictor ranks nothing. A number rather than NaN keeps checkpoint selection,
  early stopping (which stops on non-finite values) and strict JSON working.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from curator.labels import ORDINAL_HEADS, OrdinalHead

CONTENT_TYPE = "content_type"
# Head-level scalars that flatten_for_logging emits, in this order, when present.
SUMMARY_KEYS = ("mae", "rounded_accuracy", "spearman", "accuracy", "macro_f1")


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson correlation of average ranks (ties share the mean of their ranks)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2:
        return 0.0
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denom == 0.0:
        return 0.0
    return float((rx * ry).sum() / denom)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    uniques, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # The k-th distinct value occupies ranks start+1 .. start+count; ties get the mean of those ranks.
    starts = np.cumsum(counts) - counts
    return (starts + (counts + 1) / 2.0)[inverse].astype(np.float64)


def _confusion(target_index: np.ndarray, pred_index: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(target_index * n + pred_index, minlength=n * n).reshape(n, n)


def _per_class_stats(confusion: np.ndarray, names: Sequence) -> tuple[dict, float]:
    """Per-class precision/recall/F1/support from a confusion matrix, and the macro F1 over present classes."""
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    stats, f1s = {}, []
    for i, name in enumerate(names):
        precision = tp[i] / predicted[i] if predicted[i] else 0.0
        recall = tp[i] / support[i] if support[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        stats[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(support[i]),
        }
        if support[i] or predicted[i]:
            f1s.append(f1)
    return stats, float(np.mean(f1s)) if f1s else 0.0


def _check_pair(pred: np.ndarray, target: np.ndarray, what: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{what}: {pred.size} predictions for {target.size} targets")
    if target.size == 0:
        raise ValueError(f"{what}: no samples to evaluate")


def ordinal_report(pred: np.ndarray, target: np.ndarray, head: OrdinalHead) -> dict:
    """Metrics of a regression head scored on an integer scale.

    `pred` are raw scores (MAE and Spearman use them as they are); `target` are integer levels of `head`.
    `per_level` and `confusion` cover every level of the head; confusion rows are true levels, columns
    predicted levels, both in `head.level_values` order.
    """
    pred = np.asarray(pred, dtype=np.float64).ravel()
    target = np.asarray(target).ravel()
    _check_pair(pred, target, head.name)
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"{head.name}: predictions contain NaN or inf")
    if target.min() < head.lo or target.max() > head.hi or np.any(target != np.round(target)):
        raise ValueError(f"{head.name}: targets must be integer levels in {head.lo}-{head.hi}")
    target = target.astype(np.int64)
    pred_level = head.to_levels(pred)

    confusion = _confusion(target - head.lo, pred_level - head.lo, len(head.level_values))
    per_level, macro_f1 = _per_class_stats(confusion, head.level_values)
    return {
        "n": int(target.size),
        "mae": float(np.abs(pred - target).mean()),
        "rounded_accuracy": float((pred_level == target).mean()),
        "spearman": rank_correlation(pred, target),
        "macro_f1": macro_f1,
        "levels": head.level_values,
        "per_level": per_level,
        "confusion": confusion.tolist(),
    }


def classification_report(
    pred_index: np.ndarray, target_index: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Metrics of the content-type head from predicted and true class indices into `class_names`.

    `per_class` lists every class; `macro_f1` averages over the classes present in target or prediction.
    """
    pred_index = np.asarray(pred_index).ravel()
    target_index = np.asarray(target_index).ravel()
    _check_pair(pred_index, target_index, CONTENT_TYPE)
    n = len(class_names)
    for what, idx in (("predictions", pred_index), ("targets", target_index)):
        if idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"{CONTENT_TYPE}: {what} must be class indices in 0-{n - 1}")
    pred_index = pred_index.astype(np.int64)
    target_index = target_index.astype(np.int64)

    confusion = _confusion(target_index, pred_index, n)
    per_class, macro_f1 = _per_class_stats(confusion, list(class_names))
    return {
        "n": int(target_index.size),
        "accuracy": float((pred_index == target_index).mean()),
        "macro_f1": macro_f1,
        "classes": list(class_names),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16; scores from a bf16 run are widened first.
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def evaluate(predictions: dict, targets: dict, class_names: Sequence[str] | None = None) -> dict:
    """The nested report of every head that has predictions.

    predictions: `quality` and `structured_data` float scores, `content_type` class indices (1-d) or a
    (n, classes) matrix of logits or probabilities (argmax is taken). A head missing from `predictions`, or
    None there, is skipped: a head trained with loss weight 0 is not reported.
    targets: integer levels and class indices for the same heads.
    """
    report = {}
    for name, head in ORDINAL_HEADS.items():
        if predictions.get(name) is None:
            continue
        report[name] = ordinal_report(_to_numpy(predictions[name]), _to_numpy(targets[name]), head)
    if predictions.get(CONTENT_TYPE) is not None:
        if class_names is None:
            raise ValueError("content_type predictions need class_names")
        pred = _to_numpy(predictions[CONTENT_TYPE])
        if pred.ndim == 2:
            pred = pred.argmax(axis=1)
        report[CONTENT_TYPE] = classification_report(pred, _to_numpy(targets[CONTENT_TYPE]), class_names)
    return report


def flatten_for_logging(report: dict, prefix: str = "", stats: Sequence[str] = ("f1",)) -> dict[str, float]:
    """Scalars of a nested report under names like `val/quality/mae`, `val/quality/f1/level_3`,
    `val/content_type/f1/library`, for `LightningModule.log_dict`.

    `stats` picks which per-level / per-class numbers are emitted (precision, recall, f1, support).
    """
    base = f"{prefix.rstrip('/')}/" if prefix else ""
    flat = {}
    for head, head_report in report.items():
        if not isinstance(head_report, dict):
            continue
        for key in SUMMARY_KEYS:
            if key in head_report:
                flat[f"{base}{head}/{key}"] = float(head_report[key])
        if "per_level" in head_report:
            rows = {f"level_{level}": row for level, row in head_report["per_level"].items()}
        else:
            rows = head_report.get("per_class", {})
        for stat in stats:
            for name, row in rows.items():
                flat[f"{base}{head}/{stat}/{name}"] = float(row[stat])
    return flat


def _cat_state(state) -> torch.Tensor | None:
    """A "cat" state is a list of batch tensors before a DDP sync and one tensor after it; None when empty."""
    if isinstance(state, list):
        state = torch.cat([s.reshape(-1) for s in state]) if state else None
    if state is None or state.numel() == 0:
        return None
    return state


class CuratorMetrics(Metric):
    """Collects predictions and targets of the three heads over an epoch; `compute()` returns `evaluate(...)`.

    update(preds, targets): dicts keyed by head name. `content_type` predictions may be logits, probabilities
    or class indices; only the argmax is kept. A head absent from `preds` (loss weight 0) is not reported.
    The whole epoch is kept (a few numbers per file) because Spearman and the confusion matrix need it.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, class_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.class_names = list(class_names)
        self.heads = (*ORDINAL_HEADS, CONTENT_TYPE)
        for head in self.heads:
            self.add_state(f"{head}_pred", default=[], dist_reduce_fx="cat")
            self.add_state(f"{head}_target", default=[], dist_reduce_fx="cat")

    def update(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
        for head in self.heads:
            pred = preds.get(head)
            if pred is None:
                continue
            pred = pred.detach()
            if head == CONTENT_TYPE:
                pred = pred.argmax(dim=-1) if pred.ndim == 2 else pred
                pred = pred.long()
            else:
                # fp32, not the autocast dtype: bf16 cannot tell 2.49 from 2.5 at a level edge.
                pred = pred.float()
            getattr(self, f"{head}_pred").append(pred.reshape(-1))
            getattr(self, f"{head}_target").append(targets[head].detach().long().reshape(-1))

    def compute(self) -> dict:
        predictions, targets = {}, {}
        for head in self.heads:
            pred = _cat_state(getattr(self, f"{head}_pred"))
            if pred is None:
                continue
            predictions[head] = pred
            # An empty state is float after a sync (torchmetrics fills it that way); targets are levels.
            targets[head] = _cat_state(getattr(self, f"{head}_target")).long()
        if not predictions:
            raise ValueError("CuratorMetrics.compute() called before any update")
        return evaluate(predictions, targets, self.class_names)
