"""Long files: how many are truncated, and does scoring them in windows (score.py --max-windows) agree with the gold
labels better than scoring their head alone?

    python experiments/long_files/measure.py --model models/quickstart --name quickstart_cpu128
    python experiments/long_files/measure.py --model models/student512 --name student512_gpu   # on a GPU

1. Truncation: every file of the shipped sample (data/sample) and of the gold set (data/gold/gold.parquet),
   tokenized whole with the model's tokenizer and input options (path line, code markers): the share of files
   longer than a window of 128, 512 and 1024 tokens, and what windows would cost on the sample (tokens through
   the model with up to N windows over the head alone, from `InputEncoder.windows`, no model run).
2. Agreement: the gold files are written as a corpus and scored by `score.py` as typed (a subprocess), once
   with the head only and once per `--max-windows N`; the scores are joined with the gold labels by id. On the
   long files (truncated at the model's own max_length in the head-only run) and on all files: quality and
   structured_data Spearman and MAE, content-type accuracy and macro F1 (curator.tasks.metrics, as train.py
   reports the gold set), with a paired bootstrap interval of each difference (windows less head), and the
   tokens each run put through the model (from its log).

Writes results/<name>.json and prints the tables as Markdown.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curator.data.inputs import InputEncoder
from curator.tasks.metrics import evaluate, rank_correlation
from curator.tasks.trained import load_trained

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LENGTHS = (128, 512, 1024)
TOKENS_LINE = re.compile(r"tokens: ([\d,]+) through the model")


def corpus_files(root: Path) -> list[dict]:
    rows = []
    for f in sorted(root.glob("*/*.parquet")):
        for r in pq.read_table(f, columns=["id", "content", "max_stars_repo_path"]).to_pylist():
            rows.append({"id": r["id"], "content": r["content"], "path": r["max_stars_repo_path"]})
    return rows


def truncation(rows: list[dict], trained, max_windows: list[int]) -> dict:
    """Shares of files longer than each window length, and the sample's token cost of windows."""
    whole = InputEncoder(trained.tokenizer, max(LENGTHS), 10**9, trained.code_markers, trained.with_path)
    contents, paths = [r["content"] for r in rows], [r["path"] for r in rows]
    tokens = np.array([x.num_tokens for x in whole.encode(contents, paths)])
    specials = len(whole.prefix) + len(whole.suffix)
    out = {
        "files": len(rows),
        "median_tokens": float(np.median(tokens)),
        "truncated_share": {str(n): float((tokens > n - specials).mean()) for n in LENGTHS},
    }
    encoder = trained.input_encoder()
    head = None
    out["cost_ratio"] = {}
    for n in [1, *max_windows]:
        wins = encoder.windows(contents, paths, n)
        spent = sum(len(x.ids) for w in wins for x in w)
        head = spent if n == 1 else head
        out["cost_ratio"][str(n)] = {
            "tokens": spent,
            "ratio": spent / head,
            "windows_per_file": sum(map(len, wins)) / len(wins),
            "still_truncated_share": float(np.mean([w[-1].truncated for w in wins])),
        }
    return out


def write_gold_corpus(gold: Path, root: Path) -> list[dict]:
    rows = pq.read_table(gold).to_pylist()
    for language in sorted({r["language"] for r in rows}):
        mine = [r for r in rows if r["language"] == language]
        (root / language).mkdir(parents=True, exist_ok=True)
        table = pa.table({
            "id": [r["id"] for r in mine],
            "content": [r["content"] for r in mine],
            "max_stars_repo_path": [r["path"] for r in mine],
            "max_stars_repo_name": [r["repo"] for r in mine],
            "max_stars_count": [0] * len(mine),
        })  # fmt: skip
        pq.write_table(table, root / language / "gold.parquet")
    return rows


def score(model: str, corpus: Path, out: Path, max_windows: int, extra: list[str]) -> tuple[dict, int]:
    """score.py as typed; the scores by id and the tokens it put through the model."""
    cmd = [sys.executable, str(REPO / "score.py"), "--model", model, "--corpus", str(corpus), "--out", str(out),
           "--no-progress", "--max-windows", str(max_windows), *extra]  # fmt: skip
    print("$", " ".join(cmd[1:]), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"score.py failed:\n{proc.stderr[-3000:]}")
    tokens = int(TOKENS_LINE.search(proc.stderr)[1].replace(",", ""))
    rows = {}
    for f in sorted(out.glob("*/*.parquet")):
        for r in pq.read_table(f).to_pylist():
            rows[r["id"]] = r
    return rows, tokens


