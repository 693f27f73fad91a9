"""What does the offline student need to learn the reading labels? Recipes x seeds through train.py as users run
it, each judged on the reading labels' validation split (the decision) and on the gold set (never trained on).

    python experiments/student/sweep.py --seeds 1 2 --recipes base len512 markers512 ... [--gpus 2 --parallel 8]

A recipe is a name from RECIPES below (Hydra overrides on top of `+experiment=quickstart`), or NAME=OVERRIDES.
Training data roots are built in --work from the labeled shards, gold files always left out:
- `reading`: data/labeled/reading (the reading labels; the gold files are not in it);
- `reading-N`: its train split cut to N files (seeded), val and test as in `reading`;
- `heuristic`: data/labeled/heuristic without the gold files, validated on the reading val split;
- `both`: the reading and the heuristic train rows together (two rows per file), reading val and test.
Each run's best checkpoint (by val/score) is evaluated on the reading val split and on the 216 gold files.
Writes results.json and results.md (mean and sd over seeds) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOLD = REPO / "data/gold/gold.parquet"
KEYS = ("quality/spearman", "quality/mae", "structured_data/spearman", "structured_data/mae",
        "content_type/accuracy", "content_type/macro_f1")  # fmt: skip

RECIPES = {
    "base": "",  # the quickstart as shipped: 128 tokens, top layer of 6 trained, 3 epochs
    "markers": "data.code_markers=true",
    "len256": "data.max_length=256",
    "len256_markers": "data.max_length=256 data.code_markers=true",
    "len512": "data.max_length=512",
    "len512_markers": "data.max_length=512 data.code_markers=true",
    "len512_markers_unfrozen": "data.max_length=512 data.code_markers=true task.freeze_layers=0 task.lr=1e-4",
    "len512_markers_unfrozen_e6": "data.max_length=512 data.code_markers=true task.freeze_layers=0 task.lr=1e-4 trainer.max_epochs=6",
    "len512_markers_f3": "data.max_length=512 data.code_markers=true task.freeze_layers=3 task.lr=2e-4",
    "len512_markers_cls": "data.max_length=512 data.code_markers=true model.pooling=cls",
    "len512_markers_e6": "data.max_length=512 data.code_markers=true trainer.max_epochs=6",
    # Run 2: the file's path as the first line (readers saw it; it says test, generated, config, ...).
    "path": "data.with_path=true",
    "path_markers": "data.with_path=true data.code_markers=true",
    "path_markers_len256_f4": "data.with_path=true data.code_markers=true data.max_length=256 task.freeze_layers=4",
    "path_len512_markers_unfrozen_e6": "data.with_path=true data.max_length=512 data.code_markers=true task.freeze_layers=0 task.lr=1e-4 trainer.max_epochs=6",
    "path_len512_markers_unfrozen_e10": "data.with_path=true data.max_length=512 data.code_markers=true task.freeze_layers=0 task.lr=1e-4 trainer.max_epochs=10",
    "path_len512_markers_unfrozen_e6_lr2": "data.with_path=true data.max_length=512 data.code_markers=true task.freeze_layers=0 task.lr=2e-4 trainer.max_epochs=6",
    "path_len512_unfrozen_e6": "data.with_path=true data.max_length=512 task.freeze_layers=0 task.lr=1e-4 trainer.max_epochs=6",
}


def build_roots(work: Path, sizes: list[int]) -> dict[str, Path]:
    gold_ids = pa.array(pq.read_table(GOLD, columns=["id"]).column("id").to_pylist())
    reading = pq.read_table(sorted((REPO / "data/labeled/reading").rglob("*.parquet")))
    heuristic = pq.read_table(sorted((REPO / "data/labeled/heuristic").rglob("*.parquet")))
    heuristic = heuristic.filter(pc.invert(pc.is_in(heuristic["id"], gold_ids)))
    common = [c for c in reading.column_names if c in heuristic.column_names]
    reading, heuristic = reading.select(common), heuristic.select(common)

    def split(t, name):
        return t.filter(pc.equal(t["split"], name))

    roots = {}

    def write(name, train, val, test):
        root = work / name
        for s, t in (("train", train), ("val", val), ("test", test)):
            (root / s).mkdir(parents=True, exist_ok=True)
            pq.write_table(t, root / s / "all.parquet")
        roots[name] = root

    val, test = split(reading, "val"), split(reading, "test")
    write("reading", split(reading, "train"), val, test)
    write("heuristic", split(heuristic, "train"), val, test)
    write("both", pa.concat_tables([split(reading, "train"), split(heuristic, "train")]), val, test)
    train = split(reading, "train")
    for n in sizes:
        idx = sorted(random.Random(n).sample(range(train.num_rows), min(n, train.num_rows)))
        write(f"reading-{n}", train.take(idx), val, test)
    gold = pq.read_table(GOLD)
    gold = gold.set_column(gold.schema.get_field_index("split"), "split", [["test"] * gold.num_rows])
    (work / "gold" / "test").mkdir(parents=True, exist_ok=True)
    pq.write_table(gold.select(common), work / "gold" / "test" / "all.parquet")
    roots["gold"] = work / "gold"
    return roots


def run_one(name, overrides, data, seed, roots, args, gpu) -> dict:
    run_dir = args.work / "runs" / f"{name}-{data}-s{seed}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    cmd = [sys.executable, "train.py", "+experiment=quickstart", "logger=csv", f"data.root={roots[data]}",
           f"seed={seed}", f"hydra.run.dir={run_dir}", *shlex.split(args.common), *shlex.split(overrides)]  # fmt: skip
    t = time.perf_counter()
    with open(args.work / "runs" / f"{name}-{data}-s{seed}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    train_s = time.perf_counter() - t
    result = {"recipe": name, "data": data, "seed": seed, "overrides": overrides, "rc": rc, "train_s": train_s,
              "cmd": " ".join(cmd)}  # fmt: skip
    ckpts = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    if rc or not ckpts:
        return result
    for view, root in (("val", roots["reading"]), ("gold", roots["gold"])):
        out = run_dir / f"eval-{view}"
        cmd = [sys.executable, "evaluate.py", "--checkpoint", str(ckpts[-1]), "--data", str(root), "--split",
               "val" if view == "val" else "test", "--out", str(out), "--num-workers", "0"]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metrics = out / "metrics.json"
        if metrics.exists():
            report = json.loads(metrics.read_text())
            result[view] = {k: report[k.split("/")[0]][k.split("/")[1]] for k in KEYS}
    return result


def table(results: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["recipe"], r["data"]), []).append(r)
    lines = ["| recipe | data | seeds | train s | " + " | ".join(f"val {k}" for k in KEYS[::2]) + " | "
             + " | ".join(f"gold {k}" for k in KEYS) + " |", "|" + "---|" * (4 + 3 + len(KEYS))]  # fmt: skip
    for (recipe, data), rs in groups.items():
        ok = [r for r in rs if "gold" in r]
        if not ok:
            lines.append(f"| {recipe} | {data} | 0 of {len(rs)} ran | | " + " | " * (2 + len(KEYS)))
            continue

        def cell(view, k, ok=ok):
            v = np.array([r[view][k] for r in ok])
            return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"

        lines.append(f"| {recipe} | {data} | {len(ok)} | {np.mean([r['train_s'] for r in ok]):.0f} | "
                     + " | ".join(cell("val", k) for k in KEYS[::2]) + " | "
                     + " | ".join(cell("gold", k) for k in KEYS) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["base"], help="names from RECIPES, or NAME=OVERRIDES")
    p.add_argument("--data", nargs="+", default=["reading"], help="reading, reading-N, heuristic, both")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--common", default="", help="overrides for every run (e.g. trainer=gpu model.encoder=PATH)"
    )
    p.add_argument("--gpus", type=int, default=0, help="spread runs over this many GPUs")
    p.add_argument("--parallel", type=int, default=1, help="runs at once")
    p.add_argument("--work", type=Path, default=Path("/tmp/curator-student"))
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.work / "runs").mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(d.split("-")[1]) for d in args.data if d.startswith("reading-")})
    roots = build_roots(args.work / "data", sizes)
    jobs = []
    for recipe in args.recipes:
        name, _, overrides = recipe.partition("=")
        overrides = overrides if "=" in recipe else RECIPES[name]
        for data in args.data:
            for seed in args.seeds:
                jobs.append((name, overrides, data, seed))
    results = []
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(run_one, *job, roots, args, (i % args.gpus) if args.gpus else None)
                   for i, job in enumerate(jobs)]  # fmt: skip
        for f in futures:
            r = f.result()
            results.append(r)
            print(json.dumps({k: r.get(k) for k in ("recipe", "data", "seed", "rc", "train_s", "val", "gold")}),
                  flush=True)  # fmt: skip
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
    md = table(results)
    (args.out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
