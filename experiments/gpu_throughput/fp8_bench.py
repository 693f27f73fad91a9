"""`score.py --precision fp8` against `--precision bf16`, both as typed, on the same files and model: speed, and
whether the scores agree (issue 14, item 4).

    python experiments/gpu_throughput/fp8_bench.py --files 240000 --out results/fp8_run1            # random weights
    python experiments/gpu_throughput/fp8_bench.py --model models/curator --out results/fp8_run2   # a trained model
    python experiments/gpu_throughput/fp8_bench.py --profile --dry-run                              # the commands

1. Corpus: the shipped sample's real files (8 languages) repeated to --files, 16 shards a language, as
   score_cli_bench.py and experiments/multi_gpu build it; or --corpus, an existing corpus folder (real files, no
   repeats: what the issue's "10,000 real files" asks for).
2. Model: --model (a trained model folder from export.py, or a checkpoint), else the unixcoder-base-shaped
   checkpoint of experiments/multi_gpu (random weights, heads set to spread the scores, --max-length tokens).
   Agreement on random weights is a stress test, not the issue's measure: give a trained model for that.
3. Runs `score.py --model M --corpus C --out O --no-progress --precision P` (plus --extra) for bf16, then fp8,
   each into a fresh folder, timed from process start to exit, and reads each log: files and seconds of the
   loop (score.py compiles before it), its `time:` and `start-up:` lines, the forward that ran (a compiler that
   failed shows here). Useful tokens: the score files' num_tokens plus the two special tokens, capped at max_length.
4. Compares the two folders per id: the share of files whose rounded quality and structured_data levels
   (`labels.QUALITY.to_levels`: half up, clipped) are the same, the largest class-probability difference, the
   largest quality and structured_data differences, how many distinct contents were compared.
5. --profile (after the runs, in this process): the forward alone (`curator.scoring.runner._Model`, compiled, as
   score.py builds it) over --profile-batches real batches of --tokens-per-batch tokens, for bf16, bf16 with
   fused query-key-value, fp8, fp8 without fused query-key-value, fp8 without fast accumulation; then
   torch.profiler over a few batches of bf16 and fp8: the top kernels, GPU time by kind (matmul, attention,
   Inductor's fused kernels, other) and GPU busy time against wall time (below ~90%: the host's launching is the
   limit, not the GPU). Also the bf16 and fp8 row-wise matmul peaks of this GPU.

Goals (issue 14): fp8 at least 3.0M useful tokens/s over the loop; on at least 10,000 files, rounded quality and
structured_data levels identical on at least 99% of them and no class probability more than 0.02 apart.
Prints PASS or FAIL for each, writes fp8_bench.json, fp8_bench.md, the runs' logs and the profiles to --out.
--smoke runs it all on a CPU with a tiny model (score.py refuses fp8 there, so both runs are bf16): a check of
the script, not of fp8.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments" / "gpu_throughput"))
sys.path.insert(0, str(REPO / "experiments" / "multi_gpu"))
sys.path.insert(0, str(REPO / "src"))

import bench  # noqa: E402  (the sample loader and corpus writer)
from check_scoring import build_checkpoint, run_score  # noqa: E402

from curator.data.inputs import pack  # noqa: E402
from curator.labels import QUALITY, STRUCTURED_DATA  # noqa: E402

GOAL_TOKENS_PER_S = 3.0e6
GOAL_LEVELS_SAME = 0.99
GOAL_PROB_DIFF = 0.02
GOAL_FILES = 10_000
# Linear-layer FLOPs per token of a unixcoder-base-shaped encoder (attention's own are left out).
MATMUL_FLOPS_PER_TOKEN = 2 * 12 * (4 * 768 * 768 + 2 * 768 * 3072)


def read_folder(folder: Path) -> dict:
    cols = ["id", "quality", "structured_data", "content_type_probs", "num_tokens", "error"]
    return pq.read_table(sorted(folder.rglob("*.parquet")), columns=cols).to_pydict()


def content_hashes(corpus: Path, ids: set) -> dict:
    """id -> a digest of its content, for the ids compared (to count distinct files)."""
    out = {}
    for f in sorted(corpus.rglob("*.parquet")):
        t = pq.read_table(f, columns=["id", "content"]).to_pydict()
        for i, c in zip(t["id"], t["content"], strict=True):
            if i in ids:
                out[i] = hashlib.blake2b((c or "").encode("utf-8", "replace"), digest_size=12).digest()
    return out


def useful_tokens(scores: dict, max_length: int) -> int:
    return sum(min(k + 2, max_length) for k in scores["num_tokens"] if k is not None)


def agreement(a: dict, b: dict, corpus: Path | None) -> dict:
    """Per-id comparison of two score folders (a: bf16, b: fp8), rows with an error left out."""
    ia = {k: i for i, k in enumerate(a["id"]) if a["error"][i] is None}
    ib = {k: i for i, k in enumerate(b["id"]) if b["error"][i] is None}
    common = sorted(ia.keys() & ib.keys())
    res: dict = {
        "rows_bf16": len(a["id"]),
        "rows_fp8": len(b["id"]),
        "errors_bf16": len(a["id"]) - len(ia),
        "errors_fp8": len(b["id"]) - len(ib),
        "only_in_one": len(ia.keys() ^ ib.keys()),
        "compared": len(common),
    }
    if not common:
        return res
    xa, xb = [ia[k] for k in common], [ib[k] for k in common]
    qa, qb = np.array(a["quality"], np.float64)[xa], np.array(b["quality"], np.float64)[xb]
    sa, sb = np.array(a["structured_data"], np.float64)[xa], np.array(b["structured_data"], np.float64)[xb]
    pa = np.array([a["content_type_probs"][i] for i in xa], np.float64)
    pb = np.array([b["content_type_probs"][i] for i in xb], np.float64)
    dp = np.abs(pa - pb).max(1)
    res.update(
        quality_levels_same=float((QUALITY.to_levels(qa) == QUALITY.to_levels(qb)).mean()),
        structured_data_levels_same=float(
            (STRUCTURED_DATA.to_levels(sa) == STRUCTURED_DATA.to_levels(sb)).mean()
        ),
        content_type_same=float((pa.argmax(1) == pb.argmax(1)).mean()),
        content_type_prob_max_abs_diff=float(dp.max()),
        content_type_prob_p999_abs_diff=float(np.quantile(dp, 0.999)),
        quality_max_abs_diff=float(np.abs(qa - qb).max()),
        quality_mean_abs_diff=float(np.abs(qa - qb).mean()),
        structured_data_max_abs_diff=float(np.abs(sa - sb).max()),
        structured_data_mean_abs_diff=float(np.abs(sa - sb).mean()),
        quality_spread_std=float(qa.std()),
        structured_data_spread_std=float(sa.std()),
    )
    if corpus is not None:
        hashes = content_hashes(corpus, set(common))
        res["distinct_contents"] = len(set(hashes.values()))
    return res


def run_cli(
    precision: str,
    label: str,
    model: str,
    corpus: Path,
    work: Path,
    out: Path,
    extra: list[str],
    smoke: bool,
    dry: bool,
) -> dict:
    folder = work / f"scores_{label}"
    cmd = [
        sys.executable,
        "score.py",
        "--model",
        model,
        "--corpus",
        str(corpus),
        "--out",
        str(folder),
        "--no-progress",
        "--precision",
        precision,
        *extra,
    ]
    if smoke:
        cmd += ["--device", "cpu"]
    print(f"$ (cd {REPO} && {shlex.join(cmd)})", flush=True)
    if dry:
        return {"cmd": shlex.join(cmd)}
    shutil.rmtree(folder, ignore_errors=True)  # a fresh run: a resumed one would skip the done shards
    log = out / f"fp8_bench_{label}.log"
    r = run_score(cmd, log)
    text = log.read_text()
    meta = (
        json.loads((folder / "scores_meta.json").read_text())
        if (folder / "scores_meta.json").exists()
        else {}
    )
    scores = read_folder(folder) if meta else None
    r.update(
        precision_asked=precision,
        precision_recorded=meta.get("precision"),
        forward=next((ln.split("forward: ", 1)[1] for ln in text.splitlines() if "forward: " in ln), None),
        compile_failed="torch.compile failed" in text,
        # "start-up: 2.9 s python and imports, 4.1 s model, 21.0 s compile, 1.2 s other"
        startup={
            name: float(sec)
            for line in text.splitlines()
            if "start-up: " in line
            for sec, name in re.findall(r"([\d.]+) s ([a-z ]+?)(?=,|$)", line.split("start-up: ", 1)[1])
        },
    )
    if scores is not None and r["ranks"]:
        L = meta["max_length"]
        useful = useful_tokens(scores, L)
        loop = r["ranks"][0]["loop_s"]
        r.update(
            max_length=L,
            useful_tokens=useful,
            tokens_per_s_loop=useful / loop,
            tokens_per_s_wall=useful / r["wall_s"],
        )
    print(json.dumps({k: v for k, v in r.items() if k != "cmd"}, indent=1), flush=True)
    return r | {"scores": scores}


# --- --profile: the forward alone -------------------------------------------------------------------------


def profile_batches(trained, corpus: Path, n_batches: int, tokens_per_batch: int, window: int = 1024):
    """Real packed batches, cut as score.py's workers cut them (windows of files sorted by length, a token
    budget per batch)."""
    encoder = trained.input_encoder()
    batches = []
    for f in sorted(corpus.rglob("*.parquet")):
        t = pq.read_table(f, columns=["content", "max_stars_repo_path"]).to_pydict()
        for i in range(0, len(t["content"]), window):
            inputs = encoder.encode(t["content"][i : i + window], t["max_stars_repo_path"][i : i + window])
            seqs = sorted((x.ids for x in inputs if x.ids), key=len, reverse=True)
            batch, total = [], 0
            for s in seqs:
                if batch and total + len(s) > tokens_per_batch:
                    batches.append(pack(batch))
                    batch, total = [], 0
                batch.append(s)
                total += len(s)
            if batch:  # a window's last batch: score.py's workers send it too
                batches.append(pack(batch))
            if len(batches) >= n_batches:
                return batches[:n_batches]
    return batches


def gpu_kernel_times(prof) -> list[tuple[str, float]]:
    """(kernel, GPU ms) of a torch.profiler run, longest first: the GPU's own rows only (kernels, copies). The
    rows of ATen operators and of annotated ranges (Lightning's `Optimizer.step`, which holds the whole forward
    and backward; DDP's forward) repeat the time of the kernels they launch, and summed with them counted it
    twice or more."""
    from torch.autograd import DeviceType

    rows = []
    for e in prof.key_averages():
        if e.device_type != DeviceType.CUDA or getattr(e, "is_user_annotation", False):
            continue
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0.0)
        if t > 0:
            rows.append((e.key, t / 1e3))  # ms
    return sorted(rows, key=lambda r: -r[1])


def kind_of(name: str) -> str:
    n = name.lower()
    if "flash" in n or "fmha" in n:
        return "attention"
    if any(k in n for k in ("gemm", "cutlass", "nvjet", "xmma", "sm90_", "sm100_", "cublas", "f8f8")):
        return "matmul"
    if "triton" in n:  # Inductor's kernels are named triton_...
        return "inductor fused (layernorm, gelu, quantize, ...)"
    if "add_layer_norm" in n:
        return "add and LayerNorm, fused (curator.models.add_norm)"
    if "layer_norm" in n:
        return "LayerNorm"
    if "add" in n:
        return "add"
    return "other"


def gpu_ms_by_kind(kernels: list[tuple[str, float]], kind=kind_of) -> dict[str, float]:
    """GPU ms per kind of kernel (`kind_of`, or the given function of a kernel's name), largest first."""
    by_kind: dict = {}
    for k, ms in kernels:
        by_kind[kind(k)] = by_kind.get(kind(k), 0.0) + ms
    return {k: round(ms, 2) for k, ms in sorted(by_kind.items(), key=lambda x: -x[1])}


def matmul_peaks() -> dict:
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    sa, sb = torch.ones(n, 1, device="cuda"), torch.ones(1, n, device="cuda")
    fns = {
        "bf16": lambda: a @ b.t(),
        "fp8_rowwise": lambda: torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16),
        "fp8_rowwise_fast_accum": lambda: torch._scaled_mm(
            a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16, use_fast_accum=True
        ),
    }
    res = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        res[name] = 20 * 2 * n**3 / (time.perf_counter() - t) / 1e12
    return res


VARIANTS = {
    "bf16": dict(precision="bf16"),
    "bf16_exact_gelu": dict(precision="bf16", gelu_epilogue=False),
    "bf16_fused_qkv": dict(precision="bf16", qkv_fused=True),
    "fp8": dict(precision="fp8"),
    "fp8_unfused_qkv": dict(precision="fp8", qkv_fused=False),
    "fp8_no_fast_accum": dict(precision="fp8", fast_accum=False),
}


def profile(
    model_path: str,
    corpus: Path,
    out: Path,
    n_batches: int,
    tokens_per_batch: int,
    smoke: bool,
    names: list[str],
) -> dict:
    from curator.models.fp8 import Fp8Linear
    from curator.scoring.runner import _Model
    from curator.tasks.trained import load_trained

    dev = torch.device("cpu" if smoke else "cuda")
    base = load_trained(model_path, device=dev)
    base.model.to(dev).eval()
    # On the device already: the forward alone is timed, not the copies (score.py overlaps those).
    batches = [
        (ids.to(dev), cu.to(dev), m)
        for ids, cu, m in profile_batches(base, corpus, n_batches, tokens_per_batch)
    ]
    tokens = sum(int(ids.shape[0]) for ids, _, _ in batches)
    res: dict = {"batches": len(batches), "tokens": tokens, "tokens_per_batch": tokens_per_batch}
    if not smoke:
        res["matmul_peak_tflops"] = matmul_peaks()
        print("matmul peaks (TFLOP/s):", json.dumps(res["matmul_peak_tflops"]), flush=True)
    L = base.max_length
    variants = {k: v for k, v in VARIANTS.items() if k in names}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for name, v in variants.items():
        torch._dynamo.reset()  # every variant compiles afresh, within the recompile limit
        model = copy.deepcopy(base.model)
        forward = _Model(
            model,
            dev,
            True,
            not smoke,
            v["precision"],
            v.get("qkv_fused"),
            gelu_epilogue=v.get("gelu_epilogue"),
        )
        for m in forward.packed.modules():  # before the first call: the compiler reads it when tracing
            if isinstance(m, Fp8Linear):
                m.fast_accum = v.get("fast_accum", True)

        def run_all(bs=batches, fwd=forward):
            outs = []
            with torch.inference_mode():
                for ids, cu, _ in bs:
                    outs.append(fwd(SimpleNamespace(input_ids=ids, cu_seqlens=cu), L)["quality"])
            sync()
            return outs

        t = time.perf_counter()
        forward.warm_up(L, base.model.encoder.config.vocab_size)  # compiles, as score.py does before its loop
        run_all()  # and whatever the real shapes still compile
        warm = time.perf_counter() - t
        t = time.perf_counter()
        run_all()
        dt = time.perf_counter() - t
        r = dict(
            description=forward.description + ("" if v.get("fast_accum", True) else ", no fast accumulation"),
            warmup_s=warm,
            seconds=dt,
            tokens_per_s=tokens / dt,
            matmul_tflops=tokens / dt * MATMUL_FLOPS_PER_TOKEN / 1e12,
        )
        if name in ("bf16", "fp8"):
            acts = [torch.profiler.ProfilerActivity.CPU]
            if dev.type == "cuda":
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            few = batches[: min(5, len(batches))]
            t = time.perf_counter()
            with torch.profiler.profile(activities=acts) as prof:
                run_all(few)
            wall_ms = (time.perf_counter() - t) * 1e3
            kernels = gpu_kernel_times(prof)
            gpu_ms = sum(ms for _, ms in kernels)
            r.update(
                profiled_batches=len(few),
                profiled_wall_ms=wall_ms,
                gpu_busy_ms=gpu_ms,
                gpu_busy_share=gpu_ms / wall_ms if wall_ms else None,
                gpu_ms_by_kind=gpu_ms_by_kind(kernels),
                top_kernels=[(k[:120], round(ms, 3)) for k, ms in kernels[:25]],
            )
            sort = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            try:
                table = prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=90)
            except (AttributeError, KeyError):
                table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=30)
            (out / f"fp8_bench_profile_{name}.txt").write_text(table + "\n")
        res[name] = r
        print(f"{name}: " + json.dumps({k: v for k, v in r.items() if k != "top_kernels"}), flush=True)
        del forward, model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return res


