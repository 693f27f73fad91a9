"""Reading a corpus: a file a row (StarCoderData) or a repository a row (The Stack v3), always as files.

Two layouts are read, and every stage sees both the same way, as rows of `CORPUS_COLUMNS` with a language:

- `starcoderdata`: `<root>/<language>/*.parquet` (or `*.jsonl`, `*.jsonl.gz`), a row per file with `id`,
  `content`, `max_stars_repo_path`, `max_stars_repo_name`, `max_stars_count`; the language is the name of the
  folder the file lies in.
- `stack-v3`: `<root>/*.parquet` or `<root>/<any folder>/*.parquet`, a row per repository (`repo_path`,
  `github_metadata.stars`, ...) with its files inline in `files`, a list of structs with `file_path`,
  `content` and `language` (GitHub Linguist's name, e.g. `Python`, `Go Module`). Repositories are flattened
  into files: the language of a file is its Linguist name in lower case with spaces as dashes (`python`,
  `go-module`), so `--languages python go` means what it means for StarCoderData.

The layout is given (`open_corpus(root, "stack-v3")`, the entry points' `--corpus-format`) or read from the
parquet schemas (`auto`): a file with a `files` list column holds repositories, any other holds files. A root
with both kinds, or a file with both a `files` and a `content` column, is refused with an error naming the
flag: a wrong guess would score every row as an error, or none of the files.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

CORPUS_COLUMNS = ("id", "content", "max_stars_repo_path", "max_stars_repo_name", "max_stars_count")
CORPUS_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")
STARCODERDATA, STACK_V3, AUTO = "starcoderdata", "stack-v3", "auto"
CORPUS_FORMATS = (STARCODERDATA, STACK_V3)
FORMAT_FLAG = "--corpus-format"
FORMAT_HELP = (
    "the corpus layout: starcoderdata (a row per file, <root>/<language>/*.parquet|*.jsonl), stack-v3 (a row "
    "per repository with its files inline, <root>/[<folder>/]*.parquet; flattened into files), or auto (read "
    "from the parquet schemas; a root with both kinds is refused)"
)
REPO_COLUMNS = ("repo_path", "github_metadata", "files")  # what flattening reads of a repository row


def _is_corpus_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(CORPUS_SUFFIXES)


@dataclass(frozen=True)
class Corpus(os.PathLike):
    """A corpus root with its layout. It is a path (`os.fspath`, `str`, `Path(corpus)` give the root), so it
    goes through code that takes a root unchanged, and the readers below keep its layout."""

    root: Path
    format: str

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)


def open_corpus(root: str | Path | Corpus, corpus_format: str = AUTO) -> Corpus:
    """The corpus at `root` with its layout: `corpus_format` if given, else what its parquet schemas say."""
    if isinstance(root, Corpus):
        return root if corpus_format in (AUTO, root.format) else Corpus(root.root, corpus_format)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus root {root} is not a directory")
    if corpus_format == AUTO:
        corpus_format = detect_format(root)
    elif corpus_format not in CORPUS_FORMATS:
        raise ValueError(f"unknown corpus format {corpus_format!r}: {FORMAT_FLAG} {'|'.join(CORPUS_FORMATS)}")
    return Corpus(root, corpus_format)


def _candidate_files(root: Path) -> list[Path]:
    # Files at the root and one folder down: StarCoderData's language folders, The Stack v3's data/.
    found = [p for p in root.iterdir() if _is_corpus_file(p)]
    for sub in root.iterdir():
        if sub.is_dir():
            found += [p for p in sub.iterdir() if _is_corpus_file(p)]
    return sorted(found)


def _file_format(path: Path) -> str:
    """What one file holds, from its parquet schema (footer only); JSONL is read as StarCoderData."""
    if not path.name.endswith(".parquet"):
        return STARCODERDATA
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except Exception:  # an unreadable file is no evidence either way; its reader reports it in its turn
        return STARCODERDATA
    if "files" in names and "content" in names:
        raise ValueError(
            f"{path} has both a 'files' and a 'content' column: cannot tell files from repositories; "
            f"pass {FORMAT_FLAG} {'|'.join(CORPUS_FORMATS)}"
        )
    return STACK_V3 if "files" in names else STARCODERDATA


def detect_format(root: Path) -> str:
    """The layout of a corpus root, from every parquet footer under it; an error naming the flag if mixed."""
    kinds: dict[str, Path] = {}
    for path in _candidate_files(root):
        kinds.setdefault(_file_format(path), path)
    if len(kinds) > 1:
        examples = ", ".join(f"{k}: {p}" for k, p in sorted(kinds.items()))
        raise ValueError(
            f"{root} holds both file rows and repository rows ({examples}); pass {FORMAT_FLAG} "
            f"{'|'.join(CORPUS_FORMATS)}"
        )
    # Nothing found: the StarCoderData reader says what it expected.
    return next(iter(kinds), STARCODERDATA)


def stack_language(name: str | None) -> str | None:
    """A Linguist language name as a corpus language: `Python` -> `python`, `Go Module` -> `go-module`."""
    return name.strip().lower().replace(" ", "-") if name else None


def _language_leaf(pf: pq.ParquetFile) -> str:
    # The leaf's name depends on the writer: files.list.element.language, or files.list.item.language.
    for i in range(len(pf.schema)):
        path = pf.schema.column(i).path
        if path.startswith("files.") and path.endswith(".language"):
            return path
    raise ValueError("no files[].language field: not The Stack v3's layout")


@functools.lru_cache(maxsize=64)
def _repo_languages(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(repository row of each file, language code of each file, language names) of a Stack v3 file, read from
    its language column alone (no content). Cached per file version: listing, counting and reading a shard
    all need it."""
    pf = pq.ParquetFile(path)
    column = pf.read(columns=[_language_leaf(pf)]).column("files").combine_chunks()
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    repo_of_file = np.repeat(np.arange(len(lengths)), lengths)
    names = [stack_language(x) for x in column.flatten().field("language").to_pylist()]
    vocab = sorted({n for n in names if n})
    code = {n: i for i, n in enumerate(vocab)}
    codes = np.array([code.get(n, -1) for n in names], dtype=np.int32)
    return repo_of_file, codes, vocab


