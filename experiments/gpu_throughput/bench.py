"""GPU throughput of scoring and training, baseline and curator's paths side by side in one run.

Model: a unixcoder-base-shaped encoder (RoBERTa, 125M parameters, 1026 positions) with curator's three heads,
random weights (speed does not depend on weight values). Inputs: the real files of the shipped sample
(data/sample, all 8 languages), repeated to --files, in a shuffled order: a heavy-tailed length distribution of
real code. Tokenizer: a byte-level BPE of UniXcoder's vocabulary size trained on the same files at start (the
hub's tokenizer is out of reach on the GPU machine; tokenization cost per character is what matters here).

Printed and written to results.json:
- peak: an 8192^3 bf16 matmul measured now, the ceiling for model FLOP utilisation (MFU);
- score/naive: a plain Hugging Face loop: fp32, eager attention, batch 16, padded to max_length, tokenizer
  called in the loop, files in corpus order (what a first script looks like);
- score/curator: `curator.scoring.score_corpus` end to end (parquet in, parquet out, tokenization in worker
  processes, length-sorted token-budget batches, packed bf16 encoder);
- agreement: curator's packed bf16 scores against an fp32 padded reference on the same files;
- train/seed_*: the seed's recipe: batch 16 padded to max_length, bf16 autocast, AdamW with clipping;
- train/curator_*: curator's training step: length-grouped batches padded to the longest file; `compiled` adds
  torch.compile of the encoder with dynamic shapes (`model.compile`), `graphs` captures it as CUDA graphs with
  widths rounded up to a multiple of 64 (`model.compile_mode=reduce-overhead data.pad_to_multiple_of=64`),
  `packed` trains on the files unpadded with Flash Attention (`model.packed=true`, as `+experiment=fast512`);
  `--profile RUN` prints where a step's time goes.
Useful tokens are real (non-padding) tokens; MFU counts the FLOPs of useful tokens only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from curator.labels import LABEL_SETS  # noqa: E402
from curator.models.classifier import CuratorClassifier  # noqa: E402
from curator.tasks.trained import TrainedModel  # noqa: E402

UNIXCODER = dict(
    vocab_size=51416,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=1026,
    type_vocab_size=10,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
)


def flops_per_token(seq_len: int, d=768, layers=12, ff=3072) -> float:
    """Forward FLOPs per token: the linear layers plus attention over a sequence of seq_len."""
    return 2 * layers * (4 * d * d + 2 * d * ff) + 2 * layers * 2 * seq_len * d


def useful_flops(lengths) -> float:
    return float(sum(flops_per_token(n) * n for n in lengths))


def matmul_peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12


def load_texts(n_files: int, seed: int = 0) -> tuple[list[str], list[str]]:
    texts, langs = [], []
    for f in sorted((REPO / "data/sample").glob("*/*.parquet")):
        col = pq.read_table(f, columns=["content"]).column("content").to_pylist()
        texts += col
        langs += [f.parent.name] * len(col)
    rng = random.Random(seed)
    order = [rng.randrange(len(texts)) for _ in range(n_files)]
    return [texts[i] for i in order], [langs[i] for i in order]


def train_tokenizer(texts: list[str], out_dir: Path) -> PreTrainedTokenizerFast:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts,
        vocab_size=UNIXCODER["vocab_size"] - 5,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>",
    )  # fmt: skip
    from tokenizers.processors import RobertaProcessing

    tok._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.save_pretrained(out_dir)
    return tok


# --smoke shrinks the model so the whole script can be checked on a CPU before it spends GPU time.
SMOKE = dict(UNIXCODER, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
ARCH = dict(UNIXCODER)


def encoder_config() -> dict:
    return {"model_type": "roberta", **ARCH}


def sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def build_model(attn: str) -> CuratorClassifier:
    cfg = RobertaConfig(**ARCH)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    enc = RobertaModel(cfg, add_pooling_layer=False)
    return CuratorClassifier(enc, num_content_types=len(LABEL_SETS["full"].classes), pooling="cls")


def timed(fn, dev="cuda"):
    sync(dev)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    return out, time.perf_counter() - t


def score_naive(model, tok, texts, max_length, dev, bs=16):
    """A first script: fp32, eager attention, padded to max_length, batch 16, corpus order."""
    useful = []

    def run():
        with torch.inference_mode():
            for i in range(0, len(texts), bs):
                b = tok(texts[i : i + bs], padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt")  # fmt: skip
                useful.extend(b["attention_mask"].sum(1).tolist())
                out = model(b["input_ids"].to(dev), b["attention_mask"].to(dev))
                out["quality"].cpu()

    _, dt = timed(run, dev)
    return dict(files=len(texts), seconds=dt, useful_tokens=int(sum(useful)), flops=useful_flops(useful))


def write_corpus(texts, langs, root: Path, shards_per_lang=8):
    by_lang: dict[str, list[int]] = {}
    for i, lang in enumerate(langs):
        by_lang.setdefault(lang, []).append(i)
    for lang, idx in by_lang.items():
        for s, chunk in enumerate(np.array_split(np.array(idx), shards_per_lang)):
            rows = [int(i) for i in chunk]
            t = pa.table({
                "id": [f"{lang}-{i}" for i in rows],
                "content": [texts[i] for i in rows],
                "max_stars_repo_path": [f"f{i}" for i in rows],
                "max_stars_repo_name": ["bench"] * len(rows),
                "max_stars_count": [0] * len(rows),
            })  # fmt: skip
            (root / lang).mkdir(parents=True, exist_ok=True)
            pq.write_table(t, root / lang / f"train-{s:05d}.parquet")


def score_curator(
    model,
    tok,
    texts,
    langs,
    max_length,
    workdir: Path,
    tokens_per_batch,
    num_workers,
    dev,
    compile=False,
    rows_per_part=1000,
):
    from curator.scoring.runner import score_corpus

    corpus = workdir / "corpus"
    if not corpus.exists():
        write_corpus(texts, langs, corpus)
    out = workdir / f"scores{max_length}-{time.time_ns()}"
    trained = TrainedModel(model=model, tokenizer=tok, label_set=LABEL_SETS["full"], max_length=max_length)
    summary, dt = timed(
        lambda: score_corpus(
            trained,
            corpus,
            out,
            tokens_per_batch=tokens_per_batch,
            num_workers=num_workers,
            device=dev,
            progress=False,
            compile=compile,
            rows_per_part=rows_per_part,
            window=rows_per_part,
        ),  # fmt: skip
        dev,
    )
    scores = pq.read_table(sorted(out.rglob("*.parquet")), columns=["id", "num_tokens", "quality", "error"])
    n_tok = [min(n + 2, max_length) for n in scores.column("num_tokens").to_pylist() if n is not None]
    assert scores.num_rows == len(texts), (scores.num_rows, len(texts))
    return dict(files=scores.num_rows, seconds=dt, useful_tokens=int(sum(n_tok)), flops=useful_flops(n_tok),
                errors=int(sum(e is not None for e in scores.column("error").to_pylist())),
                summary_tokens=summary.tokens, compile=compile, first_batch_s=summary.first_batch_s,
                input_wait_s=summary.input_wait_s, gpu_wait_s=summary.gpu_wait_s, write_s=summary.write_s,
                loop_s=summary.seconds), out  # fmt: skip


def agreement(model, tok, texts, max_length, dev, n=256):
    """Packed bf16 scores against an fp32 padded reference on the same files."""
    from curator.data.inputs import pack
    from curator.models.packed import PackedClassifier

    ids = tok(texts[:n], truncation=True, max_length=max_length)["input_ids"]
    ref_q, ref_s, ref_c, got_q, got_s, got_c = [], [], [], [], [], []
    model_fp32 = model.float()
    with torch.inference_mode():
        for i in range(0, n, 32):
            chunk = ids[i : i + 32]
            width = max(map(len, chunk))
            x = torch.full((len(chunk), width), UNIXCODER["pad_token_id"])
            m = torch.zeros_like(x)
            for j, s in enumerate(chunk):
                x[j, : len(s)] = torch.tensor(s)
                m[j, : len(s)] = 1
            r = model_fp32(x.to(dev), m.to(dev))
            (
                ref_q.append(r["quality"]),
                ref_s.append(r["structured_data"]),
                ref_c.append(r["content_type"].softmax(-1)),
            )
    if dev == "cuda":
        model.encoder.to(torch.bfloat16)
    packed = PackedClassifier(model)
    for i in range(0, n, 32):
        g = packed(*pack(ids[i : i + 32], device=dev))
        (
            got_q.append(g["quality"]),
            got_s.append(g["structured_data"]),
            got_c.append(g["content_type"].softmax(-1)),
        )
    model.encoder.float()
    cat = torch.cat
    return dict(
        files=n,
        quality_max_abs_diff=float((cat(got_q) - cat(ref_q)).abs().max()),
        structured_data_max_abs_diff=float((cat(got_s) - cat(ref_s)).abs().max()),
        content_type_prob_max_abs_diff=float((cat(got_c) - cat(ref_c)).abs().max()),
        quality_level_agreement=float(
            (cat(got_q).add(0.5).floor() == cat(ref_q).add(0.5).floor()).float().mean()
        ),
    )


_ENCODED: dict = {}


def train_examples(tok_dir, texts, max_length):
    """Tokenized training rows (curator's encode_rows, which tokenizes each file's head), once per max_length."""
    from curator.data.batching import encode_rows
    from curator.data.inputs import InputEncoder

    if max_length not in _ENCODED:
        rng = random.Random(0)
        rows = [{"id": str(i), "language": "x", "content": t, "quality": rng.randint(1, 5),
                 "structured_data": rng.randint(0, 3), "content_type": rng.choice(LABEL_SETS["full"].classes)}
                for i, t in enumerate(texts)]  # fmt: skip
        tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
        _ENCODED[max_length] = encode_rows(rows, InputEncoder(tok, max_length), LABEL_SETS["full"])[0]
    return _ENCODED[max_length]


def train_throughput(
    tok_dir,
    texts,
    max_length,
    recipe: str,
    steps: int,
    batch_size: int,
    dev: str,
    compile: str | None = None,
    profile: bool = False,
    packed: bool = False,
):
    """Optimizer steps of the seed's recipe or curator's, timed after a warm-up, on the same files.

    Both run `CuratorTask._step` (the three heads and the weighted loss) under bf16 autocast, then what
    train.py's Trainer does after it: gradient clipping at norm 1.0 and AdamW (fused on a GPU, as
    `CuratorTask.configure_optimizers` builds it). They differ in the batches: the seed's
    are 16 files in corpus order padded to max_length, curator's are built by `curator.data.batching` (buffers
    sorted by length, each batch padded to its longest file, batches shuffled). compile: None (eager),
    "default" (torch.compile with dynamic shapes, `model.compile=true`) or "reduce-overhead" (the same captured
    as CUDA graphs, batch widths rounded up to a multiple of 64: `model.compile_mode=reduce-overhead
    data.pad_to_multiple_of=64`). packed: batches also carry the files unpadded, as the DataModule's workers
    build them, and the encoder runs on real tokens with Flash Attention (`model.packed=true`). Lightning's own per-step work is left out
    (train_cli_bench.py has it).
    """
    from curator.data.batching import length_grouped, make_batch
    from curator.tasks.module import CuratorTask

    task = CuratorTask(encoder="unixcoder-shaped", tokenizer=str(tok_dir), encoder_config=encoder_config(),
                       max_length=max_length, pooling="cls", packed=packed)  # fmt: skip
    model = task.to(dev).train()
    if recipe == "seed":
        torch.backends.cuda.enable_cudnn_sdp(True)  # PyTorch's default
    else:
        task.setup("fit")  # curator's training setup: attention off cuDNN (see avoid_cudnn_attention)
    if compile:
        mode = None if compile == "default" else compile
        # as CuratorTask.on_fit_start does
        encoder = model.model.encoder if task.packed_encoder is None else task.packed_encoder
        encoder.compile(dynamic=True, mode=mode)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-5, fused=dev == "cuda" or None)
    rng = random.Random(0)
    examples = train_examples(tok_dir, texts, max_length)
    pad = UNIXCODER["pad_token_id"]
    multiple_of = 64 if compile == "reduce-overhead" else 1
    if recipe == "seed":
        batches = []
        for i in range(0, len(examples) - batch_size + 1, batch_size):
            b = make_batch(examples[i : i + batch_size], pad)
            extra = max_length - b["input_ids"].shape[1]  # the seed pads every batch to max_length
            b["input_ids"] = F.pad(b["input_ids"], (0, extra), value=pad)
            b["attention_mask"] = F.pad(b["attention_mask"], (0, extra), value=0)
            batches.append(b)
    else:
        batches = []
        for group in length_grouped(examples, batch_size, 64, rng):
            # packed: as the DataModule's workers pack them with data.packed=true
            batches.append(make_batch(group, pad, packed, multiple_of, max_length))
    batches = [{k: v.pin_memory() if dev == "cuda" and torch.is_tensor(v) else v for k, v in b.items()}
               for b in batches[:steps]]  # fmt: skip
    autocast = torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda")

    def step(b):
        b = {k: v.to(dev, non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()}
        with autocast:
            loss, _, _ = task._step(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # Warm-up: compiling for dynamic shapes takes a few distinct widths, and CUDA graphs are recorded on
    # the second or third call of each shape, so every shape of the timed batches runs three times first.
    shapes: dict = {}
    for b in batches:
        shapes.setdefault(tuple(b["input_ids"].shape), b)
    warm = [b for b in shapes.values() for _ in range(3)] if compile else batches[:5]
    for b in warm:
        step(b)
    sync(dev)
    t = time.perf_counter()
    lengths = []
    for k in range(steps):
        b = batches[k % len(batches)]
        step(b)
        lengths += b["attention_mask"].sum(1).tolist()
    sync(dev)
    dt = time.perf_counter() - t
    res = dict(steps=steps, batch_size=batch_size, files=len(lengths), seconds=dt, useful_tokens=int(sum(lengths)),
               flops=3 * useful_flops(lengths), shapes=len(shapes))  # fmt: skip
    if profile:
        res["profile"] = profile_steps(step, batches[:20], dev)
    return res


def profile_steps(step, batches, dev) -> dict:
    """Where a step's time goes: wall time against the GPU's busy time, and the costliest operators."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    sync(dev)
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        for b in batches:
            step(b)
        sync(dev)
        wall = time.perf_counter() - t
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events)
    kernels = sum(e.count for e in events if e.self_device_time_total > 0)
    table = events.table(sort_by="self_device_time_total" if dev == "cuda" else "self_cpu_time_total",
                         row_limit=25)  # fmt: skip
    print(table, flush=True)
    n = len(batches)
    return dict(steps=n, wall_ms_per_step=1e3 * wall / n, gpu_busy_ms_per_step=gpu_us / 1e3 / n,
                device_ops_per_step=kernels / n)  # fmt: skip


