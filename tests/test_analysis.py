import math

import numpy as np
import pandas as pd
import pytest
from helpers_model import make_checkpoint

from curator.labels import get_label_set
from curator.tasks.analysis import (
    calibration,
    excerpt,
    expected_calibration_error,
    f1_by_language,
    head_reports,
    per_language_f1,
    predict_split,
    threshold_tradeoff,
    worst_errors,
)

COARSE = get_label_set("coarse").classes  # code, test, config_or_data, generated, other


def probs(top: str, p: float) -> np.ndarray:
    """Coarse-set probabilities with `p` on `top` and the rest spread evenly."""
    out = np.full(len(COARSE), (1.0 - p) / (len(COARSE) - 1))
    out[COARSE.index(top)] = p
    return out


@pytest.fixture
def df():
    """Six files, two languages; every number below is countable from this table."""
    rows = [
        # id, language, quality, pred_quality, structured_data, pred_sd, content_type, predicted, p
        ("a", "go", 3, 3.2, 0, 0.1, "code", "code", 0.9),
        ("b", "go", 4, 2.4, 1, 1.4, "test", "code", 0.8),
        ("c", "go", 2, 2.6, 3, 2.0, "code", "code", 0.7),
        ("d", "python", 5, 4.5, 2, 2.2, "test", "test", 0.95),
        ("e", "python", 1, 1.0, 0, 0.6, "other", "code", 0.55),
        ("f", "python", 3, 3.4, 2, 1.5, "code", "code", 0.65),
    ]
    return pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "language": [r[1] for r in rows],
            "repo": [f"org/{r[0]}" for r in rows],
            "path": [f"src/{r[0]}.txt" for r in rows],
            "content": ["\n".join(f"line {i}" for i in range(30))] + ["x = 1\n"] * 5,
            "quality": [r[2] for r in rows],
            "pred_quality": [r[3] for r in rows],
            "structured_data": [r[4] for r in rows],
            "pred_structured_data": [r[5] for r in rows],
            "content_type": [r[6] for r in rows],
            "pred_content_type": [r[7] for r in rows],
            "content_type_probs": [probs(r[7], r[8]) for r in rows],
        }
    )


def cell(table: pd.DataFrame, language: str, head: str, level: str) -> pd.Series:
    row = table[(table.language == language) & (table["head"] == head) & (table.level == level)]
    assert len(row) == 1
    return row.iloc[0]


def test_per_language_f1_counts_by_hand(df):
    table = per_language_f1(df)
    assert set(table.language) == {"go", "python", "all"}
    # go quality: labels 3, 4, 2; predicted levels 3, 2, 3 (2.6 rounds up). Level 3: tp 1, predicted 2,
    # support 1 -> precision 1/2, recall 1, F1 2/3. Level 2: predicted once (wrongly), support 1 -> F1 0.
    level3 = cell(table, "go", "quality", "3")
    assert (level3.precision, level3.recall, level3.support, level3.predicted) == (0.5, 1.0, 1, 2)
    assert level3.f1 == pytest.approx(2 / 3)
    assert cell(table, "go", "quality", "2").f1 == 0.0
    # A level neither labeled nor predicted in a language has no F1 at all, not a zero.
    assert math.isnan(cell(table, "go", "quality", "5").f1)
    assert cell(table, "python", "quality", "5").f1 == 1.0  # 4.5 rounds half up to 5
    # content_type over all files: code labeled 3 times (a, c, f), predicted 5 times, all 3 right.
    code = cell(table, "all", "content_type", "code")
    assert (code.precision, code.recall) == (pytest.approx(3 / 5), 1.0)
    assert code.f1 == pytest.approx(0.75)
    assert cell(table, "python", "content_type", "test").f1 == 1.0
    # Every level of every head, per language: 5 + 4 + 5 rows each.
    assert len(table) == 3 * (5 + 4 + 5)


def test_per_language_f1_agrees_with_the_metrics_module(df):
    table = per_language_f1(df)
    reports = head_reports(df)
    for level, row in reports["structured_data"]["per_level"].items():
        got = cell(table, "all", "structured_data", str(level))
        assert got.precision == row["precision"] and got.support == row["support"]


def test_worst_errors_of_a_regression_head(df):
    worst = worst_errors(df, "quality", n=2)
    # |error|: a .2, b 1.6, c .6, d .5, e 0, f .4
    assert list(worst.id) == ["b", "c"]
    assert worst.iloc[0].error == pytest.approx(-1.6) and worst.iloc[0].label == 4
    assert worst.iloc[0].predicted_level == 2
    assert {"repo", "path", "prediction", "excerpt"} <= set(worst.columns)
    # structured_data: |error| c 1.0, e .6, b .4, f .5 -> c, e, f
    assert list(worst_errors(df, "structured_data", n=3).id) == ["c", "e", "f"]


def test_worst_errors_of_content_type_are_confident_mistakes(df):
    worst = worst_errors(df, "content_type", n=5)
    # Wrong: b (test -> code, 0.8) and e (other -> code, 0.55); right ones never show up.
    assert list(worst.id) == ["b", "e"]
    assert list(worst.confidence) == pytest.approx([0.8, 0.55])
    assert list(worst.label) == ["test", "other"]


