"""Metrics against independent references: plain counting loops, scipy's Spearman, sklearn where installed."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from curator.labels import LABEL_SETS, QUALITY, STRUCTURED_DATA
from curator.tasks.metrics import (
    CuratorMetrics,
    classification_report,
    evaluate,
    flatten_for_logging,
    ordinal_report,
    rank_correlation,
)

FULL = list(LABEL_SETS["full"].classes)


# --- references, written as plainly as possible ---------------------------------------------------------------


def ref_level(x: float, lo: int, hi: int) -> int:
    rounded = int(Decimal(repr(float(x))).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return min(max(rounded, lo), hi)


def ref_confusion(true, pred, labels):
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(true, pred, strict=True):
        matrix[labels.index(t)][labels.index(p)] += 1
    return matrix


def ref_per_class(true, pred, labels):
    out = {}
    for label in labels:
        tp = sum(1 for t, p in zip(true, pred, strict=True) if t == label and p == label)
        n_pred = sum(1 for p in pred if p == label)
        n_true = sum(1 for t in true if t == label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true}
    return out


def ref_macro_f1(true, pred, labels):
    per = ref_per_class(true, pred, labels)
    present = [label for label in labels if label in true or label in pred]
    return sum(per[label]["f1"] for label in present) / len(present)


def assert_per_class(got: dict, want: dict):
    assert list(got) == list(want)
    for key in want:
        for stat in ("precision", "recall", "f1"):
            assert got[key][stat] == pytest.approx(want[key][stat], abs=1e-12), (key, stat)
        assert got[key]["support"] == want[key]["support"]


def noisy_scores(rng, target, spread=1.2):
    # Noise wide enough to land outside the scale on both ends, so clipping is exercised.
    return target + rng.normal(0, spread, size=target.shape)


# --- ordinal heads ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [QUALITY, STRUCTURED_DATA], ids=lambda h: h.name)
def test_ordinal_report_matches_reference(head):
    rng = np.random.default_rng(0)
    target = rng.integers(head.lo, head.hi + 1, size=400)
    pred = noisy_scores(rng, target)
    report = ordinal_report(pred, target, head)

    levels = head.level_values
    pred_levels = [ref_level(x, head.lo, head.hi) for x in pred]
    true = [int(t) for t in target]
    assert report["n"] == 400
    assert report["levels"] == levels
    assert report["mae"] == pytest.approx(
        sum(abs(p - t) for p, t in zip(pred, true, strict=True)) / len(true)
    )
    assert report["rounded_accuracy"] == pytest.approx(
        sum(p == t for p, t in zip(pred_levels, true, strict=True)) / len(true)
    )
    assert report["spearman"] == pytest.approx(spearmanr(pred, target).statistic, abs=1e-12)
    assert report["confusion"] == ref_confusion(true, pred_levels, levels)
    assert_per_class(report["per_level"], ref_per_class(true, pred_levels, levels))
    assert report["macro_f1"] == pytest.approx(ref_macro_f1(true, pred_levels, levels))
    assert min(pred) < head.lo - 0.5 and max(pred) > head.hi + 0.5


def test_rounding_half_up_and_clipping():
    pred = np.array([2.5, 0.2, 7.0, 3.49, 1.5, 4.5, -3.0, 5.5])
    target = np.array([3, 1, 5, 3, 2, 5, 1, 5])
    report = ordinal_report(pred, target, QUALITY)
    # 2.5 -> 3 (not 2 as np.round would give), 0.2 -> 1, 7 -> 5, 3.49 -> 3, 1.5 -> 2, 4.5 -> 5, -3 -> 1, 5.5 -> 5
    assert report["rounded_accuracy"] == 1.0
    assert report["confusion"] == [
        [2, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 2, 0, 0],
        [0] * 5,
        [0, 0, 0, 0, 3],
    ]
    # MAE uses the raw scores, not the clipped levels.
    assert report["mae"] == pytest.approx(np.abs(pred - target).mean())

    edge = ordinal_report(np.array([0.5, 0.49, 3.5, 9.0]), np.array([1, 0, 3, 3]), STRUCTURED_DATA)
    assert edge["rounded_accuracy"] == 1.0


def test_level_without_support_is_listed_with_zeros():
    target = np.array([2, 2, 3, 3, 3, 4])
    pred = np.array([2.1, 3.2, 3.0, 2.9, 1.6, 4.0])  # levels 2 3 3 3 2 4: level 1 and 5 never seen
    report = ordinal_report(pred, target, QUALITY)
    assert list(report["per_level"]) == [1, 2, 3, 4, 5]
    for level in (1, 5):
        assert report["per_level"][level] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["confusion"][0] == [0] * 5 and report["confusion"][4] == [0] * 5
    # Levels 1 and 5 occur in neither targets nor predictions, so the macro average is over 2, 3 and 4 only.
    per = report["per_level"]
    assert report["macro_f1"] == pytest.approx((per[2]["f1"] + per[3]["f1"] + per[4]["f1"]) / 3)


def test_level_predicted_but_absent_counts_in_macro_f1():
    target = np.array([1, 1, 2, 2])
    pred = np.array([1.0, 1.0, 2.0, 5.0])  # level 5 is predicted once but has no support
    report = ordinal_report(pred, target, QUALITY)
    assert report["per_level"][5] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    f1_level_2 = 2 * 1.0 * 0.5 / 1.5
    assert report["macro_f1"] == pytest.approx((1.0 + f1_level_2 + 0.0) / 3)


def test_perfect_predictions():
    target = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    report = ordinal_report(target.astype(float), target, STRUCTURED_DATA)
    assert report["mae"] == 0.0
    assert report["rounded_accuracy"] == 1.0
    assert report["spearman"] == pytest.approx(1.0)
    assert report["macro_f1"] == 1.0
    assert all(row["f1"] == 1.0 for row in report["per_level"].values())
    assert report["confusion"] == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]]


def test_constant_input_gives_spearman_zero():
    # scipy says NaN (undefined); the report says 0.0 so that monitors and strict JSON keep working.
    target = np.array([1, 2, 3, 4, 5, 3])
    with pytest.warns(Warning):
        assert math.isnan(spearmanr(np.full(6, 3.0), target).statistic)
    report = ordinal_report(np.full(6, 3.0), target, QUALITY)
    assert report["spearman"] == 0.0
    assert report["rounded_accuracy"] == pytest.approx(2 / 6)
    assert ordinal_report(np.linspace(1, 5, 6), np.full(6, 3), QUALITY)["spearman"] == 0.0
    assert ordinal_report(np.array([2.0]), np.array([2]), QUALITY)["spearman"] == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rank_correlation_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=200).astype(float)  # heavy ties
    y = x + rng.normal(0, 2, size=200)
    y[:50] = np.round(y[:50])
    assert rank_correlation(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert rank_correlation(y, -y) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "pred, target, message",
    [
        (np.array([1.0, 2.0]), np.array([1, 6]), "targets must be"),
        (np.array([1.0, 2.0]), np.array([0, 2]), "targets must be"),
        (np.array([1.0, 2.0, 3.0]), np.array([1, 2]), "predictions for"),
        (np.array([]), np.array([], dtype=int), "no samples"),
        (np.array([1.0, np.nan]), np.array([1, 2]), "NaN"),
    ],
)
def test_ordinal_report_rejects_bad_input(pred, target, message):
    with pytest.raises(ValueError, match=message):
        ordinal_report(pred, target, QUALITY)


# --- content type ----------------------------------------------------------------------------------------------


def test_classification_report_matches_reference():
    rng = np.random.default_rng(4)
    target = rng.integers(0, 8, size=500)  # the last class ("other") never occurs as a target
    pred = np.where(rng.random(500) < 0.7, target, rng.integers(0, 9, size=500))
    report = classification_report(pred, target, FULL)

    true_names = [FULL[i] for i in target]
    pred_names = [FULL[i] for i in pred]
    assert report["n"] == 500
    assert report["classes"] == FULL
    assert report["accuracy"] == pytest.approx(
        sum(p == t for p, t in zip(pred_names, true_names, strict=True)) / 500
    )
    assert report["confusion"] == ref_confusion(true_names, pred_names, FULL)
    assert_per_class(report["per_class"], ref_per_class(true_names, pred_names, FULL))
    assert report["macro_f1"] == pytest.approx(ref_macro_f1(true_names, pred_names, FULL))


def test_classification_macro_f1_skips_classes_absent_from_both():
    coarse = list(LABEL_SETS["coarse"].classes)
    report = classification_report(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]), coarse)
    assert report["per_class"]["other"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    f1_code = 2 * 1.0 * (2 / 3) / (1 + 2 / 3)
    f1_test = 2 * 0.5 * 1.0 / 1.5
    assert report["macro_f1"] == pytest.approx((f1_code + f1_test) / 2)


def test_classification_report_rejects_bad_indices():
    with pytest.raises(ValueError, match="class indices"):
        classification_report(np.array([0, 5]), np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="class indices"):
        classification_report(np.array([0, 1]), np.array([-1, 1]), ["a", "b"])


def test_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    q_target = rng.integers(1, 6, size=300)
    q_pred = noisy_scores(rng, q_target)
    q_levels = [ref_level(x, 1, 5) for x in q_pred]
    report = ordinal_report(q_pred, q_target, QUALITY)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        q_target, q_levels, labels=QUALITY.level_values, zero_division=0
    )
    got = report["per_level"]
    assert [got[level]["precision"] for level in QUALITY.level_values] == pytest.approx(precision)
    assert [got[level]["recall"] for level in QUALITY.level_values] == pytest.approx(recall)
    assert [got[level]["f1"] for level in QUALITY.level_values] == pytest.approx(f1)
    assert [got[level]["support"] for level in QUALITY.level_values] == list(support)
    assert report["macro_f1"] == pytest.approx(
        metrics.f1_score(q_target, q_levels, average="macro", zero_division=0)
    )
    assert (
        report["confusion"]
        == metrics.confusion_matrix(q_target, q_levels, labels=QUALITY.level_values).tolist()
    )
    assert report["mae"] == pytest.approx(metrics.mean_absolute_error(q_target, q_pred))

    c_target = rng.integers(0, 7, size=300)
    c_pred = np.where(rng.random(300) < 0.6, c_target, rng.integers(0, 8, size=300))
    c_report = classification_report(c_pred, c_target, FULL)
    assert c_report["accuracy"] == pytest.approx(metrics.accuracy_score(c_target, c_pred))
    assert c_report["macro_f1"] == pytest.approx(
        metrics.f1_score(c_target, c_pred, average="macro", zero_division=0)
    )


# --- evaluate and logging names --------------------------------------------------------------------------------


def make_batch(rng, n):
    num_classes = len(FULL)
    targets = {
        "quality": rng.integers(1, 6, size=n),
        "structured_data": rng.integers(0, 4, size=n),
        "content_type": rng.integers(0, num_classes, size=n),
    }
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), targets["content_type"]] += 1.5
    preds = {
        "quality": noisy_scores(rng, targets["quality"]),
        "structured_data": noisy_scores(rng, targets["structured_data"], 0.8),
        "content_type": logits,
    }
    return preds, targets


def test_evaluate_combines_heads_and_takes_argmax():
    preds, targets = make_batch(np.random.default_rng(6), 120)
    report = evaluate(preds, targets, FULL)
    assert list(report) == ["quality", "structured_data", "content_type"]
    assert report["quality"] == ordinal_report(preds["quality"], targets["quality"], QUALITY)
    assert report["structured_data"] == ordinal_report(
        preds["structured_data"], targets["structured_data"], STRUCTURED_DATA
    )
    by_index = classification_report(preds["content_type"].argmax(axis=1), targets["content_type"], FULL)
    assert report["content_type"] == by_index
    # Class indices give the same report as the matrix they came from.
    assert (
        evaluate({"content_type": preds["content_type"].argmax(axis=1)}, targets, FULL)["content_type"]
        == by_index
    )


def test_evaluate_skips_heads_without_predictions():
    preds, targets = make_batch(np.random.default_rng(7), 50)
    report = evaluate({"quality": preds["quality"], "structured_data": None}, targets, FULL)
    assert list(report) == ["quality"]
    assert evaluate({}, targets, FULL) == {}
    with pytest.raises(ValueError, match="class_names"):
        evaluate({"content_type": preds["content_type"]}, targets, None)


def test_flatten_for_logging_names():
    preds, targets = make_batch(np.random.default_rng(8), 80)
    report = evaluate(preds, targets, FULL)
    flat = flatten_for_logging(report, "val")
    expected = (
        [f"val/quality/{k}" for k in ("mae", "rounded_accuracy", "spearman", "macro_f1")]
        + [f"val/quality/f1/level_{level}" for level in QUALITY.level_values]
        + [f"val/structured_data/{k}" for k in ("mae", "rounded_accuracy", "spearman", "macro_f1")]
        + [f"val/structured_data/f1/level_{level}" for level in STRUCTURED_DATA.level_values]
        + ["val/content_type/accuracy", "val/content_type/macro_f1"]
        + [f"val/content_type/f1/{name}" for name in FULL]
    )
    assert sorted(flat) == sorted(expected)
    assert all(type(v) is float for v in flat.values())
    assert flat["val/quality/f1/level_3"] == report["quality"]["per_level"][3]["f1"]
    assert flat["val/content_type/f1/library"] == report["content_type"]["per_class"]["library"]["f1"]
    assert flatten_for_logging(report, "val/") == flat
    assert "quality/mae" in flatten_for_logging(report)
    with_recall = flatten_for_logging(report, "test", stats=("f1", "recall"))
    assert (
        with_recall["test/structured_data/recall/level_0"]
        == report["structured_data"]["per_level"][0]["recall"]
    )


# --- the torchmetrics Metric -----------------------------------------------------------------------------------


def to_tensors(preds, targets):
    return (
        {k: torch.as_tensor(v, dtype=torch.float32) for k, v in preds.items()},
        {k: torch.as_tensor(v) for k, v in targets.items()},
    )


def test_metric_over_batches_equals_one_shot_evaluate():
    rng = np.random.default_rng(9)
    batches = [make_batch(rng, n) for n in (16, 16, 7, 1)]
    metric = CuratorMetrics(FULL)
    for preds, targets in batches:
        metric.update(*to_tensors(preds, targets))
    got = metric.compute()

    all_preds = {k: np.concatenate([b[0][k] for b in batches]).astype(np.float32) for k in batches[0][0]}
    all_targets = {k: np.concatenate([b[1][k] for b in batches]) for k in batches[0][1]}
    assert got == evaluate(all_preds, all_targets, FULL)
    assert got["quality"]["n"] == 40

    metric.reset()
    preds, targets = batches[0]
    metric.update(*to_tensors(preds, targets))
    assert metric.compute()["quality"]["n"] == 16


def test_metric_skips_absent_head_and_accepts_bf16_and_indices():
    rng = np.random.default_rng(10)
    metric = CuratorMetrics(FULL)
    for _ in range(3):
        preds, targets = make_batch(rng, 8)
        p, t = to_tensors(preds, targets)
        metric.update(
            {"quality": p["quality"].to(torch.bfloat16), "content_type": p["content_type"].argmax(dim=1)}, t
        )
    report = metric.compute()
    assert list(report) == ["quality", "content_type"]
    assert report["content_type"]["n"] == 24


def test_metric_compute_without_update_raises():
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="before any update"):
        CuratorMetrics(FULL).compute()


def test_metric_states_after_distributed_sync():
    # Two ranks that saw the same batches: a "cat" sync turns each list state into one tensor holding both.
    def gather_two_ranks(tensor, group=None):
        return [tensor.clone(), tensor.clone()]

    rng = np.random.default_rng(11)
    batches = [make_batch(rng, 12) for _ in range(2)]
    metric = CuratorMetrics(FULL, dist_sync_fn=gather_two_ranks, distributed_available_fn=lambda: True)
    for preds, targets in batches:
        p, t = to_tensors(preds, targets)
        metric.update({"quality": p["quality"], "content_type": p["content_type"]}, t)
    got = metric.compute()

    def twice(key, source):
        one = np.concatenate([b[source][key] for b in batches])
        return np.concatenate([one, one])

    want = evaluate(
        {"quality": twice("quality", 0).astype(np.float32), "content_type": twice("content_type", 0)},
        {"quality": twice("quality", 1), "content_type": twice("content_type", 1)},
        FULL,
    )
    # structured_data was never updated: after the sync its state is an empty tensor, and it is still skipped.
    assert list(got) == ["quality", "content_type"]
    assert got == want
    assert got["quality"]["n"] == 48