TRAIN_RUNS = [
    "seed_bs16",
    "seed_compiled_bs16",
    "curator_bs16",
    "curator_compiled_bs16",
    "curator_graphs_bs16",
    "curator_packed_compiled_bs16",
    "curator_compiled_bs64",
    "curator_packed_compiled_bs64",
    "curator_graphs_bs64",
]


def rates(r: dict, peak: float) -> dict:
    r["files_per_s"] = r["files"] / r["seconds"]
    r["useful_tokens_per_s"] = r["useful_tokens"] / r["seconds"]
    r["mfu"] = r["flops"] / r["seconds"] / 1e12 / peak
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=120_000, help="files scored by curator's path")
    p.add_argument(
        "--naive-files", type=int, default=2_000, help="files scored by the naive loop (it is slow)"
    )
    p.add_argument("--max-lengths", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--tokens-per-batch", type=int, default=131072)
    p.add_argument("--num-workers", type=int, default=14)
    p.add_argument("--train-files", type=int, default=8_000)
    p.add_argument("--train-steps", type=int, default=60)
    p.add_argument(
        "--compile-score", action="store_true", help="also time score.py --compile (first max length)"
    )
    p.add_argument(
        "--train-runs",
        nargs="+",
        default=TRAIN_RUNS,
        help="training runs: recipe (seed, curator), then any of packed (unpadded, Flash Attention), compiled "
        "(torch.compile) or graphs (torch.compile captured as CUDA graphs, widths rounded to 64), then the "
        "batch size, joined by _",
    )
    p.add_argument("--profile", nargs="*", default=[], help="training runs to profile after timing")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="parts to skip: naive score agreement train, or a training run such as seed_compiled_bs16",
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny model on the CPU: check the script, not the speed"
    )
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()

    dev = "cpu" if args.smoke else "cuda"
    if args.smoke:
        ARCH.update(SMOKE)
    torch.backends.cuda.matmul.allow_tf32 = True
    out_file = Path(args.out, "results.json")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__,
           "args": vars(args)}  # fmt: skip

    def save():
        out_file.write_text(json.dumps(res, indent=1))

    res["peak_bf16_tflops"] = peak = matmul_peak() if dev == "cuda" else float("nan")
    texts, langs = load_texts(args.files)
    work = Path(tempfile.mkdtemp())
    tok = train_tokenizer(texts[:4000], work / "tokenizer")
    chars = np.array([len(t) for t in texts])
    res["chars_per_file"] = dict(
        median=float(np.median(chars)), p90=float(np.percentile(chars, 90)), mean=float(chars.mean())
    )
    model = build_model("sdpa").to(dev).eval()
    for L in args.max_lengths:
        tag = f"len{L}"
        if "naive" not in args.skip:
            naive = build_model("eager").to(dev).eval()
            score_naive(naive, tok, texts[:64], L, dev)  # warm-up
            res[f"score/naive/{tag}"] = rates(
                score_naive(naive, tok, texts[: args.naive_files], L, dev), peak
            )
            del naive
            save()
        if "score" not in args.skip:
            warm = dict(tokens_per_batch=args.tokens_per_batch, num_workers=args.num_workers, dev=dev)
            score_curator(model, tok, texts[:2000], langs[:2000], L, work / f"warm{L}", **warm)
            r, _ = score_curator(model, tok, texts, langs, L, work, **warm)
            res[f"score/curator/{tag}"] = rates(r, peak)
            if f"score/naive/{tag}" in res:
                res[f"score/speedup_vs_naive/{tag}"] = (
                    res[f"score/curator/{tag}"]["useful_tokens_per_s"]
                    / res[f"score/naive/{tag}"]["useful_tokens_per_s"]
                )
            save()
        if "agreement" not in args.skip:
            res[f"agreement/{tag}"] = agreement(model, tok, texts, L, dev)
            model.float()
            save()
        if "train" not in args.skip:
            for name_run in args.train_runs:
                recipe, *flags, bs = name_run.split("_")
                if not set(flags) <= {"compiled", "graphs", "packed"}:
                    raise SystemExit(f"unknown training run {name_run!r}: see --train-runs")
                compile = (
                    "reduce-overhead" if "graphs" in flags else "default" if "compiled" in flags else None
                )
                name = f"train/{name_run}/{tag}"
                if name_run in args.skip:
                    continue
                try:
                    r = train_throughput(
                        work / "tokenizer",
                        texts[: args.train_files],
                        L,
                        recipe,
                        args.train_steps,
                        int(bs.removeprefix("bs")),
                        dev,
                        compile,
                        profile=name_run in args.profile,
                        packed="packed" in flags,
                    )
                    res[name] = rates(r, peak)
                except Exception as e:  # compile support differs between torch builds; the rest stands
                    res[name] = {"error": repr(e)[:500]}
                if dev == "cuda":
                    torch.cuda.empty_cache()
                save()
        print(json.dumps({k: v for k, v in res.items() if tag in k}, indent=1), flush=True)
    if args.compile_score and "score" not in args.skip:
        L = args.max_lengths[0]
        warm = dict(
            tokens_per_batch=args.tokens_per_batch, num_workers=args.num_workers, dev=dev, compile=True
        )
        try:
            score_curator(model, tok, texts[:2000], langs[:2000], L, work / "warmc", **warm)
            r, _ = score_curator(model, tok, texts, langs, L, work, **warm)
            res[f"score/curator_compiled/len{L}"] = rates(r, peak)
        except Exception as e:  # compile support differs between torch builds; the rest stands
            res[f"score/curator_compiled/len{L}"] = {"error": repr(e)[:500]}
        save()
    save()
    print("\n| measurement | files/s | useful tokens/s | MFU |\n|---|---|---|---|")
    for k, v in res.items():
        if isinstance(v, dict) and "files_per_s" in v:
            print(f"| {k} | {v['files_per_s']:,.0f} | {v['useful_tokens_per_s']:,.0f} | {v['mfu']:.1%} |")
    for k, v in res.items():
        if k.startswith("score/speedup") or k.startswith("agreement"):
            print(k, v)
        if k.startswith("score/curator") and "loop_s" in v:
            print(f"{k}: {v['seconds']:.1f} s in all, {v['first_batch_s']:.1f} s to the first batch; main loop "
                  f"{v['loop_s']:.1f} s: waited {v['input_wait_s']:.1f} s for input, {v['gpu_wait_s']:.1f} s "
                  f"for the GPU, {v['write_s']:.1f} s writing")  # fmt: skip
    for L in args.max_lengths:
        seed = res.get(f"train/seed_bs16/len{L}", {}).get("files_per_s")
        for k, v in res.items():
            if seed and k.startswith("train/curator") and k.endswith(f"len{L}") and "files_per_s" in v:
                print(f"{k}: {v['files_per_s'] / seed:.2f}x the seed's files/s")
    print(f"peak bf16 matmul: {peak:.0f} TFLOP/s on {res['device']}")


if __name__ == "__main__":
    main()
