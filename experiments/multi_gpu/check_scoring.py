"""Multi-GPU scoring gives the same scores as one process, and scales: a check anyone can run on a 2-GPU machine.

    python experiments/multi_gpu/check_scoring.py --files 480000 --out results/

1. Builds a corpus of the shipped sample's real files (all 8 languages) repeated to --files, 16 shards per
   language, and a unixcoder-base-shaped model (RoBERTa, 125M, random weights with heads scaled so that scores
   spread over the whole scale; a byte-level BPE tokenizer of UniXcoder's vocabulary size trained on the sample).
2. Runs `score.py` as users type it, once as one process and once on N GPUs for each of --launchers:
   `score.py --gpus N` (score.py starts its processes itself; the default) and
   `torchrun --standalone --nproc_per_node N score.py`; each run timed from process start to exit, with each
   rank's own log lines (files/s over the loop, time waited).
3. Compares each N-GPU score folder with the single one per id: every id exactly once in both, the largest
   difference of quality, structured_data and any class probability, and the rounded levels that differ.
4. Scores --reference ids (taken from every rank's shards) with an fp32 padded forward of plain Hugging Face
   tokenization and the same weights, and compares the multi-process scores with it.

Exits 1 if any row differs beyond --tolerance on a regression head or --prob-tolerance on a class probability,
if an id is missing or repeated, or if any score row carries an error. `--smoke` runs the same on the CPU with a
tiny model (it checks the script, not the GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "experiments" / "gpu_throughput"))

import bench  # noqa: E402  (the sample loader, corpus writer and tokenizer trainer of the throughput study)

from curator.tasks.trained import load_trained  # noqa: E402


def build_checkpoint(work: Path, smoke: bool, dev: str, max_length: int = 512) -> Path:
    texts, _ = bench.load_texts(4000)
    if smoke:
        bench.ARCH.update(bench.SMOKE)
    work.mkdir(parents=True, exist_ok=True)
    tok = bench.train_tokenizer(texts, work / "tokenizer")
    model = bench.build_model("sdpa").to(dev).eval()
    # A random encoder's pooled vectors differ little from file to file, so random heads give every file
    # nearly the same score, and a wrong read (another file's row) would pass unseen. The heads are set to
    # read the directions along which the pooled vectors vary most (their principal components, from 512
    # files). Scaled to a spread (sd) of 0.5 on quality and 0.4 on structured_data: another file's score is
    # then typically 0.5 away, ten times the 0.05 tolerance, while the bf16 forward's own error, which these
    # heads amplify as much as the spread, stays within it (at a spread of 1 it reached 0.051: run 1).
    with torch.inference_mode():
        pooled = []
        for i in range(0, 512, 32):
            enc = tok(
                texts[i : i + 32], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            hidden = model.encoder(
                input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev)
            )
            pooled.append(hidden.last_hidden_state[:, 0].float())
        x = torch.cat(pooled)
        mean = x.mean(0)
        _, sv, v = torch.linalg.svd(x - mean, full_matrices=False)
        std = sv / (len(x) - 1) ** 0.5
        for head, k, scale, center in ((model.quality, 0, 0.5, 3.0), (model.structured_data, 1, 0.4, 1.5)):
            w = v[k] / std[k] * scale
            head.proj.weight.copy_(w[None])
            head.proj.bias.fill_(center - float(w @ mean))
        n = model.content_type.proj.weight.shape[0]
        w = v[2 : 2 + n] / std[2 : 2 + n, None] * 0.75
        model.content_type.proj.weight.copy_(w)
        model.content_type.proj.bias.copy_(-(w @ mean))
    hp = {
        "encoder": "unixcoder-shaped",
        "encoder_config": bench.encoder_config(),
        "tokenizer": str(work / "tokenizer"),
        "label_set": "full",
        "pooling": "cls",
        "max_length": max_length,
    }
    path = work / "model.ckpt"
    state = {f"model.{k}": v.cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hp}, path)
    return path


def run_score(cmd: list[str], log: Path) -> dict:
    t = time.perf_counter()
    with open(log, "w") as fh:
        r = subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    wall = time.perf_counter() - t
    text = log.read_text()
    ranks = []
    for m in re.finditer(
        r"rank (\d+)/(\d+): .*? (\d+) files scored in ([\d.]+) s: ([\d.]+) files/s, (\d+) tokens/s", text
    ):
        ranks.append(
            dict(
                rank=int(m[1]),
                files=int(m[3]),
                loop_s=float(m[4]),
                files_per_s=float(m[5]),
                tokens_per_s=int(m[6]),
            )
        )
    # The log's `time:` line, stage by stage ("2.0 s to the first batch, 4.1 s waiting for input, ...").
    waits = [
        {
            name.strip().replace(" ", "_"): float(sec)
            for sec, name in re.findall(r"([\d.]+) s ([a-z ]+?)(?=,|;|$)", m[1])
        }
        for m in re.finditer(r"time: (.*)", text)
    ]
    files = sum(r["files"] for r in ranks)
    loop = max((r["loop_s"] for r in ranks), default=float("nan"))
    return dict(cmd=" ".join(cmd), returncode=r.returncode, wall_s=wall, ranks=ranks, waits=waits, files=files,
                files_per_s_loop=files / loop if loop else float("nan"), files_per_s_wall=files / wall)  # fmt: skip


def read_scores(folder: Path) -> dict:
    t = pq.read_table(
        sorted(folder.rglob("*.parquet")),
        columns=["id", "quality", "structured_data", "content_type_probs", "error"],
    )
    d = t.to_pydict()
    return d


def compare(a: dict, b: dict, tol: float, prob_tol: float) -> dict:
    """Per-id comparison of two score folders' columns."""
    res: dict = {}
    for name, d in (("single", a), ("multi", b)):
        ids = d["id"]
        res[f"{name}_rows"] = len(ids)
        res[f"{name}_repeated_ids"] = len(ids) - len(set(ids))
        res[f"{name}_errors"] = sum(e is not None for e in d["error"])
    ia = {k: i for i, k in enumerate(a["id"])}
    ib = {k: i for i, k in enumerate(b["id"])}
    res["only_in_single"] = len(ia.keys() - ib.keys())
    res["only_in_multi"] = len(ib.keys() - ia.keys())
    common = sorted(ia.keys() & ib.keys())
    xa = [ia[k] for k in common]
    xb = [ib[k] for k in common]
    q = np.abs(np.array(a["quality"], np.float64)[xa] - np.array(b["quality"], np.float64)[xb])
    s = np.abs(
        np.array(a["structured_data"], np.float64)[xa] - np.array(b["structured_data"], np.float64)[xb]
    )
    pa_ = np.array([a["content_type_probs"][i] for i in xa], np.float64)
    pb_ = np.array([b["content_type_probs"][i] for i in xb], np.float64)
    p = np.abs(pa_ - pb_).max(1)
    qa, qb = np.array(a["quality"])[xa], np.array(b["quality"])[xb]
    sa, sb = np.array(a["structured_data"])[xa], np.array(b["structured_data"])[xb]
    res.update(
        compared=len(common),
        quality_max_abs_diff=float(q.max()),
        structured_data_max_abs_diff=float(s.max()),
        content_type_prob_max_abs_diff=float(p.max()),
        quality_levels_differ=int((np.clip(np.rint(qa), 1, 5) != np.clip(np.rint(qb), 1, 5)).sum()),
        structured_data_levels_differ=int((np.clip(np.rint(sa), 0, 3) != np.clip(np.rint(sb), 0, 3)).sum()),
        content_type_differs=int((pa_.argmax(1) != pb_.argmax(1)).sum()),
        rows_beyond_tolerance=int(((q > tol) | (s > tol) | (p > prob_tol)).sum()),
        quality_spread_std=float(np.std(qa)),
    )
    return res


