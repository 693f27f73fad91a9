"""Sampling: seeded reservoir sample per language, filters, the corpus layout out, the Hub path and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.data import corpus, sampling

ROOT = Path(__file__).resolve().parents[1]


def _row(i: int, content, repo: str = "r") -> dict:
    return {
        "id": f"f{i}",
        "content": content,
        "max_stars_repo_path": f"src/f{i}.x",
        "max_stars_repo_name": f"{repo}/{i % 7}",
        "max_stars_count": i,
    }


def make_corpus(root: Path, n: int = 60) -> Path:
    """Two languages, parquet and JSONL; each with tiny, huge, duplicate and binary files mixed in."""
    for lang in ("python", "go"):
        rows = [_row(i, f"# {lang} file {i}\n" + "x = 1\n" * (20 + i)) for i in range(n)]
        rows += [_row(1000, "x"), _row(1001, "y" * 200_000), _row(1002, rows[0]["content"])]
        rows += [_row(1003, "ok\x00binary" * 50)]
        table = pa.Table.from_pylist(rows[: n // 2])
        (root / lang).mkdir(parents=True)
        pq.write_table(table, root / lang / "a.parquet")
        with open(root / lang / "b.jsonl", "w") as fh:
            for r in rows[n // 2 :]:
                fh.write(json.dumps(r) + "\n")
    # Invalid UTF-8 bytes in a binary parquet column.
    pq.write_table(
        pa.Table.from_pylist([{**_row(2000, None), "content": b"\xff\xfe" * 100}]),
        root / "python" / "c.parquet",
    )
    return root


def test_reservoir_sample_filters_and_is_reproducible(tmp_path):
    src = make_corpus(tmp_path / "src")
    cfg = sampling.SampleConfig(n_per_language=10, languages=("python", "go"), seed=3)
    stats = sampling.sample_corpus(src, tmp_path / "a", cfg)
    assert stats["python"] == {
        "scanned": 65,
        "kept_candidates": 60,
        "not_utf8": 2,
        "too_small": 1,
        "too_large": 1,
        "duplicate": 1,
        "sampled": 10,
    }
    rows = list(corpus.iter_corpus(tmp_path / "a"))
    assert len(rows) == 20 and {r["language"] for r in rows} == {"python", "go"}
    assert all(100 <= len(r["content"].encode()) <= 100_000 and "\x00" not in r["content"] for r in rows)
    assert len({r["content"] for r in rows if r["language"] == "go"}) == 10  # no duplicates
    assert set(rows[0]) >= set(corpus.CORPUS_COLUMNS)
    # Same seed, same sample; another seed, another sample.
    sampling.sample_corpus(src, tmp_path / "b", cfg)
    assert [r["id"] for r in corpus.iter_corpus(tmp_path / "b")] == [r["id"] for r in rows]
    sampling.sample_corpus(src, tmp_path / "c", sampling.SampleConfig(10, ("python", "go"), seed=4))
    assert [r["id"] for r in corpus.iter_corpus(tmp_path / "c")] != [r["id"] for r in rows]
    record = json.loads((tmp_path / "a" / "sample.json").read_text())
    assert record["config"]["seed"] == 3 and record["languages"]["go"]["sampled"] == 10


def test_reservoir_is_uniform_enough():
    # Every position of the stream should be about equally likely to be picked.
    hits = [0] * 20
    cfg = sampling.SampleConfig(n_per_language=5, min_bytes=0)
    for seed in range(400):
        cfg.seed = seed
        sample, _ = sampling.reservoir_sample(({"id": i, "content": f"c{i}"} for i in range(20)), cfg, "go")
        for r in sample:
            hits[int(r["id"])] += 1
    assert min(hits) > 60 and max(hits) < 140  # expected 100 each


def test_hub_path_streams_with_seeded_shuffle(tmp_path, monkeypatch):
    calls = {}

    class FakeStream:
        def __init__(self, rows):
            self.rows = rows

        def shuffle(self, seed, buffer_size):
            calls["shuffle"] = (seed, buffer_size)
            return self

        def __iter__(self):
            return iter(self.rows)

    def fake_load_dataset(name, data_dir, split, streaming):
        calls["load"] = (name, data_dir, split, streaming)
        return FakeStream([_row(i, "print('hello world')\n" * 10 + str(i)) for i in range(50)])

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = sampling.SampleConfig(n_per_language=4, languages=("rust",), seed=7, max_scan=20, shuffle_buffer=99)
    stats = sampling.sample_corpus("hub", tmp_path / "out", cfg)
    assert calls["load"] == ("bigcode/starcoderdata", "rust", "train", True)
    assert calls["shuffle"] == (7, 99)
    assert stats["rust"]["scanned"] == 20 and stats["rust"]["sampled"] == 4


def test_sample_cli(tmp_path):
    # As a user runs it: a subprocess on a local corpus in StarCoderData's layout.
    src = make_corpus(tmp_path / "src")
    cmd = [sys.executable, "sample.py", "--source", str(src), "--out", str(tmp_path / "o"), "--n", "5",
           "--languages", "go"]  # fmt: skip
    run = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert run.returncode == 0, run.stderr
    assert "sampled" in run.stdout
    assert len(list(corpus.iter_corpus(tmp_path / "o"))) == 5
    # Seeded: the same command into another folder picks the same files.
    cmd[cmd.index(str(tmp_path / "o"))] = str(tmp_path / "o2")
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    ids = [[r["id"] for r in corpus.iter_corpus(tmp_path / d)] for d in ("o", "o2")]
    assert ids[0] == ids[1]


@pytest.mark.skipif(not (ROOT / "data" / "sample").is_dir(), reason="the shipped sample is not there yet")
def test_sample_from_shipped_sample(tmp_path):
    langs = tuple(p.name for p in sorted((ROOT / "data" / "sample").iterdir()) if p.is_dir())[:2]
    cfg = sampling.SampleConfig(n_per_language=5, languages=langs, seed=0)
    stats = sampling.sample_corpus(ROOT / "data" / "sample", tmp_path / "o", cfg)
    assert all(s["sampled"] > 0 for s in stats.values())


def test_a_corpus_line_that_is_not_json_is_an_error_naming_the_file_and_line(tmp_path):
    f = tmp_path / "python" / "part.jsonl"
    f.parent.mkdir()
    f.write_text('{"id": "a", "content": "x = 1"}\n\n{"id": "b", "content": \n')
    with pytest.raises(ValueError, match=r"part\.jsonl: line 3 is not a JSON object"):
        list(corpus.iter_corpus(tmp_path))
    # The scorer's reader keeps the row in its place with the reason instead.
    rows = list(corpus.read_rows(f))
    assert rows[0]["id"] == "a" and rows[1]["_error"].startswith("line 3 ")
