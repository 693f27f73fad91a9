"""Long files scored as several windows (score.py --max-windows): the windows are slices of the file's tokens with
the head's prefix, their scores combine into one row per file by the token-weighted mean, the head-only default
is unchanged, and resume keeps working."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers_model import REPO, make_checkpoint, score_cmd, script_env, write_shard
from test_scoring import input_ids, output_ids, score

from curator.data.inputs import InputEncoder, build_tokenizer
from curator.scoring import runner
from curator.scoring.windows import combine
from curator.tasks.trained import load_trained

SAMPLE = REPO / "data" / "sample"
FUNC = "def step_{i}(state, value):\n    if value > {i}:\n        return state + value * {i}\n    return state\n\n"


def long_text(n: int, offset: int = 0) -> str:
    return "".join(FUNC.format(i=offset + i) for i in range(n))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def trained(ckpt):
    return load_trained(ckpt)


def long_corpus(root, rows: int = 30):
    """Short and long files (up to about 20 windows of 64 tokens), one empty; paths of varied length."""
    items = []
    for i in range(rows):
        n = (i * 7) % 23  # 0 to 22 functions of about 30 tokens
        items.append(
            {"id": f"f{i}", "content": long_text(n, i), "max_stars_repo_path": "a/" * (i % 4) + f"m{i}.py"}
        )
    write_shard(root, "python", "train-00000", items)
    return root


def forward(trained, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        out = trained.model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    probs = out["content_type"].softmax(-1)[0]
    return np.concatenate([[out["quality"].item(), out["structured_data"].item()], probs.numpy()])


@pytest.mark.parametrize("with_path", [False, True])
def test_windows_are_the_files_tokens_in_slices_after_the_heads_prefix(with_path):
    tokenizer = build_tokenizer("minilm")
    encoder = InputEncoder(tokenizer, 64, code_markers=True, with_path=with_path)
    texts = [long_text(12), "x = 1\n", "", long_text(40, 3)]
    paths = ["src/pkg/module.py", "a.py", None, "deep/" * 20 + "x.py"]
    heads = encoder.encode(texts, paths)
    for max_windows in (1, 3, 50):
        got = encoder.windows(texts, paths, max_windows)
        for text, path, head, wins in zip(texts, paths, heads, got, strict=True):
            assert 1 <= len(wins) <= max_windows
            assert wins[0].ids == head.ids  # the head is what encode gives
            assert all(len(w.ids) <= 64 for w in wins)
            full = tokenizer(encoder._text(f"{path or ''}\n{text}" if with_path else text, 10**9),
                             add_special_tokens=False)["input_ids"]  # fmt: skip
            line = encoder._path_ids([path])[0] if with_path else []
            assert len(line) <= encoder.room // 2
            pieces = [wins[0].ids[1:-1]]
            for w in wins[1:]:
                assert w.ids[: 1 + len(line)] == [tokenizer.cls_token_id, *line]  # the head's prefix
                assert w.ids[-1] == tokenizer.sep_token_id
                pieces.append(w.ids[1 + len(line) : -1])
            seen = [t for p in pieces for t in p]
            assert full[: len(seen)] == seen  # consecutive slices of the file's tokens, none skipped
            assert [w.weight for w in wins] == [len(p) for p in pieces]
            assert len({(w.num_tokens, w.estimated) for w in wins}) == 1
            if not wins[0].estimated:  # the tokenized stretch held the whole file
                assert wins[0].num_tokens == len(full)
            assert {w.truncated for w in wins} == {len(full) > len(seen)}
    # A short file is one window whatever the cap; a long one takes as many as it needs, no more.
    many = encoder.windows(texts, paths, 50)
    assert [len(w) for w in many][1:3] == [1, 1] and min(len(many[0]), len(many[3])) > 3
    assert not any(w[-1].truncated for w in many)
    with pytest.raises(ValueError, match="at least 1"):
        encoder.windows(texts, paths, 0)


def test_a_long_file_gets_the_token_weighted_mean_of_its_windows(trained, tmp_path):
    corpus = long_corpus(tmp_path / "corpus")
    # Small windows and budgets: a file's windows land in different batches.
    summary = score(trained, corpus, tmp_path / "out", max_windows=6, window=7, tokens_per_batch=200)
    df = pq.read_table(tmp_path / "out" / "python" / "train-00000.parquet").to_pandas()
    assert df["id"].tolist() == [f"f{i}" for i in range(30)]  # every file one row, in input order
    rows = pq.read_table(corpus / "python" / "train-00000.parquet").to_pylist()
    encoder = trained.input_encoder()
    wins = encoder.windows([r["content"] for r in rows], [r["max_stars_repo_path"] for r in rows], 6)
    assert df["windows"].tolist() == [len(w) for w in wins]
    assert df["windows"].max() == 6 and (df["windows"] == 1).any() and 1 < df["windows"].median() < 6
    assert df["truncated"].tolist() == [w[-1].truncated for w in wins]
    assert ((df["windows"] == 6) | ~df["truncated"]).all()  # tokens left over only past the cap
    assert summary.rows_scored == 30 and summary.windows == sum(map(len, wins))
    assert summary.tokens == sum(len(x.ids) for w in wins for x in w)
    assert summary.multi_window_files == sum(len(w) > 1 for w in wins)
    for i, w in enumerate(wins):
        # Each window scored alone, as a file of its own, then the documented rule by hand.
        alone = np.stack([forward(trained, x.ids) for x in w])
        weights = np.array([x.weight for x in w], dtype=float)
        want = alone[0] if len(w) == 1 else (alone * weights[:, None]).sum(0) / weights.sum()
        assert df["quality"][i] == pytest.approx(want[0], abs=1e-4)
        assert df["structured_data"][i] == pytest.approx(want[1], abs=1e-4)
        np.testing.assert_allclose(df["content_type_probs"][i], want[2:], atol=1e-4)
        assert df["content_type"][i] == trained.label_set.classes[int(np.argmax(df["content_type_probs"][i]))]
    np.testing.assert_allclose(np.stack(df["content_type_probs"]).sum(1), 1.0, atol=1e-5)
    meta = json.loads((tmp_path / "out" / "scores_meta.json").read_text())
    assert meta["max_windows"] == 6
    # The estimate, from a sample that holds every row here, is the run's cost exactly.
    est = summary.estimate
    assert est.files == est.rows == 30 and est.max_windows == 6
    assert est.window_tokens * 30 == pytest.approx(summary.tokens)
    assert est.head_tokens * 30 == pytest.approx(sum(len(w[0].ids) for w in wins))
    assert est.windows == pytest.approx(summary.windows / 30) and est.ratio > 2


def test_combine_is_the_weighted_mean_and_keeps_one_window_exact():
    one = np.array([[3.25, 1.5, 0.2, 0.8]], dtype=np.float32)
    assert combine(one, [7]) is not None and np.array_equal(combine(one, [7]), one[0])
    two = np.array([[2.0, 0.0, 1.0, 0.0], [4.0, 3.0, 0.0, 1.0]])
    np.testing.assert_allclose(combine(two, [3, 1]), [2.5, 0.75, 0.75, 0.25])


def test_head_only_default_is_unchanged(trained, tmp_path):
    corpus = long_corpus(tmp_path / "corpus")
    score(trained, corpus, tmp_path / "default", window=7, tokens_per_batch=200)
    score(trained, corpus, tmp_path / "one", window=7, tokens_per_batch=200, max_windows=1)
    score(trained, corpus, tmp_path / "many", window=7, tokens_per_batch=200, max_windows=4)
    a, b, c = (
        pq.read_table(tmp_path / d / "python" / "train-00000.parquet").to_pandas()
        for d in ("default", "one", "many")
    )
    assert a.equals(b) and (a["windows"] == 1).all()
    rows = pq.read_table(corpus / "python" / "train-00000.parquet").to_pylist()
    heads = trained.input_encoder().encode(
        [r["content"] for r in rows], [r["max_stars_repo_path"] for r in rows]
    )
    for i, h in enumerate(heads):
        assert a["quality"][i] == pytest.approx(forward(trained, h.ids)[0], abs=1e-4)
        assert a["truncated"][i] == h.truncated
    # Files of one window get the same scores with windows on; the others differ.
    short = c["windows"] == 1
    assert short.any() and (~short).any()
    assert np.array_equal(a["quality"][short], c["quality"][short])
    assert not np.allclose(a["quality"][~short], c["quality"][~short])
    assert meta_windows(tmp_path / "default") == 1


def meta_windows(out):
    return json.loads((out / "scores_meta.json").read_text())["max_windows"]


def test_resume_with_windows(trained, tmp_path, monkeypatch):
    corpus = long_corpus(tmp_path / "corpus", rows=60)
    kw = {"max_windows": 5, "window": 6, "tokens_per_batch": 150, "rows_per_part": 25, "write_every_s": 0}
    score(trained, corpus, tmp_path / "clean", **kw)
    launch = runner._launch
    calls = []

    def dies(*args):
        calls.append(1)
        if len(calls) > 12:
            raise KeyboardInterrupt("killed")
        return launch(*args)

    monkeypatch.setattr(runner, "_launch", dies)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        score(trained, corpus, out, **kw)
    monkeypatch.setattr(runner, "_launch", launch)
    written = sorted(out.glob("python/*.parts/rows-*.parquet"))
    done = sum(pq.ParquetFile(p).metadata.num_rows for p in written)
    assert 0 < done < 60  # some rows were written, each with all of its windows
    assert max(w for p in written for w in pq.read_table(p)["windows"].to_pylist()) > 1
    rerun = score(trained, corpus, out, **kw)
    assert rerun.rows_scored == 60 - done
    assert output_ids(out) == input_ids(corpus)
    # The same rows as a run that was never killed; scores to float precision (the rows met other batches).
    a, b = (
        pq.read_table(d / "python" / "train-00000.parquet").to_pandas() for d in (tmp_path / "clean", out)
    )
    scores = ["quality", "structured_data", "content_type_probs"]
    assert a.drop(columns=scores).equals(b.drop(columns=scores))
    for column in scores[:2]:
        np.testing.assert_allclose(a[column], b[column], atol=1e-5)
    np.testing.assert_allclose(
        np.stack(a["content_type_probs"]), np.stack(b["content_type_probs"]), atol=1e-5
    )
    # Another window rule in the same folder would mix two kinds of scores: refused.
    with pytest.raises(ValueError, match="max_windows"):
        score(trained, corpus, out, max_windows=2)


@pytest.mark.slow
def test_score_py_with_windows_on_the_shipped_sample(ckpt, tmp_path):
    out = tmp_path / "out"
    cmd = score_cmd(ckpt, SAMPLE, out, "--max-windows", "4", "--languages", "python", "sql")
    proc = subprocess.run(cmd, env=script_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    est = re.search(
        r"cost: about ([\d,]+) tokens .* head only, ([\d,]+) with --max-windows 4 \(([\d.]+)x", log
    )
    assert est, log
    got = re.search(r"tokens: ([\d,]+) through the model, \d+ a file; ([\d,]+) windows, ([\d.]+) a file", log)
    assert got, log
    scored, windows = (int(x.replace(",", "")) for x in (got[1], got[2]))
    frames = [pq.read_table(f).to_pandas() for f in sorted(out.glob("*/*.parquet"))]
    ids = [i for f in frames for i in f["id"]]
    want = [i for name, v in input_ids(SAMPLE).items() if name.split("/")[0] in ("python", "sql") for i in v]
    assert ids == want  # every file one row, in input order
    wins = np.concatenate([f["windows"].to_numpy() for f in frames])
    assert wins.min() >= 1 and wins.max() == 4 and wins.sum() == windows
    # The estimate from a sample of 512 files is close to what the run cost.
    assert abs(int(est[2].replace(",", "")) - scored) < 0.25 * scored
    assert float(est[3]) > 1.5
