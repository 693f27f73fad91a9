"""Input shards of a corpus to score: local corpus files (StarCoderData or The Stack v3 layout, see
`curator.data.corpus`), or `bigcode/starcoderdata` on the Hub.

A shard is one input file; in The Stack v3's layout, one input file and one language (its files of that
language, flattened from its repositories, at stable positions). It is the unit of output (one score file per shard), of resumption (a shard is done
when its score file holds as many rows as the input) and of assignment to ranks. Rows are read by position
range, so a large shard can be scored in parts.

Readers never raise on a bad row: a line that is not JSON comes out as a row with `_error` set, so that every
input row gets an output row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from curator.data.corpus import (
    STACK_V3,
    STARCODERDATA,
    Corpus,
    corpus_files,
    jsonl_lines,
    open_corpus,
    read_language_rows,
    read_rows,
    stack_file_count,
)

HF_PREFIX = "hf://"
READ_COLUMNS = ("id", "content", "max_stars_repo_path")
_SUFFIXES = (".jsonl.gz", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Shard:
    language: str
    stem: str  # the input file name without its suffix: the output is <out>/<language>/<stem>.parquet
    uri: str  # a local path, or hf://datasets/<repo>/<file> for a Hub file
    format: str = STARCODERDATA  # the layout of the file (curator.data.corpus.CORPUS_FORMATS)


def _stem(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_shards(corpus: str | Path | Corpus, languages: list[str] | None = None) -> list[Shard]:
    """Every shard of a corpus, sorted, so that every rank of every run sees the same list.

    `corpus` is a local folder (`<root>/<language>/*.parquet|*.jsonl|*.jsonl.gz`) or `hf://<owner>/<dataset>`,
    e.g. `hf://bigcode/starcoderdata`, whose parquet files are read by streaming. A local root's layout is its
    `Corpus.format`, or read from its files (`curator.data.corpus.open_corpus`).
    """
    if str(corpus).startswith(HF_PREFIX):
        shards = _list_hub_shards(str(corpus)[len(HF_PREFIX) :], languages)
    else:
        local = open_corpus(corpus)
        shards = [
            Shard(lang, _stem(p.name), str(p), local.format) for lang, p in corpus_files(local, languages)
        ]
    seen: dict[tuple[str, str], str] = {}
    for s in shards:
        other = seen.setdefault((s.language, s.stem), s.uri)
        if other != s.uri:
            raise ValueError(f"{other} and {s.uri} would both be scored into {s.language}/{s.stem}.parquet")
    return sorted(shards, key=lambda s: (s.language, s.stem))


def _list_hub_shards(repo: str, languages: list[str] | None) -> list[Shard]:
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    root = f"datasets/{repo.strip('/')}"
    if languages is None:
        languages = [p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if fs.isdir(p)]
    shards = []
    for lang in languages:
        files = sorted(fs.glob(f"{root}/{lang}/*.parquet"))
        if not files:
            raise FileNotFoundError(f"no parquet files under hf://{root}/{lang}")
        shards += [Shard(lang, _stem(f.rsplit("/", 1)[-1]), f"{HF_PREFIX}{f}") for f in files]
    return shards


def num_rows(shard: Shard) -> int:
    """Rows in a shard: parquet footers (local or remote) are read, JSONL files are counted line by line."""
    if shard.uri.startswith(HF_PREFIX):
        from huggingface_hub import HfFileSystem

        with HfFileSystem().open(shard.uri[len(HF_PREFIX) :], "rb") as fh:
            return pq.ParquetFile(fh).metadata.num_rows
    if shard.format == STACK_V3:
        return stack_file_count(shard.uri, shard.language)
    if shard.uri.endswith(".parquet"):
        return pq.ParquetFile(shard.uri).metadata.num_rows
    return sum(1 for _ in jsonl_lines(shard.uri))


def iter_rows(
    shard: Shard, start: int = 0, stop: int | None = None, columns: tuple[str, ...] = READ_COLUMNS
) -> Iterator[dict]:
    """Rows start..stop-1 of a shard as dicts with the keys `columns` (None where a row lacks one), and
    `_error` on a row that could not be read."""
    if shard.uri.startswith(HF_PREFIX):
        rows = _hub_rows(shard.uri[len(HF_PREFIX) :], start, stop)
    elif shard.format == STACK_V3:
        rows = read_language_rows(shard.uri, shard.language, start, stop)
    else:
        rows = read_rows(shard.uri, start, stop, columns)
    for row in rows:
        yield {k: row.get(k) for k in columns} | ({"_error": row["_error"]} if "_error" in row else {})


def _hub_rows(path: str, start: int, stop: int | None) -> Iterator[dict]:
    # path: datasets/<owner>/<name>/<language>/<file>.parquet; datasets streams the one file.
    from datasets import load_dataset

    _, owner, name, rel = path.split("/", 3)
    ds = load_dataset(f"{owner}/{name}", data_files=[rel], split="train", streaming=True)
    ds = ds.skip(start)
    if stop is not None:
        ds = ds.take(stop - start)
    yield from ds
