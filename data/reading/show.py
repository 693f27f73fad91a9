"""Print sample files of one language for reading them against the rubric, a few at a time.

The order is fixed (by id), so a reader can stop and carry on: `--start` is the position in that order.
Only the file is shown (repository, path, numbered lines): no label of any kind, so a reading is the reader's own.

    python data/reading/show.py python --start 0 --count 5
    python data/reading/show.py python --todo     # positions not yet in labels_python.csv
"""

import argparse
import csv
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "sample"


def files_of(language):
    rows = []
    for f in sorted((SAMPLE / language).glob("*.parquet")):
        rows.extend(
            pq.read_table(
                f, columns=["id", "content", "max_stars_repo_name", "max_stars_repo_path"]
            ).to_pylist()
        )
    return sorted(rows, key=lambda r: r["id"])


def labeled_ids(language):
    path = HERE / f"labels_{language}.csv"
    if not path.exists():
        return set()
    with open(path, newline="") as fh:
        return {row["id"] for row in csv.DictReader(fh)}


def show(position, row, max_lines, max_line_chars):
    lines = row["content"].splitlines()
    print(f"=== [{position}] id={row['id']}")
    print(
        f"# {row['max_stars_repo_name']} :: {row['max_stars_repo_path']} ({len(lines)} lines, {len(row['content'])} chars)"
    )
    for i, line in enumerate(lines[:max_lines], 1):
        if len(line) > max_line_chars:
            line = line[:max_line_chars] + f" ... [{len(line) - max_line_chars} more chars on this line]"
        print(f"{i:5d}  {line}")
    if len(lines) > max_lines:
        print(f"... {len(lines) - max_lines} more lines; the last ones:")
        for i, line in enumerate(lines[-15:], len(lines) - 14):
            print(f"{i:5d}  {line[:max_line_chars]}")
    print()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("language")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--max-lines", type=int, default=220)
    p.add_argument("--max-line-chars", type=int, default=300)
    p.add_argument("--todo", action="store_true", help="list the positions not yet labeled and stop")
    args = p.parse_args()
    rows = files_of(args.language)
    if args.todo:
        done = labeled_ids(args.language)
        todo = [i for i, r in enumerate(rows) if r["id"] not in done]
        print(
            f"{len(rows)} files, {len(rows) - len(todo)} labeled, {len(todo)} to go; next positions: {todo[:20]}"
        )
    else:
        for i in range(args.start, min(args.start + args.count, len(rows))):
            show(i, rows[i], args.max_lines, args.max_line_chars)
