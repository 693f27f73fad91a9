"""The Stack v3 layout (a row per repository, files inline) read as files by sample, label, score and filter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_model import make_checkpoint
from stack_v3_fixture import SAMPLE, make_stack_v3

from curator.data.corpus import STACK_V3, STARCODERDATA, iter_corpus, open_corpus
from curator.scoring.sources import iter_rows, list_shards, num_rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack_v3")
    return root, make_stack_v3(root)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def _run(*args, timeout=300):
    proc = subprocess.run(
        [sys.executable, *map(str, args)], env=_env(), capture_output=True, text=True, timeout=timeout
    )
    return proc


def test_repositories_flatten_into_the_files_they_were_built_from(stack):
    root, rows = stack
    corpus = open_corpus(root)
    assert corpus.format == STACK_V3
    got = {(r["language"], r["id"]): r for r in iter_corpus(corpus)}
    want = {(r["language"], f"{r['max_stars_repo_name']}/{r['max_stars_repo_path']}"): r for r in rows}
    # Every sample file once, with its content, path, repository and stars; plus the README of each repository.
    assert {k for k in got if k[0] != "markdown"} == set(want)
    for key, row in want.items():
        for column in ("content", "max_stars_repo_path", "max_stars_repo_name", "max_stars_count"):
            assert got[key][column] == row[column], (key, column)
    assert Counter(lang for lang, _ in got)["markdown"] == len({r["max_stars_repo_name"] for r in rows})


def test_shard_rows_have_stable_positions(stack):
    root, rows = stack
    shards = list_shards(root)
    assert {s.format for s in shards} == {STACK_V3}
    # Languages spread over both files, so both appear for a language and each is a shard of its own.
    assert len([s for s in shards if s.language == "python"]) == 2
    total = Counter()
    for shard in shards:
        n = num_rows(shard)
        whole = list(iter_rows(shard))
        assert len(whole) == n
        total[shard.language] += n
        # Any cut into parts gives back the same rows at the same positions (what resuming a part relies on).
        for step in (1, 2, 5):
            parts = [r for start in range(0, n, step) for r in iter_rows(shard, start, min(start + step, n))]
            assert parts == whole
        assert list(iter_rows(shard, n, n + 3)) == []
    assert {k: v for k, v in total.items() if k != "markdown"} == Counter(r["language"] for r in rows)


def test_auto_never_guesses_a_mixed_root(stack, tmp_path):
    root, _ = stack
    assert open_corpus(SAMPLE).format == STARCODERDATA
    mixed = tmp_path / "mixed"
    shutil.copytree(root, mixed)
    shutil.copytree(SAMPLE / "go", mixed / "go")
    with pytest.raises(ValueError, match="--corpus-format"):
        open_corpus(mixed)
    both = tmp_path / "both" / "python"
    both.mkdir(parents=True)
    pq.write_table(pa.table({"content": ["x"], "files": [[{"content": "y"}]]}), both / "a.parquet")
    with pytest.raises(ValueError, match="--corpus-format"):
        open_corpus(both.parent)
    # The entry points say it in one line and exit 2.
    proc = _run(REPO / "label.py", mixed, "--out", tmp_path / "labels", "--labeler", "heuristic")
    assert proc.returncode == 2 and "--corpus-format" in proc.stderr
    assert not (tmp_path / "labels").exists()


def test_a_flag_reads_a_root_as_given(stack):
    root, _ = stack
    # Read as StarCoderData, The Stack's data/ folder would be a language "data" whose rows have no content.
    shards = list_shards(open_corpus(root, STARCODERDATA))
    assert {s.language for s in shards} == {"data"}
    assert all(r["content"] is None for r in iter_rows(shards[0]))


@pytest.mark.slow
def test_sample_label_score_and_filter_read_the_stack_v3_layout(stack, tmp_path):
    root, rows = stack
    per_lang = Counter(r["language"] for r in rows)

    sampled = tmp_path / "sampled"
    proc = _run(REPO / "sample.py", "--source", root, "--out", sampled, "--n", 5, "--languages", "python", "go",
                "--min-bytes", 1)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = list(iter_corpus(sampled))
    assert Counter(r["language"] for r in got) == {"python": 5, "go": 5}
    ids = {f"{r['max_stars_repo_name']}/{r['max_stars_repo_path']}" for r in rows}
    assert {r["id"] for r in got} <= ids

    labeled = tmp_path / "labeled"
    proc = _run(REPO / "label.py", root, "--out", labeled, "--labeler", "heuristic", "--corpus-format", "stack-v3",
                "--languages", "python", "sql")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    labels = pa.concat_tables([pq.read_table(p) for p in sorted(labeled.glob("*/*.parquet"))]).to_pylist()
    assert Counter(r["language"] for r in labels) == {"python": per_lang["python"], "sql": per_lang["sql"]}
    assert {r["repo"] for r in labels} <= {r["max_stars_repo_name"] for r in rows}

    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    scores = tmp_path / "scores"
    cmd = [REPO / "score.py", "--model", ckpt, "--corpus", root, "--out", scores, "--num-workers", 0,
           "--device", "cpu", "--no-progress", "--rows-per-part", 4, "--languages", "python", "rust", "markdown"]  # fmt: skip
    proc = _run(*cmd)
    assert proc.returncode == 0, proc.stderr
    for language in ("python", "rust", "markdown"):
        table = pa.concat_tables([pq.read_table(p) for p in sorted((scores / language).glob("*.parquet"))])
        want = [r["id"] for r in iter_corpus(root, [language])]
        assert table.column("id").to_pylist() == want  # every file once, in flattened order
        assert table.column("error").null_count == table.num_rows
    # A re-run finds every shard done and scores nothing.
    proc = _run(*cmd)
    assert proc.returncode == 0 and " 0 files scored" in proc.stderr, proc.stderr

    kept = tmp_path / "kept"
    proc = _run(REPO / "filter.py", "--scores", scores, "--out", kept, "--where", "quality > -100",
                "--no-junk-rules", "--languages", "python")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pa.concat_tables([pq.read_table(p) for p in sorted((kept / "python").glob("*.parquet"))])
    assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in iter_corpus(root, ["python"]))
