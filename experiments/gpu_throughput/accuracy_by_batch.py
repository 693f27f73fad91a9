"""Does a larger batch change accuracy? The quickstart (MiniLM, CPU, shipped sample) trained with several seeds
per recipe, test metrics as mean and standard deviation over seeds.

    python experiments/gpu_throughput/accuracy_by_batch.py --seeds 1 2 3

A recipe is NAME=OVERRIDES (Hydra overrides added to `+experiment=quickstart`). One run takes about five
minutes on two cores; runs go one at a time. Results: accuracy_by_batch.json and a markdown table in --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPES = [
    "bs16=",
    "bs64_lr4x=data.batch_size=64 task.lr=1.2e-3",
]
METRICS = {
    "content-type acc": ("content_type", "accuracy"),
    "content-type macro F1": ("content_type", "macro_f1"),
    "quality MAE": ("quality", "mae"),
    "quality Spearman": ("quality", "spearman"),
    "structured MAE": ("structured_data", "mae"),
    "structured Spearman": ("structured_data", "spearman"),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=RECIPES, help="NAME=OVERRIDES")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--out", default=".")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp())
    out_file = Path(args.out, "accuracy_by_batch.json")
    results: dict = json.loads(out_file.read_text()) if out_file.exists() else {}
    for spec in args.recipes:
        name, _, overrides = spec.partition("=")
        for seed in args.seeds:
            key = f"{name}/seed{seed}"
            if key in results:  # a rerun picks up where it stopped
                continue
            run_dir = work / f"{name}-{seed}"
            cmd = [sys.executable, "train.py", "+experiment=quickstart", f"seed={seed}",
                   f"hydra.run.dir={run_dir}", *shlex.split(overrides)]  # fmt: skip
            print("$", shlex.join(cmd), flush=True)
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], flush=True)
                raise SystemExit(f"{key} failed")
            report = json.loads((run_dir / "metrics.json").read_text())
            results[key] = {label: report[head][metric] for label, (head, metric) in METRICS.items()}
            print(key, results[key], flush=True)
            out_file.write_text(json.dumps(results, indent=1))

    # The table covers every recipe in the results file, so a run that adds a recipe keeps the earlier rows.
    by_recipe: dict[str, list[dict]] = {}
    for key, metrics in results.items():
        by_recipe.setdefault(key.rpartition("/seed")[0], []).append(metrics)
    lines = ["| recipe | seeds | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for name, runs in by_recipe.items():
        cells = []
        for label in METRICS:
            values = [r[label] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {sd:.3f}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    Path(args.out, "accuracy_by_batch.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
