"""How long a training step waits for its batch: the datamodule's train loader against the same stream read with
DataLoader's default prefetch (2 batches a worker), with a fixed step time standing in for the GPU.

    PYTHONPATH=$PWD/src python experiments/multi_gpu/loader_stalls.py --out experiments/multi_gpu/results/loader_stalls_cpu

The data are check_training.py's: the shipped sample's train split repeated to --rows with fresh ids, and a
byte-level BPE of UniXcoder's vocabulary size. Each worker of the train stream tokenizes a buffer of
data.buffer_batches (64) batches before it yields the first of them, and the workers are read in turn, so their
buffers end at about the same time. With room for only 2 batches, a worker cannot start on its next buffer until
its last one is nearly consumed: the loop then waits for a whole buffer's tokenizing, once per buffer. On one
H200, train.py over 128,000 rows waited 20% of its steps for data with 8 workers (results/train_run5_partial).

Here the "step" is a sleep of --step-ms (the main process waits on the GPU the same way), long enough that the
workers together tokenize faster than the loop consumes, so any wait is a stall and not a lack of workers.
Reports, per setting, the share of the time after the first --skip steps spent waiting for the next batch, and
files/s. Writes loader_stalls.json and loader_stalls.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(loader, step_s: float, skip: int) -> dict:
    waits, files, t0, steps = 0.0, 0, None, 0
    ready = time.perf_counter()
    for batch in loader:
        got = time.perf_counter()
        if steps == skip:
            t0, ready = got, got  # the clock starts at the first batch after the skipped ones
        elif steps > skip:
            waits += got - ready
            files += len(batch["id"])
        steps += 1
        time.sleep(step_s)
        ready = time.perf_counter()
    seconds = time.perf_counter() - t0
    return {
        "steps": steps,
        "measured_steps": steps - skip - 1,
        "seconds": seconds,
        "wait_s": waits,
        "wait_share": waits / seconds,
        "files_per_s": files / seconds,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=24_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--step-ms", type=float, default=100.0, help="the stand-in for a training step")
    p.add_argument("--skip", type=int, default=10, help="steps left out at the start (the first buffers)")
    p.add_argument("--work", type=Path, default=Path("/tmp/loader_stalls"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    args = p.parse_args()

    import check_training
    import torch
    from torch.utils.data import DataLoader

    from curator.data.datamodule import CuratorDataModule

    if not (args.work / "encoder" / "tokenizer.json").exists():
        check_training.build_data(args.work, args.rows, smoke=False)
    dm = CuratorDataModule(
        root=str(args.work / "labeled"),
        tokenizer=str(args.work / "encoder"),
        max_length=512,
        batch_size=args.batch_size,
        num_workers=args.workers,
        packed=True,
    )
    settings = {
        "DataLoader's default prefetch (2 batches a worker)": lambda s: DataLoader(
            s, batch_size=None, num_workers=args.workers
        ),
        "the datamodule's loader": dm.loader,
    }
    res = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    res["runs"] = {}
    for name, make in settings.items():
        loader = make(dm.stream("train", train=True))
        r = measure(loader, args.step_ms / 1000, args.skip)
        r["prefetch_factor"] = loader.prefetch_factor
        res["runs"][name] = r
        print(f"{name}: waited {r['wait_s']:.1f} s of {r['seconds']:.1f} s ({r['wait_share']:.0%}), "
              f"{r['files_per_s']:,.0f} files/s over {r['measured_steps']} steps", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loader_stalls.json").write_text(json.dumps(res, indent=1))
    lines = [
        f"# loader_stalls: {args.rows:,} rows, {args.workers} workers, batch {args.batch_size}, "
        f"a {args.step_ms:.0f} ms step, {os.cpu_count()} CPUs",
        "",
        "| loader | prefetch a worker | steps measured | waiting for data | files/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in res["runs"].items():
        lines.append(
            f"| {name} | {r['prefetch_factor']} | {r['measured_steps']} | {r['wait_s']:.1f} s "
            f"({r['wait_share']:.0%}) | {r['files_per_s']:,.0f} |"
        )
    (args.out / "loader_stalls.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
