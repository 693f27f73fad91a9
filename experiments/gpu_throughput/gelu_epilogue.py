"""The feed-forward's first matmul with its bias and GELU inside cuBLASLt's epilogue, against a matmul and a GELU
kernel of its own (what the exact-GELU forward runs): time, and how far each is from exact fp32 GELU.

    python experiments/gpu_throughput/gelu_epilogue.py --out results/gelu_run1

Shapes of one scoring batch (--tokens, 131,072 by default) through unixcoder-base (768 -> 3072) and MiniLM-L6
(384 -> 1536), bf16 weights and activations drawn like a trained layer's (inputs N(0, 1) after LayerNorm,
weights N(0, 0.02)). Each variant: the mean of --repeats timed calls after warm-up, CUDA events. Differences:
largest absolute difference of the bf16 result from the fp32 exact (erf) GELU of the same product, and from the
fp32 tanh-approximated GELU; for scale, the same figure for the separate bf16 kernels (their own rounding).
Writes gelu_epilogue.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = {"unixcoder-base": (768, 3072), "minilm-l6": (384, 1536)}


def timed(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def measure(tokens: int, k: int, n: int, repeats: int) -> dict:
    x = torch.randn(tokens, k, device="cuda", dtype=torch.bfloat16)
    w = (torch.randn(n, k, device="cuda") * 0.02).to(torch.bfloat16)
    b = (torch.randn(n, device="cuda") * 0.02).to(torch.bfloat16)

    def separate():
        return F.gelu(F.linear(x, w, b))

    def fused():
        return torch._addmm_activation(b, x, w.t(), use_gelu=True)

    exact = F.gelu(x.float() @ w.float().t() + b.float())
    tanh = F.gelu(x.float() @ w.float().t() + b.float(), approximate="tanh")
    r = {
        "separate_ms": timed(separate, repeats),
        "fused_ms": timed(fused, repeats),
        "matmul_only_ms": timed(lambda: F.linear(x, w, b), repeats),
    }
    for label, out in (("separate", separate()), ("fused", fused())):
        r[f"{label}_max_diff_vs_exact"] = (out.float() - exact).abs().max().item()
        r[f"{label}_max_diff_vs_tanh"] = (out.float() - tanh).abs().max().item()
    r["speedup"] = r["separate_ms"] / r["fused_ms"]
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=131_072)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gelu_epilogue.py measures cuBLAS on a GPU; there is none here")
    torch.manual_seed(0)
    res: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "tokens": args.tokens}
    for name, (k, n) in SHAPES.items():
        res[name] = measure(args.tokens, k, n, args.repeats)
        print(name, json.dumps(res[name]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gelu_epilogue.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
