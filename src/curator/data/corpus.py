"""Reading a corpus in the StarCoderData layout: `<root>/<language>/*.parquet` (or `*.jsonl`, `*.jsonl.gz`).

Each row has `id`, `content`, `max_stars_repo_path`, `max_stars_repo_name`, `max_stars_count`; the language is
the name of the folder the file lies in.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

CORPUS_COLUMNS = ("id", "content", "max_stars_repo_path", "max_stars_repo_name", "max_stars_count")
CORPUS_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")


def _is_corpus_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(CORPUS_SUFFIXES)


def corpus_files(root: str | Path, languages: list[str] | None = None) -> list[tuple[str, Path]]:
    """(language, file) pairs of a corpus root, sorted so that every reader sees the same order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus root {root} is not a directory")
    found = []
    for lang_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if languages is not None and lang_dir.name not in languages:
            continue
        found += [(lang_dir.name, f) for f in sorted(lang_dir.iterdir()) if _is_corpus_file(f)]
    if not found:
        wanted = f" for languages {languages}" if languages else ""
        raise FileNotFoundError(
            f"no corpus files{wanted} under {root}: expected <root>/<language>/*.parquet or *.jsonl"
        )
    return found


def read_corpus_file(path: str | Path, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of one corpus file as dicts (parquet read a row group at a time, JSONL a line at a time)."""
    path = Path(path)
    if path.name.endswith(".parquet"):
        pf = pq.ParquetFile(path)
        for i in range(pf.num_row_groups):
            yield from pf.read_row_group(i, columns=columns).to_pylist()
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON: {e}") from e
            yield {k: row.get(k) for k in columns} if columns else row


def iter_corpus(root: str | Path, languages: list[str] | None = None) -> Iterator[dict]:
    """Every row of a corpus root, each with its `language` added."""
    for language, path in corpus_files(root, languages):
        for row in read_corpus_file(path):
            row["language"] = language
            yield row
