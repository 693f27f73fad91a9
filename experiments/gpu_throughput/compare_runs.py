"""Do two ways of running `score.py` give the same scores? Each run as typed, on the same model and corpus, into a
folder of its own, then compared per id against the first run.

    python experiments/gpu_throughput/compare_runs.py --model models/student512 --corpus .cache/agree/corpus \\
        --run default= --run unfused=--unfused-add-norm --run compiled=--compile --out results/addnorm_agreement

--run NAME=FLAGS (repeatable): a run of `score.py --model M --corpus C --out O --no-progress FLAGS`. The first is
the reference. For every other run (and every pair of the others): the share of files whose rounded quality and
structured_data levels (`labels.QUALITY.to_levels`, half up, clipped) are the same, the share with the same top
content type, the largest and 99.9th-percentile class-probability difference, the largest and mean quality and
structured_data differences, how many distinct contents were compared (`fp8_bench.agreement`). Writes
compare_runs.json, each run's log, and prints the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments" / "gpu_throughput"))
sys.path.insert(0, str(REPO / "experiments" / "multi_gpu"))
sys.path.insert(0, str(REPO / "src"))

from check_scoring import run_score  # noqa: E402
from fp8_bench import agreement, read_folder  # noqa: E402

SHOWN = ("compared", "quality_levels_same", "structured_data_levels_same", "content_type_same",
         "content_type_prob_max_abs_diff", "quality_max_abs_diff", "structured_data_max_abs_diff")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--run", action="append", required=True, metavar="NAME=FLAGS", dest="runs")
    p.add_argument("--work", type=Path, default=Path("/tmp/compare_runs"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    args = p.parse_args()
    if any("=" not in r for r in args.runs):
        p.error("each --run is NAME=FLAGS (FLAGS may be empty: --run default=)")
    runs = dict(r.split("=", 1) for r in args.runs)
    if len(runs) < 2 or len(runs) < len(args.runs):
        p.error("give at least two --run NAME=FLAGS, with distinct names")
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {"model": args.model, "corpus": str(args.corpus), "runs": {}, "against": {}}
    folders = {}
    for name, flags in runs.items():
        folders[name] = args.work / name
        shutil.rmtree(folders[name], ignore_errors=True)
        cmd = [sys.executable, "score.py", "--model", args.model, "--corpus", str(args.corpus),
               "--out", str(folders[name]), "--no-progress", *shlex.split(flags)]  # fmt: skip
        print("$", shlex.join(cmd), flush=True)
        r = run_score(cmd, args.out / f"{name}.log")
        if r["returncode"] != 0:
            print(f"{name}: score.py exited {r['returncode']}; see {args.out / f'{name}.log'}", flush=True)
            return 1
        forward = [ln.split("forward: ", 1)[1] for ln in (args.out / f"{name}.log").read_text().splitlines()
                   if "forward: " in ln]  # fmt: skip
        res["runs"][name] = {"flags": flags, "wall_s": r["wall_s"], "forward": forward[:1]}
    scores = {name: read_folder(folder) for name, folder in folders.items()}
    for a, b in itertools.combinations(runs, 2):
        res["against"][f"{a} vs {b}"] = agreement(scores[a], scores[b], args.corpus)
    (args.out / "compare_runs.json").write_text(json.dumps(res, indent=1))
    print("\n| runs | " + " | ".join(SHOWN) + " |")
    print("|---|" + "---:|" * len(SHOWN))
    for pair, r in res["against"].items():
        print(f"| {pair} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k in SHOWN) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
