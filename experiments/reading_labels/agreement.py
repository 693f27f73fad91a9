"""How close are two independent readings? The `reading` labels of the gold files against their gold labels.

    python experiments/reading_labels/agreement.py

The 216 gold files were read again for the reading labels without their gold labels in view
(data/reading/gold_reread.parquet, built by data/reading/build_reading.py). The heuristic labeler on the same
files is the yardstick: a student trained on `reading` labels can only be as good, on gold, as `reading` agrees
with gold. Writes metrics.json, report.md and the confusion matrices into this folder.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curator.labels import CONTENT_TYPES
from curator.tasks.metrics import evaluate
from curator.tasks.report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLASSES = list(CONTENT_TYPES)


def as_arrays(rows):
    return {
        "quality": np.array([r["quality"] for r in rows], dtype=float),
        "structured_data": np.array([r["structured_data"] for r in rows], dtype=float),
        "content_type": np.array([CLASSES.index(r["content_type"]) for r in rows]),
    }


def summary(report):
    q, s, c = report["quality"], report["structured_data"], report["content_type"]
    return {
        "quality_mae": q["mae"], "quality_spearman": q["spearman"], "quality_exact": q["rounded_accuracy"],
        "structured_data_mae": s["mae"], "structured_data_spearman": s["spearman"],
        "structured_data_exact": s["rounded_accuracy"],
        "content_type_accuracy": c["accuracy"], "content_type_macro_f1": c["macro_f1"],
    }  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gold", type=Path, default=REPO / "data/gold/gold.parquet")
    p.add_argument("--reread", type=Path, default=REPO / "data/reading/gold_reread.parquet")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()
    gold = {r["id"]: r for r in pq.read_table(args.gold).to_pylist()}
    reread = {r["id"]: r for r in pq.read_table(args.reread).to_pylist()}
    ids = sorted(gold.keys() & reread.keys())
    report = evaluate(as_arrays([reread[i] for i in ids]), as_arrays([gold[i] for i in ids]), CLASSES)
    write_report(report, args.out, "Reading labels against gold labels (two independent readings)",
                 meta={"files": len(ids)})  # fmt: skip
    result = {"files": len(ids), "reading_vs_gold": summary(report)}
    (args.out / "agreement.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
