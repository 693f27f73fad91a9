"""Junk rules in filter.py: the hostile corpus never passes the documented filter, whatever the model says; the
rules are counted, can be turned off, and older score folders without signals are filtered with a warning."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers_model import load_script, write_shard
from hostile_corpus import hostile_rows

from curator.data.shards import write_parquet_atomic
from curator.data.signals import SIGNAL_FIELDS, file_signals, null_signals
from curator.labels import get_label_set
from curator.scoring import junk, outputs
from curator.scoring.batching import RowInfo
from curator.scoring.filtering import select_language
from curator.scoring.sources import Shard

CLASSES = get_label_set("full").classes
# docs/scoring.md's worked example.
DOCUMENTED = "quality >= 2.5 and structured_data >= 0.5 and content_type != 'generated'"


@pytest.fixture(scope="module")
def rows():
    return hostile_rows()


@pytest.fixture(scope="module")
def signal_rows(rows):
    return [null_signals() if r.error else file_signals(r.content) for r in rows]


def write_scored(root, rows, signal_rows=None, quality=4.5, structured_data=2.5, content_type="library"):
    """A corpus of the rows and its score folder, every row scored as the model's best (the rules must not care);
    signal columns unless signal_rows is None (a folder from before the signals)."""
    corpus, scores = root / "corpus", root / "scores"
    outputs.write_meta(scores, {"content_types": list(CLASSES), "model_fingerprint": "x", "max_length": 64,
                                "corpus": str(corpus)})  # fmt: skip
    for language in sorted({r.language for r in rows}):
        picked = [i for i, r in enumerate(rows) if r.language == language]
        write_shard(corpus, language, "part-00000", [
            {"id": rows[i].id, "content": rows[i].content, "max_stars_repo_path": rows[i].path,
             "max_stars_repo_name": "hostile/corpus", "max_stars_count": 0} for i in picked
        ])  # fmt: skip
        meta = [
            RowInfo(k, rows[i].id, rows[i].path, 100, False, False, rows[i].error,
                    signals=signal_rows[i] if signal_rows is not None else null_signals())
            for k, i in enumerate(picked)
        ]  # fmt: skip
        probs = np.zeros((len(picked), len(CLASSES)), dtype=np.float32)
        probs[:, CLASSES.index(content_type)] = 1
        table = outputs.build_table(
            language,
            meta,
            np.full(len(picked), quality),
            np.full(len(picked), structured_data),
            probs,
            CLASSES,
        )
        if signal_rows is None:  # a folder scored before the signals existed
            table = table.drop_columns([f.name for f in SIGNAL_FIELDS])
        write_parquet_atomic(table, outputs.shard_path(scores, Shard(language, "part-00000", "")))
    return corpus, scores


def run_filter(scores, out, *args):
    return load_script("filter").main(["--scores", str(scores), "--out", str(out), *args])


def kept_ids(out) -> set[str]:
    return {i for f in out.glob("*/*.parquet") for i in pq.read_table(f)["id"].to_pylist()}


def test_rules_reject_every_junk_row_and_keep_the_good_files(rows, signal_rows):
    scored = [(r, s) for r, s in zip(rows, signal_rows, strict=True) if r.error is None]
    df = pd.DataFrame([s for _, s in scored])
    result = junk.apply_rules(df, np.ones(len(df), dtype=bool))
    assert result.unchecked == 0
    for k, (row, _) in enumerate(scored):
        assert result.junk[k] == row.junk, row.kind
        if row.rule:
            fails = junk.RULE_EXPRESSIONS[row.rule](df.iloc[[k]])[0]
            assert fails, f"{row.kind} should fail {row.rule}"


def test_documented_filter_keeps_no_junk_row(rows, signal_rows, tmp_path):
    _, scores = write_scored(tmp_path, rows, signal_rows)
    out = tmp_path / "out"
    assert run_filter(scores, out, "--where", DOCUMENTED) == 0
    good = {r.id for r in rows if not r.junk}
    assert kept_ids(out) == good

    report = json.loads((out / "filter_report.json").read_text())
    py = report["languages"]["python"]
    # The two rows score.py cannot score are reported as errors, not judged, never kept.
    assert py["errors"] == {"null content": 1, "binary content (NUL bytes)": 1} and py["errors_dropped"] == 2
    junk_rows = [r for r in rows if r.junk and r.error is None]
    assert report["total"]["junk_dropped"] == len(junk_rows) == 7
    for rule in {r.rule for r in junk_rows}:
        assert report["junk_rules"][rule] >= 1, rule
    assert report["junk_rules"]["generated"] == 1 and report["junk_rules"]["comment_only"] == 1
    assert (
        report["junk_rules"]["long_line"] == 1
        and report["languages"]["javascript"]["junk_rules"]["long_line"]
    )
    md = (out / "filter_report.md").read_text()
    assert "| `long_line` | `max_line_length > 1000` | 1 |" in md and "Dropped as junk: " in md

    # Without the rules, the model's scores alone keep every junk row that has text: the rules are what drop them.
    out_off = tmp_path / "off"
    assert run_filter(scores, out_off, "--where", DOCUMENTED, "--no-junk-rules", "--report-only") == 0
    off = json.loads((out_off / "filter_report.json").read_text())
    assert off["total"]["kept_files"] == len(good) + len(junk_rows) and off["total"]["junk_dropped"] == 0
    assert "Junk rules: off" in (out_off / "filter_report.md").read_text()


@pytest.mark.slow
def test_score_then_filter_keeps_no_junk_row_end_to_end(rows, tmp_path):
    """score.py (a tiny model, whatever it says) writes the signals; filter.py with the documented expression
    then keeps only the good files of the hostile corpus."""
    import subprocess
    import sys

    from helpers_model import REPO, make_checkpoint

    corpus, _ = write_scored(tmp_path / "fixture", rows, None)
    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    scores, out = tmp_path / "scores", tmp_path / "kept"
    run = subprocess.run([sys.executable, "score.py", "--model", str(ckpt), "--corpus", str(corpus), "--out",
                          str(scores), "--num-workers", "0", "--no-progress"], cwd=REPO, capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    table = pq.read_table(sorted(scores.rglob("*.parquet")))
    assert table.num_rows == len(rows) and "max_line_length" in table.column_names
    run = subprocess.run([sys.executable, "filter.py", "--scores", str(scores), "--out", str(out), "--where",
                          DOCUMENTED], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert kept_ids(out) <= {r.id for r in rows if not r.junk}


def test_signals_can_be_used_in_expressions(rows, signal_rows, tmp_path):
    _, scores = write_scored(tmp_path, rows, signal_rows)
    out = tmp_path / "out"
    where = "max_line_length <= 100 and not generated_marker and size_bytes > 7000"
    assert run_filter(scores, out, "--where", where, "--no-junk-rules") == 0
    expected = {
        r.id
        for r, s in zip(rows, signal_rows, strict=True)
        if r.error is None
        and s["max_line_length"] <= 100
        and not s["generated_marker"]
        and s["size_bytes"] > 7000
    }
    assert expected and kept_ids(out) == expected
    with pytest.raises(SystemExit, match="unknown column 'max_line'"):
        run_filter(scores, out, "--where", "max_line > 3")


def test_scores_without_signals_are_filtered_with_a_warning(rows, tmp_path, caplog):
    _, scores = write_scored(tmp_path, rows, signal_rows=None)
    out = tmp_path / "out"
    assert run_filter(scores, out, "--where", DOCUMENTED) == 0
    assert "junk rules could not judge them" in caplog.text
    report = json.loads((out / "filter_report.json").read_text())
    py = report["languages"]["python"]
    assert py["junk_dropped"] == 0 and py["junk_unchecked"] == py["files"] - py["errors_dropped"]
    assert any("score them again" in n for n in py["notes"])
    assert "unchecked" in (out / "filter_report.md").read_text()
    # A signal in the expression cannot be answered from such a folder: a clear error, not an empty result.
    with pytest.raises(SystemExit, match="no signal columns"):
        run_filter(scores, tmp_path / "out2", "--where", "max_line_length < 1000")


def test_regression_outputs_are_read_clipped_to_their_scales(rows, signal_rows, tmp_path):
    good = [(r, s) for r, s in zip(rows, signal_rows, strict=True) if not r.junk]
    _, scores = write_scored(
        tmp_path, [r for r, _ in good], [s for _, s in good], quality=6.3, structured_data=-0.66
    )
    result = select_language(
        scores, "python", list(CLASSES), "structured_data >= 0 and quality <= 5", {}, None
    )
    df = result.scores
    assert df["quality"].max() == 5 and df["structured_data"].min() == 0
    assert df["kept"].all() and len(df) == sum(r.language == "python" for r, _ in good)
    # The score files keep the raw output.
    raw = pq.read_table(scores / "python" / "part-00000.parquet")["quality"].to_pylist()
    assert raw[0] == pytest.approx(6.3)


def test_docs_list_every_rule_with_its_threshold():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "scoring.md").read_text()
    for rule in junk.RULES:
        assert f"| `{rule.name}` | `{rule.junk_if}` |" in docs, rule.name
