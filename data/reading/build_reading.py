"""Join the reading labels (labels_<language>.csv) with the sample into labeled shards.

Output: `data/labeled/reading/<split>/<language>.parquet` per the labeled-shard contract, labeler `reading`, the
split drawn from the repository as for every labeled shard of the sample, and the reader's rationale.

The gold files (data/gold) were read here too, without their gold labels in view. Their reading labels never go
into a training shard: they are written to `data/reading/gold_reread.parquet` for measuring the agreement of two
independent readings, and the gold files stay out of every split, so the gold set remains unseen in training.
"""

import argparse
import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curator.data.shards import LABELED_COLUMNS, check_labeled_table, split_for_repo, write_parquet_atomic
from curator.labels import validate_labels

HERE = Path(__file__).resolve().parent
DATA = HERE.parent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample", type=Path, default=DATA / "sample")
    p.add_argument("--gold", type=Path, default=DATA / "gold" / "gold.parquet")
    p.add_argument("--out", type=Path, default=DATA / "labeled" / "reading")
    args = p.parse_args()
    labels = {}
    for path in sorted(HERE.glob("labels_*.csv")):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["id"] in labels:
                    raise SystemExit(f"{path}: id {row['id']} labeled twice")
                labels[row["id"]] = row
    gold_ids = set(pq.read_table(args.gold, columns=["id"]).column("id").to_pylist())
    rows, reread = [], []
    for f in sorted(args.sample.glob("*/*.parquet")):
        language = f.parent.name
        for r in pq.read_table(f).to_pylist():
            lab = labels.get(r["id"])
            if lab is None:
                continue
            q, s, c = int(lab["quality"]), int(lab["structured_data"]), lab["content_type"]
            problems = validate_labels(q, s, c)
            if problems:
                raise SystemExit(f"reading label of {r['id']}: {problems}")
            repo = r["max_stars_repo_name"]
            row = {
                "id": r["id"], "language": language, "repo": repo, "path": r["max_stars_repo_path"],
                "content": r["content"], "quality": q, "structured_data": s, "content_type": c,
                "labeler": "reading", "split": split_for_repo(repo), "rationale": lab["rationale"],
            }  # fmt: skip
            (reread if r["id"] in gold_ids else rows).append(row)
    missing = sorted(set(labels) - {r["id"] for r in rows + reread})
    if missing:
        raise SystemExit(f"{len(missing)} labeled ids are not in {args.sample}: {missing[:5]}")
    columns = [*LABELED_COLUMNS, "rationale"]
    counts = {}
    for split in ("train", "val", "test"):
        for language in sorted({r["language"] for r in rows}):
            part = [r for r in rows if r["split"] == split and r["language"] == language]
            if not part:
                continue
            table = pa.Table.from_pylist(sorted(part, key=lambda r: r["id"])).select(columns)
            check_labeled_table(table, f"{split}/{language}")
            write_parquet_atomic(table, args.out / split / f"{language}.parquet")
            counts[split] = counts.get(split, 0) + len(part)
    write_parquet_atomic(pa.Table.from_pylist(sorted(reread, key=lambda r: r["id"])).select(columns),
                         HERE / "gold_reread.parquet")  # fmt: skip
    print(
        f"wrote {len(rows)} reading labels to {args.out} ({counts}); {len(reread)} gold files re-read, kept apart"
    )


if __name__ == "__main__":
    main()