# --- report ------------------------------------------------------------------------------------------------


def verdicts(runs: dict, agree: dict | None, trained_model: bool) -> dict:
    fp8 = runs.get("fp8", {})
    speed = fp8.get("tokens_per_s_loop")
    v = {
        "speed": None if speed is None else speed >= GOAL_TOKENS_PER_S,
    }
    if agree and agree.get("compared"):
        v["agreement"] = (
            agree["compared"] >= GOAL_FILES
            and agree["quality_levels_same"] >= GOAL_LEVELS_SAME
            and agree["structured_data_levels_same"] >= GOAL_LEVELS_SAME
            and agree["content_type_prob_max_abs_diff"] <= GOAL_PROB_DIFF
        )
        v["agreement_on_trained_weights"] = trained_model
        v["agreement_on_10000_distinct_files"] = agree.get("distinct_contents", 0) >= GOAL_FILES
    return v


def fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


def markdown(res: dict) -> str:
    lines = ["# fp8 against bf16: score.py as typed", ""]
    lines += [
        f"GPU {res['gpu']}, {res['cpus']} cores, torch {res['torch']}; model {res['model']}; "
        f"{res['files']} files.",
        "",
    ]
    lines += [
        "| precision | forward | files | loop s | compile s (before the loop) | useful tokens/s, loop | "
        "wall clock |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in res["runs"].items():
        lines.append(
            f"| {label} | {r.get('forward')} | {r.get('files')} | {fmt((r.get('ranks') or [{}])[0].get('loop_s'), '.1f')} | "
            f"{fmt(r.get('startup', {}).get('compile'), '.1f')} | {fmt(r.get('tokens_per_s_loop'))} | "
            f"{fmt(r.get('tokens_per_s_wall'))} |"
        )
    for label, r in res["runs"].items():
        if r.get("waits"):
            lines.append(f"\n{label} time line: {json.dumps(r['waits'][0])}")
    a = res.get("agreement")
    if a and a.get("compared"):
        lines += ["", "| agreement (bf16 vs fp8, per id) | value |", "|---|---:|"]
        for k in (
            "compared",
            "distinct_contents",
            "quality_levels_same",
            "structured_data_levels_same",
            "content_type_same",
            "content_type_prob_max_abs_diff",
            "content_type_prob_p999_abs_diff",
            "quality_max_abs_diff",
            "quality_mean_abs_diff",
            "structured_data_max_abs_diff",
            "structured_data_mean_abs_diff",
            "quality_spread_std",
        ):
            if k in a:
                lines.append(f"| {k} | {a[k]:.4g} |" if isinstance(a[k], float) else f"| {k} | {a[k]} |")
    p = res.get("profile")
    if p:
        lines += [
            "",
            f"Forward alone ({p['batches']} batches, {p['tokens']:,} tokens):",
            "",
            "| variant | tokens/s | linear-layer TFLOP/s | GPU busy / wall | GPU ms by kind |",
            "|---|---:|---:|---:|---|",
        ]
        for k, r in p.items():
            if isinstance(r, dict) and "tokens_per_s" in r:
                lines.append(
                    f"| {k} ({r['description']}) | {r['tokens_per_s']:,.0f} | {r['matmul_tflops']:.0f} | "
                    f"{fmt(r.get('gpu_busy_share'), '.0%')} | {json.dumps(r.get('gpu_ms_by_kind', {}))} |"
                )
        if "matmul_peak_tflops" in p:
            lines.append(f"\nMatmul peaks (TFLOP/s, 8192^3): {json.dumps(p['matmul_peak_tflops'])}")
    lines += ["", "Verdicts: " + json.dumps(res["verdicts"])]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--files", type=int, default=240_000, help="sample files repeated to this many (no --corpus)"
    )
    p.add_argument("--corpus", type=Path, help="an existing corpus folder instead of the repeated sample")
    p.add_argument(
        "--model", help="a trained model folder (export.py) or checkpoint; default: random weights"
    )
    p.add_argument("--max-length", type=int, default=512, help="of the random-weight model (default: 512)")
    p.add_argument("--extra", default="", help="more score.py flags for both runs, e.g. '--num-workers 30'")
    p.add_argument("--profile", action="store_true", help="also profile the forward alone (see above)")
    p.add_argument("--profile-batches", type=int, default=20)
    p.add_argument("--profile-variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--tokens-per-batch", type=int, default=131_072, help="of the profiled batches")
    p.add_argument("--skip-runs", action="store_true", help="no score.py runs (with --profile: profile only)")
    p.add_argument(
        "--with-exact-gelu",
        action="store_true",
        help="a third run, bf16 with --exact-gelu, compared with the default bf16 run (GELU in the matmul)",
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/fp8_bench"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--smoke", action="store_true", help="tiny model on the CPU, both runs bf16: check the script"
    )
    args = p.parse_args()

    dev = "cpu" if args.smoke else "cuda"
    corpus = args.corpus or args.work / f"corpus{args.files}"
    model = args.model or str(args.work / f"model{args.max_length}" / "model.ckpt")
    extra = shlex.split(args.extra)
    print(
        f"corpus: {corpus}{'' if args.corpus else ' (the sample repeated)'}; model: {model}"
        f"{'' if args.model else ' (random weights, built here)'}",
        flush=True,
    )
    if args.dry_run:
        for precision in ("bf16", "fp8"):
            run_cli(precision, precision, model, corpus, args.work, args.out, extra, args.smoke, dry=True)
        if args.profile:
            print(
                "then, in this process: the forward alone over "
                f"{args.profile_batches} batches of {args.tokens_per_batch} tokens, and torch.profiler"
            )
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "gpu": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "files": args.files if not args.corpus else str(args.corpus),
        "model": args.model or f"random weights, unixcoder-shaped, {args.max_length} tokens",
        "goals": {
            "tokens_per_s_loop": GOAL_TOKENS_PER_S,
            "levels_same": GOAL_LEVELS_SAME,
            "prob_max_abs_diff": GOAL_PROB_DIFF,
            "files": GOAL_FILES,
        },
        "runs": {},
    }
    if not args.corpus and not corpus.exists():
        texts, langs = bench.load_texts(args.files)
        bench.write_corpus(texts, langs, corpus, shards_per_lang=16)
        del texts, langs
    if not args.model:
        built = build_checkpoint(
            args.work / f"model{args.max_length}", args.smoke, dev, max_length=args.max_length
        )
        assert str(built) == model, (built, model)
        if dev == "cuda":
            torch.cuda.empty_cache()

    if not args.skip_runs:
        # --smoke: score.py refuses fp8 on a CPU, so the second run is bf16 as well (the script's plumbing only).
        for label in ("bf16", "fp8"):
            precision = "bf16" if args.smoke else label
            res["runs"][label] = run_cli(
                precision, label, model, corpus, args.work, args.out, extra, args.smoke, dry=False
            )
        if args.with_exact_gelu:
            res["runs"]["bf16_exact_gelu"] = run_cli(
                "bf16", "bf16_exact_gelu", model, corpus, args.work, args.out, [*extra, "--exact-gelu"],
                args.smoke, dry=False,
            )  # fmt: skip
        a, b = res["runs"]["bf16"].pop("scores"), res["runs"]["fp8"].pop("scores")
        if a is not None and b is not None:
            res["agreement"] = agreement(a, b, corpus)
            print("agreement:", json.dumps(res["agreement"], indent=1), flush=True)
        exact = res["runs"].get("bf16_exact_gelu", {}).pop("scores", None)
        if exact is not None and a is not None:
            # In agreement()'s keys, "bf16" is the exact-GELU run and "fp8" the default one.
            res["agreement_exact_gelu_vs_default"] = agreement(exact, a, None)
            print(
                "exact GELU against the default:",
                json.dumps(res["agreement_exact_gelu_vs_default"]),
                flush=True,
            )
        (args.out / "fp8_bench.json").write_text(json.dumps(res, indent=1))
    if args.profile:
        res["profile"] = profile(
            model,
            corpus,
            args.out,
            args.profile_batches,
            args.tokens_per_batch,
            args.smoke,
            args.profile_variants,
        )
    res["verdicts"] = verdicts(res["runs"], res.get("agreement"), bool(args.model))
    (args.out / "fp8_bench.json").write_text(json.dumps(res, indent=1))
    (args.out / "fp8_bench.md").write_text(markdown(res))

    v = res["verdicts"]
    fp8 = res["runs"].get("fp8", {})
    word = {True: "PASS", False: "FAIL", None: "n/a"}
    print()
    print(
        f"{word[v.get('speed')]}: fp8 over the loop {fmt(fp8.get('tokens_per_s_loop'))} useful tokens/s "
        f"(goal {GOAL_TOKENS_PER_S:,.0f}); over the wall clock {fmt(fp8.get('tokens_per_s_wall'))}; "
        f"bf16 {fmt(res['runs'].get('bf16', {}).get('tokens_per_s_loop'))}"
    )
    a = res.get("agreement") or {}
    if a.get("compared"):
        print(
            f"{word[v.get('agreement')]}: agreement on {a['compared']:,} ids "
            f"({a.get('distinct_contents', '?')} distinct contents): quality levels same "
            f"{a['quality_levels_same']:.2%}, structured_data {a['structured_data_levels_same']:.2%} "
            f"(goal {GOAL_LEVELS_SAME:.0%}); largest class-probability difference "
            f"{a['content_type_prob_max_abs_diff']:.4f} (goal {GOAL_PROB_DIFF})"
        )
        if not args.model:
            print("  (random weights: the issue's agreement goal is for a trained model; give --model)")
        if a.get("distinct_contents", 0) < GOAL_FILES:
            print(
                f"  (fewer than {GOAL_FILES:,} distinct files: the sample repeated; give --corpus for real ones)"
            )
    for label, r in res["runs"].items():
        if r.get("compile_failed"):
            print(
                f"NOTE: {label}: torch.compile failed and the run fell back to the eager forward (see its log)"
            )
        if r.get("returncode"):
            print(f"FAIL: {label}: score.py exited with {r['returncode']} (see fp8_bench_{label}.log)")
    print(f"written: {args.out / 'fp8_bench.json'}, {args.out / 'fp8_bench.md'}")
    return 0 if all(x is not False for k, x in v.items() if k in ("speed", "agreement")) else 1


if __name__ == "__main__":
    sys.exit(main())
