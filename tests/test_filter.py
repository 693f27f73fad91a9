import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers_model import corpus_rows, load_script, make_checkpoint, make_corpus, write_shard

from curator.data.corpus import CORPUS_COLUMNS
from curator.data.shards import write_parquet_atomic
from curator.labels import get_label_set
from curator.scoring import outputs
from curator.scoring.batching import RowInfo
from curator.scoring.expressions import Expression
from curator.scoring.runner import score_corpus
from curator.scoring.sources import Shard

CLASSES = get_label_set("full").classes
N = 40  # rows per shard


def fake_scores(i: int):
    """Known scores for row i: quality rises with i, structured_data and content_type cycle, row 3 failed."""
    return {
        "quality": 1 + 4 * i / (N - 1),
        "structured_data": i % 4,
        "content_type": i % len(CLASSES),
        "num_tokens": 10 * (i + 1),
        "error": "null content" if i == 3 else None,
    }


@pytest.fixture()
def scored(tmp_path):
    """A corpus of 2 languages x 2 shards, and score files with known values for it."""
    corpus = make_corpus(tmp_path / "corpus", languages=("python", "go"), shards=2, rows=N)
    scores = tmp_path / "scores"
    outputs.write_meta(scores, {"content_types": list(CLASSES), "model_fingerprint": "x", "max_length": 64,
                                "corpus": str(corpus)})  # fmt: skip
    for lang in ("python", "go"):
        for s in range(2):
            fake = [fake_scores(i) for i in range(N)]
            probs = np.eye(len(CLASSES), dtype=np.float32)[[f["content_type"] for f in fake]]
            meta = [
                RowInfo(i, f"{lang}-{s}-{i}", "p", f["num_tokens"], False, False, f["error"])
                for i, f in enumerate(fake)
            ]
            table = outputs.build_table(
                lang,
                meta,
                np.array([f["quality"] for f in fake]),
                np.array([f["structured_data"] for f in fake], dtype=float),
                probs,
                CLASSES,
            )
            write_parquet_atomic(table, outputs.shard_path(scores, Shard(lang, f"train-{s:05d}", "")))
    return corpus, scores


def run_filter(scores, out, *args):
    return load_script("filter").main(["--scores", str(scores), "--out", str(out), *args])


def kept(out, lang):
    files = sorted((out / lang).glob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files]) if files else pd.DataFrame(columns=["id"])


def expected_ids(lang, keep) -> set[str]:
    return {f"{lang}-{s}-{i}" for s in range(2) for i in range(N) if i != 3 and keep(fake_scores(i))}


def test_where_keeps_matching_rows_with_their_content(scored, tmp_path):
    corpus, scores = scored
    out = tmp_path / "out"
    where = "quality >= 3 and structured_data >= 2 and content_type != 'generated'"
    assert run_filter(scores, out, "--where", where) == 0

    def keep(f):
        return f["quality"] >= 3 and f["structured_data"] >= 2 and CLASSES[f["content_type"]] != "generated"

    for lang in ("python", "go"):
        df = kept(out, lang)
        assert set(df["id"]) == expected_ids(lang, keep) and len(df) == len(set(df["id"]))
        assert list(df.columns) == list(CORPUS_COLUMNS)
        source = {r["id"]: r["content"] for s in range(2) for r in corpus_rows(lang, s, N)}
        assert all(source[i] == c for i, c in zip(df["id"], df["content"], strict=True))

    report = json.loads((out / "filter_report.json").read_text())
    py = report["languages"]["python"]
    assert py["files"] == 2 * N and py["errors_dropped"] == 2
    assert py["kept_files"] == len(expected_ids("python", keep))
    assert py["errors"] == {"null content": 2}
    assert sum(c["kept_files"] for c in py["content_types"].values()) == py["kept_files"]
    assert report["total"]["kept_files"] == 2 * py["kept_files"]
    md = (out / "filter_report.md").read_text()
    assert "| python | 80 |" in md and "plots/python.png" in md
    assert (out / "plots" / "python.png").stat().st_size > 1000 and (out / "plots" / "go.png").exists()


def test_where_lang_replaces_where_for_that_language(scored, tmp_path):
    _, scores = scored
    out = tmp_path / "out"
    assert run_filter(scores, out, "--where", "quality >= 4", "--where-lang", "go=structured_data == 0") == 0
    assert set(kept(out, "python")["id"]) == expected_ids("python", lambda f: f["quality"] >= 4)
    assert set(kept(out, "go")["id"]) == expected_ids("go", lambda f: f["structured_data"] == 0)


