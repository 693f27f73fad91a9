"""Sampling N files per language from StarCoderData (Hub streaming) or a local copy with the same layout.

The sample is a uniform reservoir sample of the files that pass the filters (size bounds, valid UTF-8 text,
first copy of exact duplicates), so it depends only on the seed and the order of the stream: a local corpus is
read in sorted file order, the Hub stream is shuffled with a seeded buffer first. The result is written in the
corpus layout (`<out>/<language>/part-00000.parquet`), so every later stage reads a sample like a corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from curator import labels
from curator.data import corpus
from curator.data.shards import write_parquet_atomic

log = logging.getLogger(__name__)

HUB_DATASET = "bigcode/starcoderdata"


@dataclass
class SampleConfig:
    n_per_language: int = 25_000
    languages: tuple[str, ...] = labels.LANGUAGES
    seed: int = 0
    # Size bounds in UTF-8 bytes: tiny files carry no signal to judge, huge ones are mostly data dumps and
    # would be cut by the labeler's character limit anyway.
    min_bytes: int = 100
    max_bytes: int = 100_000
    # How many rows of each language's stream to look at; None reads them all (right for a local copy,
    # far too much for the Hub, where a seeded shuffle buffer makes a prefix a fair sample).
    max_scan: int | None = None
    shuffle_buffer: int = 10_000
    rows_per_part: int = 50_000


def utf8_text(content) -> str | None:
    """The content as text if it is valid UTF-8 text, else None (binary, undecodable, lone surrogates)."""
    if isinstance(content, bytes | bytearray):
        try:
            content = bytes(content).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(content, str):
        return None
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if "\x00" in content:  # NUL bytes mean a binary file that happened to decode
        return None
    return content


def _rejection(content: str | None, cfg: SampleConfig) -> str | None:
    if content is None:
        return "not_utf8"
    size = len(content.encode("utf-8"))
    if size < cfg.min_bytes:
        return "too_small"
    if size > cfg.max_bytes:
        return "too_large"
    return None


def iter_hub(language: str, cfg: SampleConfig) -> Iterator[dict]:
    """Rows of one language of `bigcode/starcoderdata`, streamed and shuffled with a seeded buffer."""
    from datasets import load_dataset  # heavy import, needed only for the Hub path

    ds = load_dataset(HUB_DATASET, data_dir=language, split="train", streaming=True)
    ds = ds.shuffle(seed=cfg.seed, buffer_size=cfg.shuffle_buffer)
    yield from ds


def iter_local(root: str | Path, language: str) -> Iterator[dict]:
    # Either layout (a `corpus.Corpus` keeps the one given); repositories come flattened into files.
    yield from corpus.iter_language(root, language)


def _language_seed(seed: int, language: str) -> int:
    # A seed per language, so that adding or dropping a language leaves the others' samples unchanged.
    return int.from_bytes(hashlib.sha1(f"{seed}:{language}".encode()).digest()[:8], "big")


def reservoir_sample(rows: Iterable[dict], cfg: SampleConfig, language: str) -> tuple[list[dict], dict]:
    """A uniform sample of up to n rows that pass the filters, and counts of what was seen and dropped."""
    rng = random.Random(_language_seed(cfg.seed, language))
    reservoir: list[tuple[int, dict]] = []
    seen_hashes: set[bytes] = set()
    stats = {
        "scanned": 0,
        "kept_candidates": 0,
        "not_utf8": 0,
        "too_small": 0,
        "too_large": 0,
        "duplicate": 0,
    }
    bar = tqdm(total=cfg.max_scan, desc=f"sample {language}", unit="file", mininterval=1.0, leave=False)
    for row in rows:
        if cfg.max_scan is not None and stats["scanned"] >= cfg.max_scan:
            break
        stats["scanned"] += 1
        bar.update(1)
        content = utf8_text(row.get("content"))
        reason = _rejection(content, cfg)
        if reason is not None:
            stats[reason] += 1
            continue
        digest = hashlib.sha1(content.encode("utf-8")).digest()
        if digest in seen_hashes:
            stats["duplicate"] += 1
            continue
        seen_hashes.add(digest)
        i = stats["kept_candidates"]
        stats["kept_candidates"] += 1
        item = _corpus_row(row, content, digest)
        # Algorithm R: the i-th candidate replaces a random slot with probability n / (i + 1).
        if len(reservoir) < cfg.n_per_language:
            reservoir.append((i, item))
        else:
            j = rng.randrange(i + 1)
            if j < cfg.n_per_language:
                reservoir[j] = (i, item)
    bar.close()
    reservoir.sort(key=lambda pair: pair[0])  # stream order: the output does not depend on slot shuffling
    stats["sampled"] = len(reservoir)
    return [item for _, item in reservoir], stats


def _corpus_row(row: dict, content: str, digest: bytes) -> dict:
    out = {c: row.get(c) for c in corpus.CORPUS_COLUMNS}
    out["content"] = content
    if out["id"] is None or out["id"] == "":
        out["id"] = digest.hex()  # a stable id from the content where the source has none
    out["id"] = str(out["id"])
    for col in ("max_stars_repo_path", "max_stars_repo_name"):
        out[col] = "" if out[col] is None else str(out[col])
    out["max_stars_count"] = int(out["max_stars_count"] or 0)
    return out


_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("content", pa.string()),
        ("max_stars_repo_path", pa.string()),
        ("max_stars_repo_name", pa.string()),
        ("max_stars_count", pa.int64()),
    ]
)


def write_language(rows: list[dict], out_dir: Path, language: str, rows_per_part: int) -> list[Path]:
    lang_dir = out_dir / language
    paths = []
    for k, start in enumerate(range(0, max(len(rows), 1), rows_per_part)):
        chunk = rows[start : start + rows_per_part]
        path = lang_dir / f"part-{k:05d}.parquet"
        write_parquet_atomic(pa.Table.from_pylist(chunk, schema=_SCHEMA), path)
        paths.append(path)
    for stale in set(lang_dir.glob("part-*.parquet")) - set(paths):  # left by an earlier, larger sample
        stale.unlink()
    return paths


def sample_corpus(source: str | Path, out_dir: str | Path, cfg: SampleConfig) -> dict:
    """Sample every language of `source` ("hub" or a local corpus root) into `out_dir`; returns the stats."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_stats = {}
    for language in cfg.languages:
        rows = iter_hub(language, cfg) if str(source) == "hub" else iter_local(source, language)
        sample, stats = reservoir_sample(rows, cfg, language)
        write_language(sample, out_dir, language, cfg.rows_per_part)
        if stats["sampled"] < cfg.n_per_language:
            log.warning(
                "%s: only %d files passed the filters (wanted %d)",
                language,
                stats["sampled"],
                cfg.n_per_language,
            )
        log.info("%s: %s", language, stats)
        all_stats[language] = stats
    record = {"source": str(source), "config": asdict(cfg), "languages": all_stats}
    tmp = out_dir / ".sample.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=list))
    tmp.replace(out_dir / "sample.json")
    return all_stats
