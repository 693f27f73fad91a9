"""`score.py` as users type it, beside the naive loop, in one run: useful tokens/s over the loop and over the whole
wall clock (process start to exit: start-up, model loading and compiling included).

    python experiments/gpu_throughput/score_cli_bench.py --files 240000 --max-lengths 512 1024 --out results/

Corpus and model as in experiments/multi_gpu/check_scoring.py: the shipped sample's real files (8 languages)
repeated to --files, a unixcoder-base-shaped encoder (random weights: speed does not depend on them) saved as a
checkpoint with its max_length. `score.py --model CKPT --corpus C --out S` is run with no other flag, so its
defaults (workers, window, part size, batch budget, compile) are what is measured. The naive loop (fp32, eager
attention, batch 16 padded to max_length, tokenizer in the loop) runs on --naive-files of the same files, in the
same process as the model build. Useful tokens: real tokens the model saw (the score files' num_tokens, capped at
max_length, plus the two special tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments" / "gpu_throughput"))
sys.path.insert(0, str(REPO / "experiments" / "multi_gpu"))
sys.path.insert(0, str(REPO / "src"))

import bench  # noqa: E402
from check_scoring import build_checkpoint, run_score  # noqa: E402

from curator.tasks.trained import load_trained  # noqa: E402


def score_cli(ckpt: Path, corpus: Path, out: Path, log: Path, max_length: int, flags: list[str] = ()) -> dict:
    cmd = [sys.executable, "score.py", "--model", str(ckpt), "--corpus", str(corpus), "--out", str(out),
           "--no-progress", *flags]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    r = run_score(cmd, log)  # wall clock from start to exit, and the log's lines read
    text = log.read_text()
    times = re.search(r"time: (.*)", text)
    startup = re.search(r"start-up: (.*)", text)
    n = pq.read_table(sorted(out.rglob("*.parquet")), columns=["num_tokens"]).column("num_tokens").to_pylist()
    useful = sum(min(k + 2, max_length) for k in n if k is not None)
    loop_s = r["ranks"][0]["loop_s"] if r["ranks"] else float("nan")
    return dict(rc=r["returncode"], files=len(n), useful_tokens=useful, wall_s=r["wall_s"], loop_s=loop_s,
                tokens_per_s_loop=useful / loop_s, tokens_per_s_wall=useful / r["wall_s"],
                time_line=times[1] if times else None, startup_line=startup[1] if startup else None,
                flags=list(flags))  # fmt: skip


def extra_name(extra_runs: list[str], i: int) -> str:
    """The extra run's key: its flags, numbered when the same flags run twice (a cold, then a warm cache)."""
    name = extra_runs[i].strip() or "default"
    return (
        name
        if extra_runs.count(extra_runs[i]) == 1
        else f"{name} #{extra_runs[: i + 1].count(extra_runs[i])}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=240_000)
    p.add_argument("--naive-files", type=int, default=2_000)
    p.add_argument("--max-lengths", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--work", type=Path, default=Path("/tmp/score_cli_bench"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU: check the script")
    p.add_argument("--extra-run", action="append", default=[], metavar="FLAGS", dest="extra_runs",
                   help='one more score.py run after the default one, with these flags (repeatable; e.g. '
                        '--extra-run=--compile), to choose the defaults by measurement')  # fmt: skip
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dev = "cpu" if args.smoke else "cuda"
    texts, langs = bench.load_texts(args.files)
    corpus = args.work / "corpus"
    if not corpus.exists():
        bench.write_corpus(texts, langs, corpus, shards_per_lang=16)
    res = {
        "files": args.files,
        "gpu": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "cpus": os.cpu_count(),
    }
    for L in args.max_lengths:
        ckpt = build_checkpoint(args.work / f"model{L}", args.smoke, dev, max_length=L)
        trained = load_trained(ckpt, device=dev)
        naive_model = trained.model.float().eval()
        naive_model.encoder.config._attn_implementation = "eager"
        bench.score_naive(naive_model, trained.tokenizer, texts[:64], L, dev)  # warm-up
        naive = bench.score_naive(naive_model, trained.tokenizer, texts[: args.naive_files], L, dev)
        naive["tokens_per_s"] = naive["useful_tokens"] / naive["seconds"]
        del naive_model, trained
        if dev == "cuda":
            torch.cuda.empty_cache()
        cli = score_cli(ckpt, corpus, args.work / f"scores{L}", args.out / f"score_cli_len{L}.log", L)
        res[f"len{L}"] = {"naive": naive, "score.py": cli,
                          "speedup_loop": cli["tokens_per_s_loop"] / naive["tokens_per_s"],
                          "speedup_wall": cli["tokens_per_s_wall"] / naive["tokens_per_s"]}  # fmt: skip
        for i, flags in enumerate(args.extra_runs):
            name = extra_name(args.extra_runs, i)
            res[f"len{L}"][f"score.py {name}"] = score_cli(
                ckpt,
                corpus,
                args.work / f"scores{L}_{i}",
                args.out / f"score_cli_len{L}_{i}.log",
                L,
                flags.split(),
            )
        print(json.dumps({f"len{L}": res[f"len{L}"]}, indent=1), flush=True)
        (args.out / "score_cli_bench.json").write_text(json.dumps(res, indent=1))
    print(
        "\n| max_length | naive tokens/s | score.py tokens/s (loop) | score.py tokens/s (wall) | loop x | wall x |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for L in args.max_lengths:
        r = res[f"len{L}"]
        print(f"| {L} | {r['naive']['tokens_per_s']:,.0f} | {r['score.py']['tokens_per_s_loop']:,.0f} | "
              f"{r['score.py']['tokens_per_s_wall']:,.0f} | {r['speedup_loop']:.1f} | {r['speedup_wall']:.1f} |")  # fmt: skip
        for i, flags in enumerate(args.extra_runs):
            c = r[f"score.py {extra_name(args.extra_runs, i)}"]
            print(f"| {L} `{flags}` | | {c['tokens_per_s_loop']:,.0f} | {c['tokens_per_s_wall']:,.0f} | "
                  f"{c['tokens_per_s_loop'] / r['naive']['tokens_per_s']:.1f} | "
                  f"{c['tokens_per_s_wall'] / r['naive']['tokens_per_s']:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