def metrics(gold: list[dict], scores: dict, label_set) -> dict:
    preds = {
        "quality": np.array([scores[g["id"]]["quality"] for g in gold]),
        "structured_data": np.array([scores[g["id"]]["structured_data"] for g in gold]),
        "content_type": np.array([label_set.classes.index(scores[g["id"]]["content_type"]) for g in gold]),
    }
    targets = {
        "quality": np.array([g["quality"] for g in gold]),
        "structured_data": np.array([g["structured_data"] for g in gold]),
        "content_type": np.array([label_set.index(g["content_type"]) for g in gold]),
    }
    report = evaluate(preds, targets, label_set.classes)
    return {
        "files": len(gold),
        "quality_spearman": report["quality"]["spearman"],
        "quality_mae": report["quality"]["mae"],
        "structured_data_spearman": report["structured_data"]["spearman"],
        "structured_data_mae": report["structured_data"]["mae"],
        "content_type_accuracy": report["content_type"]["accuracy"],
        "content_type_macro_f1": report["content_type"]["macro_f1"],
    }


def _point(pred: dict, target: dict, idx: np.ndarray) -> np.ndarray:
    q, s, c = (pred[k][idx] for k in ("quality", "structured_data", "content_type"))
    tq, ts, tc = (target[k][idx] for k in ("quality", "structured_data", "content_type"))
    return np.array([rank_correlation(q, tq), np.abs(q - tq).mean(), rank_correlation(s, ts),
                     np.abs(s - ts).mean(), (c == tc).mean()])  # fmt: skip


def bootstrap(gold: list[dict], head: dict, windows: dict, label_set, n: int = 2000, seed: int = 0) -> dict:
    """95% paired bootstrap intervals of windows less head, over the files."""
    target = {
        "quality": np.array([g["quality"] for g in gold], dtype=float),
        "structured_data": np.array([g["structured_data"] for g in gold], dtype=float),
        "content_type": np.array([g["content_type"] for g in gold], dtype=object),
    }

    def arrays(scores):
        return {
            "quality": np.array([scores[g["id"]]["quality"] for g in gold], dtype=float),
            "structured_data": np.array([scores[g["id"]]["structured_data"] for g in gold], dtype=float),
            # Compared as the gold label's class in the model's label set.
            "content_type": np.array([scores[g["id"]]["content_type"] for g in gold], dtype=object),
        }

    target["content_type"] = np.array([label_set.mapping[c] for c in target["content_type"]], dtype=object)
    a, b = arrays(head), arrays(windows)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(gold), len(gold))
        diffs.append(_point(b, target, idx) - _point(a, target, idx))
    lo, hi = np.nanpercentile(np.array(diffs), [2.5, 97.5], axis=0)
    names = ["quality_spearman", "quality_mae", "structured_data_spearman", "structured_data_mae",
             "content_type_accuracy"]  # fmt: skip
    return {k: [float(x), float(y)] for k, x, y in zip(names, lo, hi, strict=True)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="a model folder from export.py, a checkpoint or a Hub id")
    p.add_argument("--name", help="the result's name, results/<name>.json (default: the model's folder name)")
    p.add_argument("--max-windows", type=int, nargs="+", default=[4, 16, 64], help="window caps to compare")
    p.add_argument("--sample", type=Path, default=REPO / "data" / "sample")
    p.add_argument("--gold", type=Path, default=REPO / "data" / "gold" / "gold.parquet")
    p.add_argument("--score-args", default="", help="more score.py arguments, e.g. '--device cuda:0'")
    args = p.parse_args()
    name = args.name or Path(args.model.rstrip("/")).name
    trained = load_trained(args.model)
    result = {"model": args.model, "max_length": trained.max_length, "with_path": trained.with_path,
              "code_markers": trained.code_markers, "label_set": trained.label_set.name}  # fmt: skip

    sample = corpus_files(args.sample)
    with tempfile.TemporaryDirectory() as tmp:
        gold = write_gold_corpus(args.gold, Path(tmp) / "gold")
        gold_files = [{"id": g["id"], "content": g["content"], "path": g["path"]} for g in gold]
        result["truncation"] = {
            "sample": truncation(sample, trained, args.max_windows),
            "gold": truncation(gold_files, trained, args.max_windows),
        }
        runs = {}
        for n in [1, *args.max_windows]:
            runs[n] = score(
                args.model, Path(tmp) / "gold", Path(tmp) / f"scores_{n}", n, args.score_args.split()
            )
    head, head_tokens = runs[1]
    long_ids = {i for i, r in head.items() if r["truncated"]}
    long_gold = [g for g in gold if g["id"] in long_ids]
    result["gold"] = {"files": len(gold), "long_files": len(long_gold), "runs": {}}
    for n, (scores, tokens) in runs.items():
        entry = {
            "tokens": tokens,
            "cost_ratio": tokens / head_tokens,
            "windows_per_long_file": float(np.mean([scores[g["id"]]["windows"] for g in long_gold])),
            "long": metrics(long_gold, scores, trained.label_set),
            "all": metrics(gold, scores, trained.label_set),
        }
        if n > 1:
            entry["long_difference_95ci"] = bootstrap(long_gold, head, scores, trained.label_set)
        result["gold"]["runs"][str(n)] = entry

    (HERE / "results").mkdir(exist_ok=True)
    path = HERE / "results" / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result, name))
    print(f"\nwritten: {path.relative_to(REPO)}", file=sys.stderr)


