"""Score files: their schema, where they go, and when a shard counts as done.

Layout: `<out>/<language>/<input stem>.parquet`, a row per input row in input order, plus `<out>/scores_meta.json`.
Rows are written as they are scored, in parts, `<out>/<language>/<stem>.parts/rows-<start>-<stop>.parquet`: a
part is written when its rows are done, or when it has been open for a while (so that a kill loses minutes of
work, not a shard's worth). Once the parts cover every row they become the shard's file and are removed. A
resumed run scores only the rows that no complete part covers. Every file is written to a temporary name and renamed,
so a file that exists is whole; a file counts as done only if its parquet footer says it holds the expected
number of rows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator.data.shards import write_parquet_atomic
from curator.data.signals import SIGNAL_FIELDS
from curator.files import write_atomic
from curator.scoring.sources import Shard

FORMAT_VERSION = 1
META_NAME = "scores_meta.json"
CONTENT_TYPES_KEY = b"curator.content_types"

SCORE_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("language", pa.string()),
    pa.field("path", pa.string()),
    pa.field("quality", pa.float32()),
    pa.field("structured_data", pa.float32()),
    pa.field("content_type", pa.string()),
    pa.field("content_type_probs", pa.list_(pa.float32())),
    pa.field("num_tokens", pa.int64()),
    pa.field("num_tokens_estimated", pa.bool_()),
    pa.field("truncated", pa.bool_()),
    pa.field("windows", pa.int32()),
    pa.field("error", pa.string()),
]
SCORE_COLUMNS = [f.name for f in SCORE_FIELDS]
# Every score row also carries its file's junk signals (curator.data.signals), for filter.py's rules.
ALL_FIELDS = SCORE_FIELDS + SIGNAL_FIELDS


def score_schema(classes: tuple[str, ...]) -> pa.Schema:
    # The class order of content_type_probs travels with every file, so a file read alone is interpretable.
    return pa.schema(ALL_FIELDS, metadata={CONTENT_TYPES_KEY: json.dumps(list(classes)).encode()})


def content_types_of(schema: pa.Schema) -> list[str]:
    return json.loads(schema.metadata[CONTENT_TYPES_KEY])


def shard_path(out: Path, shard: Shard) -> Path:
    return out / shard.language / f"{shard.stem}.parquet"


def parts_dir(out: Path, shard: Shard) -> Path:
    return out / shard.language / f"{shard.stem}.parts"


def part_path(out: Path, shard: Shard, start: int, stop: int) -> Path:
    # The row range is in the name, so parts of a run with another --rows-per-part are never mistaken for these.
    return parts_dir(out, shard) / f"rows-{start:012d}-{stop:012d}.parquet"


def is_complete(path: Path, expected_rows: int) -> bool:
    """The file exists, has a readable footer and holds exactly the expected rows."""
    try:
        return pq.ParquetFile(path).metadata.num_rows == expected_rows
    except (OSError, pa.ArrowException):  # missing, or not a whole parquet file
        return False


def remove_leftovers(out: Path, shard: Shard) -> None:
    """Temporary files a killed run left behind for this shard (only its owner rank calls this)."""
    folder = out / shard.language
    for tmp in folder.glob(f".{shard.stem}.parquet.tmp-*"):
        tmp.unlink(missing_ok=True)
    if parts_dir(out, shard).is_dir():
        for tmp in parts_dir(out, shard).glob(".rows-*.tmp-*"):
            tmp.unlink(missing_ok=True)


def build_table(
    language: str,
    rows: list,
    quality: np.ndarray,
    structured_data: np.ndarray,
    probs: np.ndarray,
    classes: tuple[str, ...],
) -> pa.Table:
    """A score table from the rows (`curator.scoring.batching.RowInfo`, in row order, one per file) and model
    outputs (of a file scored in several windows, their combination).

    Rows with an error carry nulls for every score.
    """
    ids = [r.id for r in rows]
    paths = [r.path for r in rows]
    num_tokens = [r.num_tokens for r in rows]
    estimated = [r.estimated for r in rows]
    truncated = [r.truncated for r in rows]
    windows = [r.windows for r in rows]
    errors = [r.error for r in rows]
    ok = np.array([e is None for e in errors], dtype=bool)
    n, c = len(ids), len(classes)
    names = np.asarray(classes, dtype=object)[probs.argmax(1)] if n else np.array([], dtype=object)
    offsets = pa.array(np.arange(0, n * c + 1, c, dtype=np.int32))
    flat = pa.array(probs.reshape(-1).astype(np.float32), type=pa.float32())
    columns = [
        pa.array(ids, pa.string()),
        pa.array([language] * n, pa.string()),
        pa.array(paths, pa.string()),
        pa.array(quality.astype(np.float32), pa.float32(), mask=~ok),
        pa.array(structured_data.astype(np.float32), pa.float32(), mask=~ok),
        pa.array(names, pa.string(), mask=~ok),
        pa.ListArray.from_arrays(offsets, flat, mask=pa.array(~ok)),
        pa.array(num_tokens, pa.int64()),
        pa.array(estimated, pa.bool_()),
        pa.array(truncated, pa.bool_()),
        pa.array(windows, pa.int32()),
        pa.array(errors, pa.string()),
        *(pa.array([r.signals[f.name] for r in rows], f.type) for f in SIGNAL_FIELDS),
    ]
    return pa.Table.from_arrays(columns, schema=score_schema(classes))


def done_chunks(out: Path, shard: Shard) -> list[tuple[int, int]]:
    """Row ranges of a shard whose part files are complete, sorted by their start."""
    found = []
    if parts_dir(out, shard).is_dir():
        for path in parts_dir(out, shard).glob("rows-*-*.parquet"):
            a, b = (int(x) for x in path.stem.split("-")[1:3])
            if is_complete(path, b - a):
                found.append((a, b))
    return sorted(found)


def missing_ranges(n: int, chunks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The row ranges of 0..n that no chunk covers."""
    gaps, at = [], 0
    for a, b in chunks:
        if a > at:
            gaps.append((at, a))
        at = max(at, b)
    if at < n:
        gaps.append((at, n))
    return gaps