def reference(ckpt: Path, corpus: Path, multi: dict, n: int, dev: str, tol: float, prob_tol: float) -> dict:
    """fp32 padded forward, plain Hugging Face tokenization, on n ids spread over every shard."""
    trained = load_trained(ckpt, device=dev)
    model, tok, L = trained.model.float().eval(), trained.tokenizer, trained.max_length
    contents = {}
    shards = sorted(corpus.rglob("*.parquet"))
    per = max(1, n // len(shards))
    for f in shards:
        t = pq.read_table(f, columns=["id", "content"]).slice(0, per).to_pydict()
        contents.update(zip(t["id"], t["content"], strict=True))
    ids = sorted(contents)[:n]
    index = {k: i for i, k in enumerate(multi["id"])}
    diffs_q, diffs_s, diffs_p = [], [], []
    with torch.inference_mode():
        for i in range(0, len(ids), 16):
            chunk = ids[i : i + 16]
            enc = tok(
                [contents[k] for k in chunk], truncation=True, max_length=L, padding=True, return_tensors="pt"
            )
            out = model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))
            probs = out["content_type"].softmax(-1).cpu().numpy()
            for j, k in enumerate(chunk):
                r = index[k]
                diffs_q.append(abs(float(out["quality"][j]) - multi["quality"][r]))
                diffs_s.append(abs(float(out["structured_data"][j]) - multi["structured_data"][r]))
                diffs_p.append(float(np.abs(probs[j] - np.array(multi["content_type_probs"][r])).max()))
    q, s, p = map(np.array, (diffs_q, diffs_s, diffs_p))
    return dict(
        files=len(ids),
        quality_max_abs_diff=float(q.max()),
        structured_data_max_abs_diff=float(s.max()),
        content_type_prob_max_abs_diff=float(p.max()),
        rows_beyond_tolerance=int(((q > tol) | (s > tol) | (p > prob_tol)).sum()),
    )


