"""Labeled shards: the contract between labeling and training.

A labeled shard is a parquet file with a row per file: `id`, `language`, `repo`, `path`, `content`,
`quality` (1-5), `structured_data` (0-3), `content_type` (a full label-set name), `labeler`, `split`.
Extra columns (such as a labeler's reasons) are allowed and carried along.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curator.files import write_atomic

LABELED_COLUMNS = (
    "id",
    "language",
    "repo",
    "path",
    "content",
    "quality",
    "structured_data",
    "content_type",
    "labeler",
    "split",
)
# The column types every labeler writes; a labeler may append columns of its own (e.g. its reasons).
LABELED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("language", pa.string()),
        ("repo", pa.string()),
        ("path", pa.string()),
        ("content", pa.string()),
        ("quality", pa.int64()),
        ("structured_data", pa.int64()),
        ("content_type", pa.string()),
        ("labeler", pa.string()),
        ("split", pa.string()),
    ]
)
assert tuple(LABELED_SCHEMA.names) == LABELED_COLUMNS
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def split_for_repo(repo: str, fractions: dict[str, float] = DEFAULT_SPLIT_FRACTIONS, salt: str = "") -> str:
    """The split a repository belongs to, from a stable hash of its name.

    Every file of a repository lands in the same split, so no repository straddles train and test, and the
    assignment does not change when files are added or the order of rows changes.
    """
    digest = hashlib.sha1(f"{salt}{repo}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split in SPLITS:
        edge += fractions.get(split, 0.0)
        if u < edge:
            return split
    return SPLITS[-1]


def check_labeled_table(table: pa.Table | pa.Schema, where: str = "table") -> None:
    """Raise a clear error if a table (or a file's schema) lacks a column of the labeled-shard contract."""
    names = table.names if isinstance(table, pa.Schema) else table.column_names
    missing = [c for c in LABELED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{where} is not a labeled shard: missing columns {missing}")


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write to a temporary name beside the target, then rename: a reader never sees half a file."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def labeled_files(root: str | Path, split: str | None = None) -> list[Path]:
    """Labeled shard files under a folder: `<root>/<split>/*.parquet` if split folders exist, else all."""
    root = Path(root)
    if root.is_file():
        return [root]
    if split is not None and (root / split).is_dir():
        root = root / split
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no labeled shards (*.parquet) under {root}")
    return files
