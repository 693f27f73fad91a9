"""Evaluate each quickstart run of run.sh against the gold labels: all 216 gold files, and the gold files whose
repository is in the val or test split (never trained on)."""

import argparse
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.tasks.metrics import flatten_for_logging

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KEYS = ("quality/mae", "quality/spearman", "structured_data/mae", "structured_data/spearman",
        "content_type/accuracy", "content_type/macro_f1")  # fmt: skip


def gold_views(tmp: Path) -> dict[str, Path]:
    """The gold set with every row marked `test`, so evaluate.py reads it as one split."""
    gold = pq.read_table(REPO / "data/gold/gold.parquet")
    views = {
        "all gold": gold,
        "held-out gold": gold.filter(pc.is_in(gold["split"], pa.array(["val", "test"]))),
    }
    paths = {}
    for name, table in views.items():
        table = table.set_column(table.schema.get_field_index("split"), "split", [["test"] * table.num_rows])
        path = tmp / f"{name.replace(' ', '_')}.parquet"
        pq.write_table(table, path)
        paths[name] = path
    return paths


def main():
    from evaluate import evaluate  # the repo's entry point, as a function

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=Path, required=True)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    views = gold_views(tmp)
    rows = {}
    for run in sorted(d for d in args.runs.iterdir() if (d / "checkpoints").is_dir()):
        ckpt = sorted((run / "checkpoints").glob("epoch_*.ckpt"))[-1]
        for view, path in views.items():
            paths = evaluate(str(ckpt), str(path), split="test", out=str(HERE / "results" / f"{run.name}-{view.replace(' ', '_')}"),
                             num_workers=0)  # fmt: skip
            report = json.loads(Path(paths["metrics"]).read_text())
            flat = flatten_for_logging(report, "")
            rows[(run.name, view)] = (report["quality"]["n"], [flat[k] for k in KEYS])
    lines = ["| encoder | gold files | " + " | ".join(KEYS) + " |", "|" + "---|" * (len(KEYS) + 2)]
    for (run, view), (n, values) in rows.items():
        lines.append(f"| {run} ({view}) | {n} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    (HERE / "results" / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(REPO))
    main()
