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
            f"no corpus files{wanted} under {root}: expected <root>/<language>/*.parquet, *.jsonl or *.jsonl.gz"
        )
    return found


def read_rows(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    columns: list[str] | tuple[str, ...] | None = None,
) -> Iterator[dict]:
    """Rows start..stop-1 of one corpus file as dicts, with only `columns` where given (parquet).

    Parquet is read a record batch at a time from the row groups that overlap the range, so memory stays
    bounded however large the file's row groups are. A JSONL line that is not a JSON object becomes a row
    `{"_error": reason}` in its place, so the rows after it keep their positions.
    """
    path = str(path)
    if path.endswith(".parquet"):
        yield from _parquet_rows(path, start, stop, columns)
    else:
        yield from _jsonl_rows(path, start, stop)


def read_corpus_file(path: str | Path, columns: list[str] | None = None) -> Iterator[dict]:
    """Every row of one corpus file as a dict; a line that cannot be read is an error naming the file."""
    for row in read_rows(path, columns=columns):
        if "_error" in row:
            raise ValueError(f"{path}: {row['_error']}")
        yield {k: row.get(k) for k in columns} if columns else row


def _parquet_rows(path: str, start: int, stop: int | None, columns) -> Iterator[dict]:
    pf = pq.ParquetFile(path)
    stop = pf.metadata.num_rows if stop is None else stop
    if columns is not None:
        columns = [c for c in columns if c in pf.schema_arrow.names]
    groups, offset, first = [], 0, None
    for i in range(pf.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if offset < stop and offset + n > start:
            groups.append(i)
            first = offset if first is None else first
        offset += n
    if not groups:
        return
    pos = first
    for batch in pf.iter_batches(batch_size=1024, row_groups=groups, columns=columns):
        lo, hi = max(start - pos, 0), min(stop - pos, batch.num_rows)
        if hi > lo:
            yield from batch.slice(lo, hi - lo).to_pylist()
        pos += batch.num_rows
        if pos >= stop:
            return


def jsonl_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the non-blank lines, read as bytes so that bad UTF-8 cannot stop the reader."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                yield line_no, line


def _jsonl_rows(path: str, start: int, stop: int | None) -> Iterator[dict]:
    for i, (line_no, line) in enumerate(jsonl_lines(path)):
        if i < start:
            continue
        if stop is not None and i >= stop:
            return
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            row = {"_error": f"line {line_no} is not a JSON object: {str(e)[:200]}"}
        yield row


def iter_corpus(root: str | Path, languages: list[str] | None = None) -> Iterator[dict]:
    """Every row of a corpus root, each with its `language` added."""
    for language, path in corpus_files(root, languages):
        for row in read_corpus_file(path):
            row["language"] = language
            yield row
