"""Encoder-only scoring throughput of the candidate paths, no tokenization or I/O: which forward to build on.

Same unixcoder-base-shaped model and token lengths for every variant; lengths drawn from a log-normal around
700 tokens (as in the shared anchor measurement), truncated at max_len.
"""

import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from bench import UNIXCODER, build_model, flops_per_token, matmul_peak  # noqa: E402

from curator.models.packed import PackedClassifier  # noqa: E402


def lengths(n, max_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(n, generator=g) + math.log(700)).long().clamp(16, max_len).tolist()


def batches_by_budget(lens, budget, pad_to=8):
    lens = sorted(lens, reverse=True)
    i = 0
    while i < len(lens):
        w = -(-lens[i] // pad_to) * pad_to
        n = max(1, budget // w)
        yield lens[i : i + n]
        i += n


def run_padded(model, batches):
    for b in batches:
        w = -(-max(b) // 8) * 8
        ids = torch.randint(5, 50000, (len(b), w), device="cuda")
        mask = (torch.arange(w, device="cuda")[None] < torch.tensor(b, device="cuda")[:, None]).long()
        model(ids.masked_fill(mask == 0, 1), mask)


def run_packed(packed, batches):
    for b in batches:
        total = sum(b)
        ids = torch.randint(5, 50000, (total,), device="cuda")
        cu = torch.zeros(len(b) + 1, dtype=torch.int32)
        torch.cumsum(torch.tensor(b, dtype=torch.int32), 0, out=cu[1:])
        packed(ids, cu.cuda(), max(b))


def time_it(fn, arg, batches, lens, peak):
    fn(arg, batches)  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn(arg, batches)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    tok = sum(lens)
    return dict(tok_s=tok / dt, mfu=sum(flops_per_token(n) * n for n in lens) / dt / 1e12 / peak)


def main():
    peak = matmul_peak()
    res = {"gpu": torch.cuda.get_device_name(), "peak": peak}
    model = build_model("sdpa").cuda().eval()
    for max_len in (512, 1024):
        lens = lengths(8192, max_len)
        for budget in (32768, 131072):
            bs = list(batches_by_budget(lens, budget))
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                res[f"{max_len}/padded_sorted_autocast/b{budget}"] = time_it(
                    run_padded, model, bs, lens, peak
                )
            model.encoder.to(torch.bfloat16)
            with torch.inference_mode():
                res[f"{max_len}/padded_sorted_bf16/b{budget}"] = time_it(run_padded, model, bs, lens, peak)
                packed = PackedClassifier(model)
                res[f"{max_len}/packed_bf16/b{budget}"] = time_it(run_packed, packed, bs, lens, peak)
                packed.encoder = torch.compile(packed.encoder, dynamic=True)
                try:
                    res[f"{max_len}/packed_bf16_compiled/b{budget}"] = time_it(
                        run_packed, packed, bs, lens, peak
                    )
                except Exception as e:  # compile support differs between torch builds
                    res[f"{max_len}/packed_bf16_compiled/b{budget}"] = repr(e)[:300]
            model.encoder.float()
            print(
                json.dumps({k: v for k, v in res.items() if k.startswith(str(max_len))}, indent=1), flush=True
            )
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    assert UNIXCODER
    main()
