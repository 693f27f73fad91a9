"""The packed scoring forward alone, in the variants that could make `score.py`'s default faster: which one to
build on. No tokenizing, no I/O: real batches (the shipped sample's files, cut as score.py's workers cut them)
already on the GPU, the same unixcoder-base-shaped model for every variant.

    python experiments/gpu_throughput/forward_variants.py --out results/forward_run1

Variants (`curator.scoring.runner._Model` as score.py builds it, then one setting changed):
  eager_unfused    eager, residual add and LayerNorm as PyTorch's two kernels (the default before the fused one)
  eager            the default below COMPILE_MIN_ROWS: Flash Attention 2's variable-length kernel, GELU in the
                   matmul, residual add and LayerNorm in one Triton kernel (`curator.models.add_norm`)
  eager_fused_qkv  eager, query, key and value as one matmul
  compiled         torch.compile of one layer (`PackedEncoder.compile_layers`)

For each: useful tokens/s over the batches (after a warm-up pass), the largest difference of every head from the
first variant's (bf16 noise is about 0.01 on these heads), and, for the eager ones, a torch.profiler table of
a few batches with the GPU's time by kind of kernel (matmul, attention, LayerNorm, add, the fused add and
LayerNorm, other). (Runs 1 and 2 summed the ATen operators' rows with their kernels' in that split, counting
most time twice; their profile tables are right.)

Run 1 (results/forward_run1) also tried attention by cuDNN's fused kernel on the ragged batch
(`aten._cudnn_attention_forward` with cumulative lengths): it had not finished 40 batches after three minutes
(cuDNN builds an execution plan per batch shape, and every packed batch has its own), so it is not a candidate.
--kernel-configs also times the add-and-LayerNorm pair alone at --tokens-per-batch x 768 in bf16: PyTorch's two
kernels against the Triton kernel at several rows-per-program and warp counts (the defaults are chosen by this).
Writes forward_variants.json and one profile table per profiled variant to --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments" / "gpu_throughput"))
sys.path.insert(0, str(REPO / "experiments" / "multi_gpu"))
sys.path.insert(0, str(REPO / "src"))

import bench  # noqa: E402
from check_scoring import build_checkpoint  # noqa: E402
from fp8_bench import gpu_kernel_times, gpu_ms_by_kind, profile_batches  # noqa: E402
from gelu_epilogue import timed  # noqa: E402

from curator.models import add_norm  # noqa: E402
from curator.scoring.runner import _Model  # noqa: E402
from curator.tasks.trained import load_trained  # noqa: E402

VARIANTS = {
    "eager_unfused": dict(compile=False, fused_add_norm=False),
    "eager": dict(compile=False),
    "eager_fused_qkv": dict(compile=False, qkv_fused=True),
    "compiled": dict(compile=True),
}


def time_cuda(fn, repeats: int = 50) -> float:
    """Mean seconds of fn() on the GPU, by CUDA events after a warm-up."""
    return timed(fn, repeats) / 1e3


def kernel_configs(tokens: int, hidden: int = 768) -> dict:
    x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)
    r = torch.randn_like(x)
    norm = torch.nn.LayerNorm(hidden, device="cuda", dtype=torch.bfloat16)
    moved = 3 * x.numel() * x.element_size()  # the least a fused pass can move: two reads, one write
    res = {"shape": [tokens, hidden], "bytes_moved_fused": moved}
    res["torch add, then layer_norm"] = time_cuda(lambda: norm(x + r))
    for block_m in (1, 2, 4, 8, 16):
        for warps in (2, 4, 8):
            res[f"triton block_m={block_m} warps={warps}"] = time_cuda(
                lambda b=block_m, w=warps: add_norm.add_layer_norm(x, r, norm, block_m=b, num_warps=w)
            )
    ref = torch.nn.functional.layer_norm(
        x.float() + r.float(), (hidden,), norm.weight.float(), norm.bias.float(), norm.eps
    )
    res["max_diff_vs_fp32"] = {"torch": float((norm(x + r).float() - ref).abs().max()),
                               "triton": float((add_norm.add_layer_norm(x, r, norm).float() - ref).abs().max())}  # fmt: skip
    for k, v in list(res.items()):
        if isinstance(v, float) and k.startswith(("torch", "triton")):
            res[k] = {"us": round(v * 1e6, 1), "GB/s at the fused minimum": round(moved / v / 1e9)}
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--tokens-per-batch", type=int, default=131_072)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--work", type=Path, default=Path("/tmp/forward_variants"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU: check the script")
    p.add_argument(
        "--kernel-configs", action="store_true", help="time the add-and-LayerNorm kernel alone too"
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cpu" if args.smoke else "cuda")
    texts, langs = bench.load_texts(20_000)
    corpus = args.work / "corpus"
    if not corpus.exists():
        bench.write_corpus(texts, langs, corpus, shards_per_lang=2)
    ckpt = build_checkpoint(args.work / "model", args.smoke, str(dev), max_length=args.max_length)
    base = load_trained(ckpt, device="cpu", packed=True)
    base.model.eval()
    batches = [
        (ids.to(dev), cu.to(dev))
        for ids, cu, _ in profile_batches(base, corpus, args.batches, args.tokens_per_batch)
    ]
    tokens = sum(int(ids.shape[0]) for ids, _ in batches)
    L = base.max_length
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    res: dict = {"gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__,
                 "batches": len(batches), "tokens": tokens, "max_length": L}  # fmt: skip
    if args.kernel_configs and dev.type == "cuda":
        res["add_layer_norm_alone"] = kernel_configs(args.tokens_per_batch)
        print("add_layer_norm alone: " + json.dumps(res["add_layer_norm_alone"]), flush=True)
    reference = None
    for name in args.variants:
        v = VARIANTS[name]
        torch._dynamo.reset()
        model = copy.deepcopy(base.model).to(dev)
        forward = _Model(
            model,
            dev,
            True,
            v["compile"],
            qkv_fused=v.get("qkv_fused"),
            fused_add_norm=v.get("fused_add_norm"),
        )

        def run_all(bs=batches, fwd=forward):
            outs = []
            with torch.inference_mode():
                for ids, cu in bs:
                    o = fwd(SimpleNamespace(input_ids=ids, cu_seqlens=cu), L)
                    outs.append(torch.cat([o["quality"].float()[:, None], o["structured_data"].float()[:, None],
                                           torch.softmax(o["content_type"].float(), -1)], 1))  # fmt: skip
            sync()
            return torch.cat(outs).cpu()

        r: dict = {"description": forward.description}
        try:
            t = time.perf_counter()
            forward.warm_up(L, base.model.encoder.config.vocab_size)
            run_all()
            r["warmup_s"] = time.perf_counter() - t
            t = time.perf_counter()
            scores = run_all()
            r["seconds"] = time.perf_counter() - t
            r["tokens_per_s"] = tokens / r["seconds"]
        except Exception as e:  # a kernel this build or GPU lacks: recorded, the other variants still run
            r["error"] = f"{type(e).__name__}: {str(e)[:500]}"
            print(f"{name}: {r['error']}", flush=True)
            res[name] = r
            continue
        if reference is None:
            reference = scores
        d = (scores - reference).abs()
        r["max_diff_vs_first"] = {"quality": float(d[:, 0].max()), "structured_data": float(d[:, 1].max()),
                                  "class_probability": float(d[:, 2:].max())}  # fmt: skip
        if not v["compile"]:
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])  # fmt: skip
            with torch.profiler.profile(activities=acts) as prof:
                run_all(batches[:5])
            kernels = gpu_kernel_times(prof)
            r["gpu_ms_by_kind_5_batches"] = gpu_ms_by_kind(kernels)
            r["top_kernels"] = [(k[:110], round(ms, 3)) for k, ms in kernels[:20]]
            sort = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            (args.out / f"profile_{name}.txt").write_text(
                prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=90) + "\n"
            )
        res[name] = r
        print(f"{name}: " + json.dumps({k: x for k, x in r.items() if k != "top_kernels"}), flush=True)
        del forward, model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    (args.out / "forward_variants.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
