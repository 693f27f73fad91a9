"""Join the hand-read gold labels (labels_*.csv) with the sample's contents into a labeled shard.

Output: data/gold/gold.parquet, per the labeled-shard contract, with labeler `gold`, the split the file's
repository has in every labeled shard of the sample, and the reader's one-line rationale.
"""

import argparse
import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curator.data.shards import LABELED_COLUMNS, split_for_repo, write_parquet_atomic
from curator.labels import validate_labels

GOLD = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sample", type=Path, default=GOLD.parent / "sample")
    p.add_argument("--out", type=Path, default=GOLD / "gold.parquet")
    args = p.parse_args()
    labels = {}
    for path in sorted(GOLD.glob("labels_*.csv")):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["id"] in labels:
                    raise SystemExit(f"{path}: id {row['id']} labeled twice")
                labels[row["id"]] = row
    files = {}
    for f in sorted(args.sample.glob("*/*.parquet")):
        for r in pq.read_table(f).to_pylist():
            if r["id"] in labels:
                files[r["id"]] = (f.parent.name, r)
    missing = sorted(set(labels) - set(files))
    if missing:
        raise SystemExit(f"{len(missing)} gold ids are not in {args.sample}: {missing[:5]}")
    rows = []
    for file_id, lab in labels.items():
        language, r = files[file_id]
        q, s, c = int(lab["quality"]), int(lab["structured_data"]), lab["content_type"]
        problems = validate_labels(q, s, c)
        if problems:
            raise SystemExit(f"gold label of {file_id}: {problems}")
        repo = r["max_stars_repo_name"]
        rows.append({
            "id": file_id, "language": language, "repo": repo, "path": r["max_stars_repo_path"],
            "content": r["content"], "quality": q, "structured_data": s, "content_type": c,
            "labeler": "gold", "split": split_for_repo(repo), "rationale": lab["rationale"],
        })  # fmt: skip
    rows.sort(key=lambda r: (r["language"], r["id"]))
    table = pa.Table.from_pylist(rows).select([*LABELED_COLUMNS, "rationale"])
    write_parquet_atomic(table, args.out)
    print(f"wrote {len(rows)} gold labels to {args.out}")


if __name__ == "__main__":
    main()
