"""Pick the files of the gold set: a seeded random draw of N files per language from data/sample.

The draw is uniform within each language, so the gold set shows the sample's own mix of libraries, tests,
configs, generated and data files rather than a hand-picked one.
"""

import argparse
import csv
import random
from pathlib import Path

import pyarrow.parquet as pq

from curator.labels import LANGUAGES

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sample", default=ROOT / "sample", type=Path)
    p.add_argument("--per-language", type=int, default=27)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=ROOT / "gold" / "selection.csv", type=Path)
    args = p.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "language", "repo", "path"])
        for lang in LANGUAGES:
            rows = [
                r
                for f in sorted((args.sample / lang).glob("*.parquet"))
                for r in pq.read_table(f).to_pylist()
            ]
            rows.sort(key=lambda r: r["id"])
            for r in rng.sample(rows, args.per_language):
                w.writerow([r["id"], lang, r["max_stars_repo_name"], r["max_stars_repo_path"]])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