def _languages_of(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return _repo_languages(str(path), path.stat().st_mtime_ns)


def stack_file_count(path: str | Path, language: str) -> int:
    """Files of `language` in one Stack v3 file: the rows of its shard for that language."""
    _, codes, vocab = _languages_of(Path(path))
    return int((codes == vocab.index(language)).sum()) if language in vocab else 0


def corpus_files(root: str | Path | Corpus, languages: list[str] | None = None) -> list[tuple[str, Path]]:
    """(language, file) pairs of a corpus root, sorted so that every reader sees the same order.

    For The Stack v3 a file appears once for every language it holds files of (that pair is the files of that
    language, flattened from its repositories, in repository order then list order; see `read_language_rows`).
    """
    corpus = open_corpus(root)
    if corpus.format == STACK_V3:
        return _stack_files(corpus.root, languages)
    root = corpus.root
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


def _stack_files(root: Path, languages: list[str] | None) -> list[tuple[str, Path]]:
    files = [p for p in _candidate_files(root) if p.name.endswith(".parquet")]
    found = sorted(
        (lang, p) for p in files for lang in _languages_of(p)[2] if languages is None or lang in languages
    )
    if not found:
        wanted = f" for languages {languages}" if languages else ""
        raise FileNotFoundError(f"no files{wanted} in the repositories of {root} (read as {STACK_V3})")
    return found


def read_language_rows(
    path: str | Path, language: str, start: int = 0, stop: int | None = None
) -> Iterator[dict]:
    """Files start..stop-1 of `language` in one Stack v3 file, as corpus rows (`CORPUS_COLUMNS`).

    Positions count only that language's files, in repository order then list order, so they are stable: a
    part of a shard reads just the repositories that hold its files. `id` is `<repo_path>/<file_path>`
    (unique in a snapshot, unlike content_id, which repeats across repositories that share a file).
    """
    path = Path(path)
    repo_of_file, codes, vocab = _languages_of(path)
    if language not in vocab:
        return
    mine = np.flatnonzero(codes == vocab.index(language))  # flat file index of each of its files
    stop = len(mine) if stop is None else min(stop, len(mine))
    if start >= stop:
        return
    wanted = mine[start:stop]
    first_repo, last_repo = int(repo_of_file[wanted[0]]), int(repo_of_file[wanted[-1]])
    # Flat index of the first file of first_repo: positions inside the repositories read below follow from it.
    flat = int(np.searchsorted(repo_of_file, first_repo))
    want = set(wanted.tolist())
    for repo in _parquet_rows(str(path), first_repo, last_repo + 1, list(REPO_COLUMNS)):
        meta = repo.get("github_metadata") or {}
        for f in repo.get("files") or []:
            if flat in want:
                yield {
                    "id": f"{repo.get('repo_path')}/{f.get('file_path')}",
                    "content": f.get("content"),
                    "max_stars_repo_path": f.get("file_path"),
                    "max_stars_repo_name": repo.get("repo_path"),
                    "max_stars_count": meta.get("stars"),
                }
            flat += 1


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


def iter_language(root: str | Path | Corpus, language: str) -> Iterator[dict]:
    """Every row of one language of a corpus root, whatever its layout."""
    corpus = open_corpus(root)
    for _, path in corpus_files(corpus, [language]):
        if corpus.format == STACK_V3:
            yield from read_language_rows(path, language)
        else:
            yield from read_corpus_file(path)


def iter_corpus(root: str | Path | Corpus, languages: list[str] | None = None) -> Iterator[dict]:
    """Every row of a corpus root, each with its `language` added, languages in sorted order."""
    corpus = open_corpus(root)
    for language in sorted({lang for lang, _ in corpus_files(corpus, languages)}):
        for row in iter_language(corpus, language):
            row["language"] = language
            yield row