def markdown(result: dict, name: str) -> str:
    lines = [f"## {name} ({result['max_length']} tokens)", "", "| files | median tokens | " +
             " | ".join(f"truncated at {n}" for n in LENGTHS) + " | " +
             " | ".join(f"cost x{k} windows" for k in result["truncation"]["sample"]["cost_ratio"] if k != "1") + " |",
             "|---|---:|" + "---:|" * (len(LENGTHS) + len(result["truncation"]["sample"]["cost_ratio"]) - 1)]  # fmt: skip
    for which, t in result["truncation"].items():
        lines.append(f"| {which} ({t['files']}) | {t['median_tokens']:.0f} | "
                     + " | ".join(f"{t['truncated_share'][str(n)]:.1%}" for n in LENGTHS) + " | "
                     + " | ".join(f"{v['ratio']:.2f}" for k, v in t["cost_ratio"].items() if k != "1") + " |")  # fmt: skip
    g = result["gold"]
    lines += ["", f"Gold set, the {g['long_files']} of {g['files']} files longer than {result['max_length']} tokens:",
              "", "| scored | tokens (all gold) | cost | windows a long file | quality Spearman | quality MAE | "
              "structured Spearman | structured MAE | content-type acc. | macro F1 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n, run in g["runs"].items():
        m = run["long"]
        label = "head only" if n == "1" else f"--max-windows {n}"
        lines.append(f"| {label} | {run['tokens']:,} | {run['cost_ratio']:.2f}x | {run['windows_per_long_file']:.2f} | "
                     f"{m['quality_spearman']:.3f} | {m['quality_mae']:.3f} | {m['structured_data_spearman']:.3f} | "
                     f"{m['structured_data_mae']:.3f} | {m['content_type_accuracy']:.3f} | {m['content_type_macro_f1']:.3f} |")  # fmt: skip
    lines += ["", "Windows less head on the long files, 95% paired bootstrap intervals:", "",
              "| scored | quality Spearman | quality MAE | structured Spearman | structured MAE | content-type acc. |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for n, run in g["runs"].items():
        if n == "1":
            continue
        ci = run["long_difference_95ci"]
        lines.append(
            f"| --max-windows {n} | " + " | ".join(f"{a:+.3f} to {b:+.3f}" for a, b in ci.values()) + " |"
        )
    lines += ["", "All gold files:", "", "| scored | quality Spearman | quality MAE | structured Spearman | "
              "structured MAE | content-type acc. | macro F1 |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n, run in g["runs"].items():
        m = run["all"]
        label = "head only" if n == "1" else f"--max-windows {n}"
        lines.append(f"| {label} | {m['quality_spearman']:.3f} | {m['quality_mae']:.3f} | {m['structured_data_spearman']:.3f} | "
                     f"{m['structured_data_mae']:.3f} | {m['content_type_accuracy']:.3f} | {m['content_type_macro_f1']:.3f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
