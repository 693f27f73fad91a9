"""Print one sample file by id, with line numbers, for reading it against the rubric."""

import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python data/gold/show.py ID [MAX_LINES]")
    file_id, max_lines = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400
    table = ds.dataset(sorted(map(str, (ROOT / "sample").glob("*/*.parquet"))), format="parquet").to_table(
        filter=pc.field("id") == file_id
    )
    if table.num_rows == 0:
        sys.exit(f"no file with id {file_id}")
    row = table.to_pylist()[0]
    lines = row["content"].splitlines()
    print(
        f"# {row['max_stars_repo_name']} :: {row['max_stars_repo_path']} ({len(lines)} lines, {len(row['content'])} chars)"
    )
    for i, line in enumerate(lines[:max_lines], 1):
        print(f"{i:5d}  {line}")
    if len(lines) > max_lines:
        print(f"... {len(lines) - max_lines} more lines")