def test_excerpt_keeps_the_first_lines(df):
    text = worst_errors(df, "quality", n=6).set_index("id").loc["a", "excerpt"]
    assert text.splitlines()[:20] == [f"line {i}" for i in range(20)]
    assert text.endswith("(10 more lines)")
    assert excerpt("a\nb\n", lines=20) == "a\nb"
    assert excerpt(None) == ""


def test_calibration_of_a_regression_head(df):
    table = calibration(df, "quality").set_index("level")
    assert list(table.index) == [1, 2, 3, 4, 5]
    # Level 3: files a (3.2) and f (3.4).
    assert table.loc[3, "n"] == 2
    assert table.loc[3, "mean"] == pytest.approx(3.3)
    assert table.loc[3, "std"] == pytest.approx(0.1)
    assert table.loc[1, "mean"] == 1.0 and table.loc[1, "std"] == 0.0
    empty = calibration(df.iloc[:0], "quality")
    assert (empty.n == 0).all() and empty["mean"].isna().all()


def test_reliability_of_content_type(df):
    table = calibration(df, "content_type", bins=4)  # [0, .25), [.25, .5), [.5, .75), [.75, 1]
    assert list(table.n) == [0, 0, 3, 3]
    # Bin [.5, .75): c (0.7, right), e (0.55, wrong), f (0.65, right).
    assert table.loc[2, "confidence"] == pytest.approx((0.7 + 0.55 + 0.65) / 3)
    assert table.loc[2, "accuracy"] == pytest.approx(2 / 3)
    # Bin [.75, 1]: a (0.9, right), b (0.8, wrong), d (0.95, right).
    assert table.loc[3, "accuracy"] == pytest.approx(2 / 3)
    gap = (3 * abs(2 / 3 - 1.9 / 3) + 3 * abs(2 / 3 - 2.65 / 3)) / 6
    assert expected_calibration_error(table) == pytest.approx(gap)


def test_threshold_tradeoff_counts_by_hand(df):
    table = threshold_tradeoff(df, "quality", thresholds=[1.0, 2.5, 3.5, 6.0]).set_index("threshold")
    # 2.5 asks for level 3: kept c (2.6, label 2), a, f, d -> 4 of 6; labels >= 3 among them: a, f, d.
    row = table.loc[2.5]
    assert (row.level, row.kept) == (3, 4)
    assert row.kept_fraction == pytest.approx(4 / 6)
    assert row.precision == pytest.approx(3 / 4)
    # Files labeled >= 3: a, b, d, f; b (2.4) is lost.
    assert row.recall == pytest.approx(3 / 4) and row.base_rate == pytest.approx(4 / 6)
    # 3.5 asks for level 4: only d (4.5) is kept, and it is level 5.
    assert (table.loc[3.5].kept, table.loc[3.5].precision) == (1, 1.0)
    assert table.loc[1.0].precision == 1.0 and table.loc[1.0].kept_fraction == 1.0
    assert table.loc[6.0].kept == 0 and math.isnan(table.loc[6.0].precision)


def test_threshold_tradeoff_default_grid(df):
    table = threshold_tradeoff(df, "structured_data")
    assert table.threshold.iloc[0] == 0.0 and table.threshold.iloc[-1] == 3.0 and len(table) == 31
    assert (np.diff(table.kept_fraction) <= 0).all()
    with pytest.raises(ValueError):
        threshold_tradeoff(df, "content_type")


def test_predict_split_gives_a_row_per_file(tmp_path, labeled_root):
    ckpt = make_checkpoint(tmp_path / "tiny.ckpt", label_set="coarse", max_length=32)
    df = predict_split(ckpt, labeled_root, "test", batch_size=8, device="cpu")
    assert len(df) == 48  # 240 fixture files, every fifth in test
    assert df.id.is_unique and set(df.language) == {"python"}
    assert {"repo", "path", "content", "pred_quality", "pred_structured_data", "pred_content_type"} <= set(df)
    assert set(df.content_type) <= set(COARSE)  # labels mapped into the model's label set
    assert df.attrs["classes"] == list(COARSE)
    stacked = np.stack(df.content_type_probs)
    assert stacked.shape == (48, 5) and np.allclose(stacked.sum(axis=1), 1.0)
    assert list(df.pred_content_type) == [COARSE[k] for k in stacked.argmax(axis=1)]
    # As in score files: the whole file's content tokens; truncated when they do not fit the 30 left beside
    # [CLS] and [SEP].
    assert df.truncated.any() and (~df.truncated).any()
    assert (df.truncated == (df.num_tokens > 30)).all() and df.error.isna().all()
    # Batches are grouped by length, so rows must be put back in place: one file alone scores the same.
    one = predict_split(ckpt, labeled_root, "test", batch_size=8, device="cpu", limit=1)
    assert one.pred_quality.iloc[0] == pytest.approx(df.pred_quality.iloc[0], abs=1e-5)
    assert len(per_language_f1(df)) == 2 * (5 + 4 + 5)


def test_f1_by_language_keeps_rubric_order(df):
    wide = f1_by_language(per_language_f1(df))
    assert list(wide.columns) == ["go", "python", "all"]
    assert [level for head, level in wide.index if head == "structured_data"] == ["0", "1", "2", "3"]
    assert wide.loc[("quality", "3"), "go"] == pytest.approx(2 / 3)