def merge_parts(out: Path, shard: Shard, expected_rows: int) -> None:
    """The shard's part files, in row order, become its score file; then the parts are removed."""
    chunks = done_chunks(out, shard)
    at, tiles = 0, []
    for a, b in chunks:  # parts only ever fill gaps, so they tile the rows; a stray overlap is left out
        if a == at:
            tiles.append((a, b))
            at = b
    if at != expected_rows:
        raise RuntimeError(f"{shard.uri}: parts cover rows 0-{at}, the input has {expected_rows}")
    if len(tiles) == 1:
        os.replace(part_path(out, shard, *tiles[0]), shard_path(out, shard))
    else:
        table = pa.concat_tables([pq.read_table(part_path(out, shard, a, b)) for a, b in tiles])
        write_parquet_atomic(table, shard_path(out, shard))
    remove_parts(out, shard)


def remove_parts(out: Path, shard: Shard) -> None:
    shutil.rmtree(parts_dir(out, shard), ignore_errors=True)


def write_meta(out: Path, meta: dict) -> None:
    """scores_meta.json; a resumed run must use the same model, classes, precision and windows as the run that
    began the folder (a folder from before precision was recorded holds bf16 scores, one from before windows
    existed was scored on heads: max_windows 1)."""
    path = out / META_NAME
    if path.exists():
        old = json.loads(path.read_text())
        defaults = {"precision": "bf16", "max_windows": 1}
        for key in ("model_fingerprint", "content_types", "max_length", "precision", "max_windows"):
            was, now = old.get(key, defaults.get(key)), meta.get(key, defaults.get(key))
            if was != now:
                raise ValueError(
                    f"{out} holds scores from another model or setup ({key}: {was!r} there, {now!r} now); "
                    "score into a new --out folder, or delete the old scores"
                )
        return
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))


def read_meta(out: Path) -> dict:
    path = Path(out) / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{out} has no {META_NAME}: not a score folder written by score.py")
    return json.loads(path.read_text())
