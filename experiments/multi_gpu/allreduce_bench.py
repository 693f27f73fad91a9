"""How fast the GPUs of this machine all-reduce a training step's gradients (NCCL, one process a GPU).

    torchrun --standalone --nproc_per_node 2 experiments/multi_gpu/allreduce_bench.py --out results/allreduce

DDP all-reduces every parameter's gradient once a step, in buckets, overlapped with the backward pass. For
unixcoder-base (125M parameters) that is 500 MB in fp32 or 250 MB with DDP's bf16 compression hook. This times
one all-reduce of those sizes, whole and in DDP's default 25 MB buckets, and reports the time and the bus
bandwidth (NCCL's convention: bytes x 2 (n-1)/n / time), which says how the GPUs are linked (NVLink: hundreds
of GB/s; PCIe or host memory: tens). Rank 0 writes allreduce_bench.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

PARAMS = 125_000_000  # unixcoder-base


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    args = p.parse_args()
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    n = dist.get_world_size()
    res: dict = {"world_size": n, "gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    for dtype in (torch.float32, torch.bfloat16):
        for bucket_mb in (None, 25):
            numel = PARAMS
            per = numel if bucket_mb is None else bucket_mb * 2**20 // torch.finfo(dtype).bits * 8
            buckets = [
                torch.ones(min(per, numel - i), device="cuda", dtype=dtype) for i in range(0, numel, per)
            ]
            for _ in range(3):
                for t in buckets:
                    dist.all_reduce(t)
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.repeats):
                for t in buckets:
                    dist.all_reduce(t)
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end) / args.repeats
            nbytes = numel * torch.finfo(dtype).bits // 8
            key = f"{str(dtype).split('.')[1]}_{'whole' if bucket_mb is None else f'{bucket_mb}MB_buckets'}"
            res[key] = {
                "megabytes": nbytes / 1e6,
                "buckets": len(buckets),
                "ms": ms,
                "bus_GB_per_s": nbytes * 2 * (n - 1) / n / (ms / 1e3) / 1e9,
            }
            del buckets
    if dist.get_rank() == 0:
        print(json.dumps(res, indent=1), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "allreduce_bench.json").write_text(json.dumps(res, indent=1))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
