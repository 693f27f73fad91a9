"""Does filtering help a code LM? Train the same small LM on equal-token subsets and compare held-out likelihood.

Arms: random files; files kept by the classifier (score.py, then filter.py --where EXPR, one arm per
expression); files kept by the heuristic labeler; optionally the junk rules alone. Each arm's subset has the same
number of tokens; each trains a fresh LM with the same recipe for every --seeds; each LM is evaluated on
HumanEval's canonical solutions given their prompts, MBPP's (with --mbpp), and per-language held-out packages.
Resumable: a finished run (runs/<arm>/seed<k>/metrics.json) is not retrained. experiments/ablation/README.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from curator.ablation import lm
from curator.ablation.pipeline import OutOfTime, Plan, run

REPO = Path(__file__).resolve().parent


def parse_where(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, expr = item.partition("=")
        if not sep or not name.strip() or not expr.strip():
            raise SystemExit(f"error: --classifier-where takes NAME=EXPR, got {item!r}")
        out[name.strip()] = expr.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--corpus", type=Path, required=True, help="harvest root: corpus/ (the pool) and heldout/"
    )
    ap.add_argument("--model", required=True, help="the curator classifier for score.py (.ckpt or export)")
    ap.add_argument("--out", type=Path, required=True, help="folder for everything; re-run to resume")
    ap.add_argument(
        "--classifier-where",
        action="append",
        metavar="NAME=EXPR",
        help='a classifier arm, e.g. q3="quality >= 3" (repeatable; default: q2.5 and q3 on quality)',
    )
    ap.add_argument("--heuristic-min-quality", type=int, default=3, help="heuristic arm's level (0: no arm)")
    ap.add_argument("--junk-rules-arm", action="store_true", help="add an arm of the junk rules alone")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--preset", choices=sorted(lm.PRESETS), default="small", help="LM size and batch")
    ap.add_argument("--train-tokens", type=float, default=60e6, help="tokens each LM trains on (all arms)")
    ap.add_argument("--subset-tokens", type=float, help="unique tokens per arm (default: the smallest arm's)")
    ap.add_argument("--tokenizer-chars", type=float, default=50e6, help="pool characters to train BPE on")
    ap.add_argument("--mbpp", type=Path, help="a local mbpp.jsonl (no package ships MBPP)")
    ap.add_argument("--eval-files-per-language", type=int, help="cap on held-out files per language")
    ap.add_argument(
        "--stop-after",
        type=float,
        help="seconds: start no LM run that would likely end later; exit 3, re-run to resume (time-limited jobs)",
    )
    ap.add_argument("--score-arg", action="append", default=[], help="passed to score.py (repeatable)")
    args = ap.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    where = (
        parse_where(args.classifier_where)
        if args.classifier_where
        else {
            "q2.5": "quality >= 2.5",
            "q3": "quality >= 3",
        }
    )
    plan = Plan(
        corpus=str(args.corpus.resolve()),
        model=str(args.model),
        out=str(args.out.resolve()),
        classifier_where=where,
        heuristic_min_quality=args.heuristic_min_quality,
        junk_rules_arm=args.junk_rules_arm,
        seeds=args.seeds,
        preset=args.preset,
        train_tokens=int(args.train_tokens),
        subset_tokens=int(args.subset_tokens) if args.subset_tokens else None,
        mbpp=str(args.mbpp) if args.mbpp else None,
        eval_files_per_language=args.eval_files_per_language,
        tokenizer_chars=int(args.tokenizer_chars),
        score_args=args.score_arg,
        stop_after=args.stop_after,
    )
    for sub in ("corpus", "heldout"):
        if not (args.corpus / sub).is_dir():
            raise SystemExit(f"error: {args.corpus / sub} not found (build it with data/harvest, see --help)")
    try:
        run(plan, REPO)
    except OutOfTime as e:
        logging.getLogger("ablate").info(str(e))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