def test_token_budget_keeps_the_best_files_within_budget(scored, tmp_path):
    _, scores = scored
    out = tmp_path / "out"
    assert run_filter(scores, out, "--token-budget", "3000", "--token-budget-lang", "go=500") == 0
    for lang, budget in (("python", 3000), ("go", 500)):
        df = kept(out, lang).merge(pd.DataFrame([
            {"id": f"{lang}-{s}-{i}", **fake_scores(i)} for s in range(2) for i in range(N) if i != 3
        ]), on="id")  # fmt: skip
        assert df["num_tokens"].sum() <= budget
        # Best by quality first: the next best file left out would have passed the budget.
        all_ok = pd.DataFrame(
            [{"id": f"{lang}-{s}-{i}", **fake_scores(i)} for s in range(2) for i in range(N) if i != 3]
        )
        ranked = all_ok.sort_values(["quality", "id"], ascending=[False, True])
        n = len(df)
        assert set(ranked["id"][:n]) == set(df["id"])
        assert ranked["num_tokens"][: n + 1].sum() > budget
    report = json.loads((out / "filter_report.json").read_text())
    assert report["languages"]["go"]["token_budget"] == 500
    assert report["languages"]["go"]["budget_cutoff"] == pytest.approx(kept_min_quality(out, "go"), abs=1e-5)


def kept_min_quality(out, lang):
    return min(fake_scores(int(i.rsplit("-", 1)[1]))["quality"] for i in kept(out, lang)["id"])


def test_report_only_writes_no_files(scored, tmp_path):
    _, scores = scored
    out = tmp_path / "out"
    assert run_filter(scores, out, "--where", "prob_test > 0.5", "--report-only") == 0
    assert not (out / "python").exists()
    report = json.loads((out / "filter_report.json").read_text())
    assert report["languages"]["python"]["kept_files"] == len(
        expected_ids("python", lambda f: f["content_type"] == 2)
    )


def test_incomplete_scores_are_refused(scored, tmp_path):
    _, scores = scored
    (scores / "go" / "train-00001.parquet").unlink()
    with pytest.raises(SystemExit, match="not completely scored"):
        run_filter(scores, tmp_path / "out", "--where", "quality > 2")
    assert run_filter(scores, tmp_path / "out", "--where", "quality > 2", "--allow-incomplete") == 0
    assert "left out" in (tmp_path / "out" / "filter_report.md").read_text()


@pytest.mark.parametrize(
    "text, message",
    [
        ("qualty >= 3", "unknown column 'qualty'"),
        ("content_type == 'generatd'", "not a content type"),
        ("content_type in ['library', 'tst']", "not a content type"),
        ("__import__('os').system('true')", "not allowed"),
        ("quality.real > 1", "not allowed"),
        ("(lambda: 1)()", "not allowed"),
        ("quality >= ", "cannot parse"),
        ("content_type in quality", "needs a list"),
    ],
)
def test_bad_expressions_are_clear_errors(text, message):
    with pytest.raises(ValueError, match=message):
        Expression(text, CLASSES)


def test_expression_semantics():
    df = pd.DataFrame(
        {
            "quality": [1.0, 2.6, 3.5, np.nan],
            "structured_data": [0.0, 2.0, 3.0, np.nan],
            "content_type": ["library", "test", "generated", None],
            "truncated": [False, True, False, False],
            "content_type_probs": [np.eye(9)[0], np.eye(9)[2], np.eye(9)[6], None],
        }
    )

    def ev(text):
        return Expression(text, CLASSES)(df).tolist()

    assert ev("quality >= 2.5") == [False, True, True, False]  # a failed row (NaN) never passes
    assert ev("2 <= quality < 3") == [False, True, False, False]
    assert ev("content_type in ['library', 'test']") == [True, True, False, False]
    assert ev("not truncated and quality - structured_data > 0.4") == [True, False, True, False]
    assert ev("prob_generated > 0.5 or content_type == 'library'") == [True, False, True, False]
    with pytest.raises(ValueError, match="must be a condition"):
        ev("quality + 1")


def test_unknown_language_setting_is_refused(scored, tmp_path):
    _, scores = scored
    with pytest.raises(SystemExit, match="rust"):
        run_filter(scores, tmp_path / "out", "--where-lang", "rust=quality > 1")


def test_score_then_filter_a_jsonl_corpus(tmp_path):
    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    corpus = tmp_path / "corpus"
    rows = corpus_rows("sql", 0, 30)
    rows[4]["content"] = None
    write_shard(corpus, "sql", "part-0", rows, fmt="jsonl")
    score_corpus(ckpt, corpus, tmp_path / "scores", num_workers=0, device="cpu", progress=False)
    scores = pq.read_table(tmp_path / "scores" / "sql" / "part-0.parquet").to_pandas()
    median = float(scores["quality"].median())
    assert run_filter(tmp_path / "scores", tmp_path / "out", "--where", f"quality >= {median}") == 0
    df = kept(tmp_path / "out", "sql")
    want = scores[(scores["quality"] >= median) & scores["error"].isna()]
    assert set(df["id"]) == set(want["id"]) and "sql-0-4" not in set(df["id"])
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[i]["content"] == c for i, c in zip(df["id"], df["content"], strict=True))
