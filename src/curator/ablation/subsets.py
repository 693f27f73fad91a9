"""Which pool files each arm keeps, and equal-token subsets of them.

Arms:
- `random`: every pool file is a candidate; the subset is a seeded random draw.
- `classifier_<name>`: the files `filter.py --where EXPR` keeps from `score.py`'s scores, exactly as a user
  filters (junk rules on).
- `junk_rules`: `filter.py` with an always-true expression, i.e. the junk rules alone; it tells how much of a
  classifier arm's effect the rules already give.
- `heuristic_q<N>`: files whose heuristic-labeler quality level is at least N and that it does not call
  generated.

Every arm's subset holds exactly the same number of LM tokens: the smallest arm's kept tokens, or less if
asked. A subset is its kept files in a seeded random order, each followed by EOS, cut at that count, so every
arm trains on the same amount of text and only which text differs. The prepare stage chooses the files from
token counts (`choose_files`) and writes them as a list; the train stage tokenizes them again and cuts the stream
(`build_stream`), so what travels between the two is file lists, not token arrays.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator.labeling.heuristic.corpus import label_row
from curator.labeling.heuristic.labeler import NotLabeled

log = logging.getLogger(__name__)

ALWAYS = "num_tokens >= 0"  # an expression every scored row passes: the junk-rules-only arm


def run_cli(cmd: list[str], what: str) -> None:
    """Run an entry point of the repo as a subprocess; its output goes to ours, a failure stops the run."""
    log.info("%s: %s", what, " ".join(cmd))
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}")


def score_pool(repo: Path, model: str, pool: Path, out: Path, extra: list[str]) -> None:
    """score.py over the pool; it resumes by itself, so a finished run costs only reading footers."""
    cmd = [sys.executable, str(repo / "score.py"), "--model", model, "--corpus", str(pool), "--out", str(out)]
    run_cli(cmd + ["--no-progress", *extra], "score.py")


def filter_kept(repo: Path, scores: Path, out: Path, where: str) -> set[str]:
    """The ids filter.py keeps under `where`; done once per arm (its report marks it finished)."""
    if not (out / "filter_report.json").exists():
        cmd = [sys.executable, str(repo / "filter.py"), "--scores", str(scores), "--out", str(out)]
        run_cli(cmd + ["--where", where], f"filter.py --where {where!r}")
    ids: set[str] = set()
    for path in sorted(out.glob("*/*.parquet")):
        ids.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


def _label(row: dict) -> tuple[str, int, str]:
    try:
        lab = label_row(row)
    except NotLabeled:  # too long or too slow to label: kept by no heuristic arm
        return row["id"], 0, "not_labeled"
    return row["id"], lab["quality"], lab["content_type"]


def heuristic_labels(rows: list[dict], cache: Path, workers: int) -> dict[str, tuple[int, str]]:
    """id -> (quality level, content type) from the heuristic labeler, cached as parquet."""
    if not cache.exists():
        log.info("heuristic labeler: %d files on %d processes", len(rows), workers)
        slim = [{k: r[k] for k in ("id", "content", "language", "max_stars_repo_path")} for r in rows]
        with Pool(workers) as pool:
            labels = pool.map(_label, slim, chunksize=32)
        table = pa.table(
            {
                "id": [x[0] for x in labels],
                "quality": [x[1] for x in labels],
                "content_type": [x[2] for x in labels],
            }
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(cache)
    t = pq.read_table(cache).to_pydict()
    return {i: (q, c) for i, q, c in zip(t["id"], t["quality"], t["content_type"], strict=True)}


def heuristic_kept(labels: dict[str, tuple[int, str]], min_quality: int) -> set[str]:
    return {i for i, (q, c) in labels.items() if q >= min_quality and c != "generated"}


def default_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


def choose_files(
    ids: list[str], counts: np.ndarray, kept: set[str], n_tokens: int, seed: int
) -> tuple[list[str], int]:
    """The kept files in a seeded order, as many as hold `n_tokens` tokens (each file counts its tokens and the
    EOS after it); the files and the tokens they hold. `counts` is every pool file's token count."""
    idx = [i for i, x in enumerate(ids) if x in kept]
    order = np.random.default_rng(seed).permutation(len(idx))
    used, total = [], 0
    for j in order:
        i = idx[j]
        used.append(ids[i])
        total += int(counts[i]) + 1
        if total >= n_tokens:
            break
    if total < n_tokens:
        raise ValueError(f"the kept files hold {total} tokens, fewer than the {n_tokens} asked")
    return used, total


def build_stream(token_ids: list[np.ndarray], n_tokens: int, eos: int) -> np.ndarray:
    """The files' tokens in order, each followed by EOS, cut at `n_tokens`."""
    parts = []
    for t in token_ids:
        parts += [t, np.array([eos], dtype=t.dtype)]
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)
    if len(stream) < n_tokens:
        raise ValueError(f"the subset's files hold {len(stream)} tokens, fewer than the {n_tokens} asked")
    return stream[:n_tokens]


def kept_tokens(ids: list[str], counts: np.ndarray, kept: set[str]) -> int:
    return sum(int(c) + 1 for i, c in zip(ids, counts, strict=True) if i in kept)
