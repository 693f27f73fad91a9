"""Does filtering help a code LM? Train the same small LM on equal-token subsets and compare held-out likelihood.

Arms: random files; files kept by the classifier (score.py, then filter.py --where EXPR, one arm per
expression); files kept by the heuristic labeler; optionally the junk rules alone. Each arm's subset has the same
number of tokens; each trains a fresh LM with the same recipe for every --seeds; each LM is evaluated on
HumanEval's canonical solutions given their prompts, MBPP's (with --mbpp), and per-language held-out packages.

Two stages, run together (the default) or apart: `--stage prepare` needs the corpus and the classifier and
leaves everything the LM runs need in OUT/prepared (small enough to carry to a GPU machine); `--stage train
--out OUT` needs nothing else and runs the (arm, seed) LMs in parallel, one process per GPU (--devices,
--runs-per-device). Settings left out are read from OUT/plan.json. Resumable: a finished run
(runs/<arm>/seed<k>/metrics.json) is not retrained. Exit status 3: runs left (--stop-after), run again.
experiments/ablation/README.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from curator.ablation import lm
from curator.ablation import plan as plans
from curator.ablation.pipeline import STAGES, OutOfTime, RunsFailed, run

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
    started = time.time()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--stage",
        choices=STAGES,
        default="all",
        help="default all: prepare, then train; report: the table of the finished runs only",
    )
    ap.add_argument("--out", type=Path, required=True, help="folder for everything; re-run to resume")
    ap.add_argument(
        "--corpus",
        type=Path,
        help="harvest root: corpus/ (the pool) and heldout/ (prepare; default: as recorded)",
    )
    ap.add_argument("--model", help="the curator classifier for score.py (.ckpt or export; prepare)")
    g = ap.add_argument_group(
        "settings that change results (default: as recorded in OUT/plan.json, else below)"
    )
    g.add_argument(
        "--classifier-where",
        action="append",
        metavar="NAME=EXPR",
        help='a classifier arm, e.g. q3="quality >= 3" (repeatable; default: q2.5 and q3 on quality)',
    )
    g.add_argument("--heuristic-min-quality", type=int, help="heuristic arm's level (0: no arm; default 3)")
    g.add_argument(
        "--junk-rules-arm", action=argparse.BooleanOptionalAction, help="an arm of the junk rules alone"
    )
    g.add_argument("--preset", choices=sorted(lm.PRESETS), help="LM size and batch (default small)")
    g.add_argument("--train-tokens", type=float, help="tokens each LM trains on, all arms (default 30M)")
    g.add_argument("--subset-tokens", type=float, help="unique tokens per arm (default: the smallest arm's)")
    g.add_argument("--tokenizer-chars", type=float, help="pool characters to train BPE on (default 50M)")
    t = ap.add_argument_group(
        "which runs and evaluations, and how the train stage runs (may change on a re-run)"
    )
    t.add_argument("--seeds", type=int, nargs="+", help="LM seeds (default 0 1)")
    t.add_argument("--mbpp", type=Path, help="a local mbpp.jsonl (no package ships MBPP)")
    t.add_argument("--eval-files-per-language", type=int, help="cap on held-out files per language")
    t.add_argument(
        "--devices", nargs="+", help="GPU indices (0 1), cuda:N or cpu, a process each (default: every GPU)"
    )
    t.add_argument("--runs-per-device", type=int, default=1, help="LM runs at once on each device")
    t.add_argument(
        "--stop-after",
        type=float,
        help="seconds: start no LM run that would likely end later; exit 3, re-run to resume (time-limited jobs)",
    )
    ap.add_argument("--score-arg", action="append", help="passed to score.py (repeatable)")
    args = ap.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    given = {
        "classifier_where": parse_where(args.classifier_where) if args.classifier_where else None,
        "heuristic_min_quality": args.heuristic_min_quality,
        "junk_rules_arm": args.junk_rules_arm,
        "preset": args.preset,
        "train_tokens": int(args.train_tokens) if args.train_tokens else None,
        "subset_tokens": int(args.subset_tokens) if args.subset_tokens else None,
        "tokenizer_chars": int(args.tokenizer_chars) if args.tokenizer_chars else None,
        "seeds": args.seeds,
        "mbpp": str(args.mbpp.resolve()) if args.mbpp else None,
        "eval_files_per_language": args.eval_files_per_language,
        "score_args": args.score_arg,
    }
    corpus = args.corpus
    if corpus is None and args.stage != "train":
        recorded = plans.recorded(args.out).get("corpus")
        corpus = Path(recorded) if recorded else None
    if corpus is not None:
        for sub in ("corpus", "heldout"):
            if not (corpus / sub).is_dir():
                raise SystemExit(f"error: {corpus / sub} not found (build it with data/harvest, see --help)")
        given["corpus"] = str(corpus.resolve())
        given["corpus_fingerprint"] = plans.fingerprint(corpus, ("corpus", "heldout"))
    if args.model:
        local = Path(args.model)
        given["model"] = str(local.resolve()) if local.exists() else args.model
        given["model_fingerprint"] = plans.model_fingerprint(args.model)
    try:
        run(
            args.stage,
            given,
            args.out.resolve(),
            REPO,
            args.devices,
            args.runs_per_device,
            args.stop_after,
            started,
        )
    except OutOfTime as e:
        logging.getLogger("ablate").info(str(e))
        return 3
    except RunsFailed as e:
        logging.getLogger("ablate").error(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
