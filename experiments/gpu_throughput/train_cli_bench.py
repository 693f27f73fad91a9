"""`train.py` as users run it, on the GPU, timed by its own TrainingSpeed callback: Lightning's per-step work,
the DataModule's workers, logging and gradient clipping included.

Data: the shipped sample's labeled train split (data/labeled/heuristic, real files of 8 languages), repeated to
--rows with fresh ids, written as labeled shards. Model: a unixcoder-base-shaped encoder with random weights
(`model.pretrained=false`) and a byte-level BPE of UniXcoder's vocabulary size trained on the same files (the
hub is out of reach on the GPU machine), saved as a local model folder. Every run trains one epoch, without
validation and test (not what is timed here; with them, a compiled model compiles once more for eval mode).

    python experiments/gpu_throughput/train_cli_bench.py --out $OUT
    python experiments/gpu_throughput/train_cli_bench.py --runs "len512" "graphs=+experiment=len512 \
        model.compile_mode=reduce-overhead data.pad_to_multiple_of=64"

A run is NAME=OVERRIDES (space-separated Hydra overrides); a bare experiment name means +experiment=NAME.
Each run's files/s is printed against the first run's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from bench import UNIXCODER, train_tokenizer  # noqa: E402

RUNS = [
    "len512",  # the seed recipe, the baseline
    "fast512",  # batch 64, unpadded
    "fast512_padded=+experiment=fast512 model.packed=false",
]


def write_labeled(out: Path, rows: int, eval_rows: int) -> list[str]:
    source = pq.read_table(sorted((REPO / "data/labeled/heuristic/train").glob("*.parquet")))
    for split, n in (("train", rows), ("val", eval_rows), ("test", eval_rows)):
        reps = -(-n // source.num_rows)
        table = pa.concat_tables([source] * reps).slice(0, n)
        ids = pa.array([f"{split}-{i}" for i in range(n)])
        table = table.set_column(table.schema.get_field_index("id"), "id", ids)
        if "split" in table.schema.names:
            table = table.set_column(table.schema.get_field_index("split"), "split", pa.array([split] * n))
        (out / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / split / "part-00000.parquet", row_group_size=1024)
    return source.column("content").to_pylist()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=RUNS, help="NAME=OVERRIDES or an experiment name")
    p.add_argument("--rows", type=int, default=32_000, help="training files (one epoch)")
    p.add_argument("--eval-rows", type=int, default=512)
    p.add_argument("--num-workers", type=int, default=8, help="DataModule workers")
    p.add_argument("--run-timeout", type=float, default=None, help="seconds before a run is stopped")
    p.add_argument("--extra", default="", help="overrides added to every run (e.g. for a CPU check)")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()

    work = Path(tempfile.mkdtemp())
    texts = write_labeled(work / "labeled", args.rows, args.eval_rows)
    encoder = work / "encoder"
    from transformers import RobertaConfig

    RobertaConfig(**UNIXCODER).save_pretrained(encoder)
    train_tokenizer(texts, encoder)

    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results = {}
    out = {"device": device, "torch": torch.__version__, "rows": args.rows, "runs": results}
    for spec in args.runs:
        name, _, overrides = spec.partition("=")
        overrides = shlex.split(overrides) if overrides else [f"+experiment={name}"]
        run_dir = work / f"run-{name}"
        cmd = [
            sys.executable, "train.py", *overrides,
            f"model.encoder={encoder}", "model.pretrained=false", f"data.root={work / 'labeled'}",
            f"data.num_workers={args.num_workers}", "logger=none", "trainer.max_epochs=1",
            "trainer.limit_val_batches=0", "trainer.limit_test_batches=0",
            f"hydra.run.dir={run_dir}", *shlex.split(args.extra),
        ]  # fmt: skip
        print("$", shlex.join(cmd), flush=True)
        t = time.perf_counter()
        log_path = Path(args.out, f"{name}.log")
        with open(log_path, "w") as log:
            # Unbuffered, so the progress bar reaches the log; on a timeout SIGABRT makes faulthandler print
            # where every thread was.
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                returncode = proc.wait(timeout=args.run_timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                proc.wait()
                returncode = "timeout"
        wall = time.perf_counter() - t
        speed_file = run_dir / "training_speed.json"
        if returncode != 0 or not speed_file.exists():
            print(log_path.read_text(errors="replace")[-4000:], flush=True)
            results[name] = {"error": f"exit {returncode}", "wall_s": wall}
        else:
            results[name] = r = {**json.loads(speed_file.read_text()), "wall_s": wall, "overrides": overrides}
            print(f"{name}: {r['files_per_s']:,.0f} files/s, {r['tokens_per_s']:,.0f} useful tokens/s "
                  f"({r['steps']} steps timed), {wall:.0f} s in all", flush=True)  # fmt: skip
        Path(args.out, "train_cli_results.json").write_text(json.dumps(out, indent=1))
    base = next((r["files_per_s"] for r in results.values() if "files_per_s" in r), None)
    print(
        f"\n{device}, {args.rows} files, one epoch\n| run | files/s | useful tokens/s | vs first | wall s |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        if "files_per_s" in r:
            print(f"| {name} | {r['files_per_s']:,.0f} | {r['tokens_per_s']:,.0f} | "
                  f"{r['files_per_s'] / base:.2f}x | {r['wall_s']:.0f} |")  # fmt: skip
        else:
            print(f"| {name} | {r['error']} | | | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
