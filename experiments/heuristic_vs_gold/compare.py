"""How well does the heuristic labeler agree with the gold labels? Per head, overall and per language.

    python experiments/heuristic_vs_gold/compare.py            # writes report.md, metrics.json, PNGs here

The heuristic labeler is run afresh on the gold files' contents, so the numbers follow the current rules.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curator.labeling.heuristic import label_file
from curator.labels import CONTENT_TYPES, LANGUAGES
from curator.tasks.metrics import evaluate
from curator.tasks.report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLASSES = list(CONTENT_TYPES)


def evaluate_rows(rows, heuristic):
    preds = {
        "quality": np.array([h.quality for h in heuristic], dtype=float),
        "structured_data": np.array([h.structured_data for h in heuristic], dtype=float),
        "content_type": np.array([CLASSES.index(h.content_type) for h in heuristic]),
    }
    targets = {
        "quality": np.array([r["quality"] for r in rows]),
        "structured_data": np.array([r["structured_data"] for r in rows]),
        "content_type": np.array([CLASSES.index(r["content_type"]) for r in rows]),
    }
    return evaluate(preds, targets, CLASSES)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gold", type=Path, default=REPO / "data/gold/gold.parquet")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()
    rows = pq.read_table(args.gold).to_pylist()
    heuristic = [label_file(r["content"], r["path"], r["language"]) for r in rows]
    report = evaluate_rows(rows, heuristic)
    write_report(report, args.out, "Heuristic labeler against gold labels", meta={"files": len(rows)})

    # Per language: the seed's summary numbers, one row each.
    lines = [
        "| language | files | quality MAE | quality Spearman | quality rounded acc. | structured_data MAE | "
        "structured_data Spearman | content_type accuracy | content_type macro F1 |",
        "|" + "---|" * 9,
    ]
    per_language = {}
    for lang in LANGUAGES:
        idx = [i for i, r in enumerate(rows) if r["language"] == lang]
        if not idx:
            continue
        rep = evaluate_rows([rows[i] for i in idx], [heuristic[i] for i in idx])
        q, s, c = rep["quality"], rep["structured_data"], rep["content_type"]
        per_language[lang] = {"files": len(idx), "quality": {k: q[k] for k in ("mae", "spearman", "rounded_accuracy")},
                              "structured_data": {k: s[k] for k in ("mae", "spearman")},
                              "content_type": {k: c[k] for k in ("accuracy", "macro_f1")}}  # fmt: skip
        lines.append(f"| {lang} | {len(idx)} | {q['mae']:.3f} | {q['spearman']:.3f} | {q['rounded_accuracy']:.3f} | "
                     f"{s['mae']:.3f} | {s['spearman']:.3f} | {c['accuracy']:.3f} | {c['macro_f1']:.3f} |")  # fmt: skip

    # The most frequent content-type confusions, and the files with the largest quality errors.
    confusions = Counter(
        (r["content_type"], h.content_type)
        for r, h in zip(rows, heuristic, strict=True)
        if r["content_type"] != h.content_type
    )
    worst = sorted(range(len(rows)), key=lambda i: -abs(heuristic[i].quality - rows[i]["quality"]))[:12]
    extra = ["", "## Per language", "", *lines, "", "## Most frequent content-type confusions (gold -> heuristic)", "",
             "| gold | heuristic | files |", "|---|---|---|"]  # fmt: skip
    extra += [f"| {g} | {h} | {n} |" for (g, h), n in confusions.most_common(12)]
    extra += ["", "## Largest quality disagreements", "", "| file | gold | heuristic | gold rationale | rules fired |",
              "|---|---|---|---|---|"]  # fmt: skip
    for i in worst:
        r, h = rows[i], heuristic[i]
        why = "; ".join(x for x in h.reasons if "quality" in x)[:200].replace("|", "/")
        extra.append(f"| {r['repo']}:{r['path']} | {r['quality']} | {h.quality} | "
                     f"{r.get('rationale', '')[:160].replace('|', '/')} | {why} |")  # fmt: skip
    with open(args.out / "report.md", "a") as fh:
        fh.write("\n".join(extra) + "\n")
    (args.out / "per_language.json").write_text(json.dumps(per_language, indent=1))
    print(f"{len(rows)} gold files; report in {args.out / 'report.md'}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