# The command of a multi-process run on n GPUs, from score.py's own arguments.
LAUNCHERS = {
    "gpus": lambda n, args: [sys.executable, *args, "--gpus", str(n)],
    "torchrun": lambda n, args: [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n}",
        *args,
    ],  # fmt: skip
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=240_000)
    p.add_argument("--nproc", type=int, default=2, help="processes (GPUs) of the multi-process run")
    p.add_argument(
        "--launchers",
        nargs="+",
        choices=LAUNCHERS,
        default=["gpus"],
        help="how the multi-process runs start: score.py --gpus N, torchrun, or both (default: gpus)",
    )
    p.add_argument("--reference", type=int, default=384, help="ids checked against the fp32 padded forward")
    p.add_argument("--tolerance", type=float, default=0.05, help="on quality and structured_data")
    p.add_argument("--prob-tolerance", type=float, default=0.02, help="on any content-type probability")
    p.add_argument("--extra", default="", help="more score.py flags for both runs")
    p.add_argument("--work", type=Path, default=Path("/tmp/multi_gpu_check"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU: check the script")
    args = p.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    dev = "cpu" if args.smoke else "cuda"
    res: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__, "cpus": os.cpu_count(),
                 "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}  # fmt: skip
    t = time.perf_counter()
    texts, langs = bench.load_texts(args.files)
    corpus = args.work / "corpus"
    bench.write_corpus(texts, langs, corpus, shards_per_lang=16)
    del texts, langs
    ckpt = build_checkpoint(args.work, args.smoke, dev)
    res["setup_s"] = time.perf_counter() - t
    print(f"corpus of {args.files} files and model ready in {res['setup_s']:.0f} s", flush=True)

    common = ["score.py", "--model", str(ckpt), "--corpus", str(corpus), "--no-progress", *args.extra.split()]
    if args.smoke:
        common += ["--device", "cpu"]  # --gpus N on the CPU: N processes there
    single = run_score([sys.executable, *common, "--out", str(args.work / "single")], args.out / "single.log")
    print("single:", json.dumps(single), flush=True)
    res["single"], res["launchers"] = single, {}
    a = read_scores(args.work / "single")
    res["reference_single"] = reference(
        ckpt, corpus, a, args.reference, dev, args.tolerance, args.prob_tolerance
    )
    problems = [f"score.py exited {single['returncode']} (single)"] if single["returncode"] else []
    for launcher in args.launchers:
        out = args.work / f"multi_{launcher}"
        multi = run_score(
            LAUNCHERS[launcher](args.nproc, [*common, "--out", str(out)]), args.out / f"{launcher}.log"
        )
        print(f"{launcher}:", json.dumps(multi), flush=True)
        multi["speedup_loop"] = multi["files_per_s_loop"] / single["files_per_s_loop"]
        multi["speedup_wall"] = single["wall_s"] / multi["wall_s"]
        b = read_scores(out)
        multi["agreement"] = ag = compare(a, b, args.tolerance, args.prob_tolerance)
        multi["reference"] = ref = reference(
            ckpt, corpus, b, args.reference, dev, args.tolerance, args.prob_tolerance
        )
        res["launchers"][launcher] = multi
        print(
            json.dumps(
                {k: multi[k] for k in ("speedup_loop", "speedup_wall", "agreement", "reference")}, indent=1
            )
        )
        shutil.rmtree(out, ignore_errors=True)  # the disk holds one multi-process folder at a time
        if multi["returncode"]:
            problems.append(f"{launcher}: score.py exited {multi['returncode']}")
        for key in ("single_repeated_ids", "multi_repeated_ids", "only_in_single", "only_in_multi", "single_errors",
                    "multi_errors", "rows_beyond_tolerance"):  # fmt: skip
            if ag[key]:
                problems.append(f"{launcher}: {key}: {ag[key]}")
        if ag["single_rows"] != args.files or ag["multi_rows"] != args.files:
            problems.append(
                f"{launcher}: rows: {ag['single_rows']} single, {ag['multi_rows']} multi, {args.files} in the corpus"
            )
        if ref["rows_beyond_tolerance"]:
            problems.append(
                f"{launcher}: {ref['rows_beyond_tolerance']} of {ref['files']} rows differ from the fp32 reference"
            )
    (args.out / "check_scoring.json").write_text(json.dumps(res, indent=1))
    for line in problems:
        print("FAIL:", line)
    print("PASS" if not problems else f"FAIL ({len(problems)} problems)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
