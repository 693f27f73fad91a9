"""The whole ablation in two stages, each leaving its output in `--out` so that a re-run resumes.

prepare (CPU is enough, needs the corpus and the classifier)   curator.ablation.prepare
train   (GPUs, needs only plan.json and prepared/)               curator.ablation.runs
report  (anywhere: the table and plot of the finished runs, after a cut call; trains nothing)

<out>/plan.json                  the settings; a re-run that would change a result is refused (use another --out)
<out>/prepared/                  what the train stage reads: tokenizer.json, subsets/<arm>.txt (file lists),
                                 train_files.parquet (their text), eval/ (HumanEval, held-out files), manifest.json
<out>/cache/                     intermediates: scores/, kept/<arm>/, heuristic_labels.parquet,
                                 pool_token_counts.npy; streams/<arm>.npy (train stage)
<out>/subsets/<arm>.json         each subset's summary: files, tokens, files per language
<out>/runs/<arm>/seed<k>/metrics.json   one trained LM's evaluation; its presence means done
<out>/results.md|json|png        the table and the plot
"""

from __future__ import annotations

from pathlib import Path

from curator.ablation import evalsets
from curator.ablation import plan as plans
from curator.ablation.prepare import prepare
from curator.ablation.runs import OutOfTime, RunsFailed, check_prepared, merge, train_stage

STAGES = ("all", "prepare", "train", "report")

__all__ = ["STAGES", "OutOfTime", "RunsFailed", "run"]


def run(
    stage: str,
    given: dict,
    out: Path,
    repo: Path,
    devices: list[str] | None = None,
    runs_per_device: int = 1,
    stop_after: float | None = None,
    started: float = 0.0,
) -> dict | None:
    """Run `stage` ("all", "prepare", "train", or "report": the table of the finished runs, training none)
    with the settings `given` (None: as recorded, else the default). Returns the results (None when the
    prepare stage is not complete); raises OutOfTime or RunsFailed when runs are left."""
    paths = plans.Paths(out)
    plan = plans.settle(given, out)
    if stage == "report":
        if not (out / "plan.json").exists():
            raise SystemExit(f"error: {out / 'plan.json'} not found: not an ablation folder")
        return merge(plan, out)[0]
    if stage in ("all", "prepare"):
        if plan.corpus is None:
            raise SystemExit("error: the prepare stage needs --corpus")
        if stage == "all" and plan.needs_model() and plan.model is None:
            raise SystemExit(
                "error: the classifier arms need --model (or run --stage prepare first, --model later)"
            )
        plans.save(plan, out)
        complete = prepare(plan, Path(plan.corpus), out, repo)
        if stage == "prepare" or not complete:
            return None
    check_prepared(plan, paths)  # before plan.json is written: a wrong --out gets no plan
    plans.save(plan, out)
    if stage == "train" and given.get("mbpp"):
        evalsets.copy_mbpp(Path(given["mbpp"]), paths.eval_dir)
    return train_stage(plan, out, devices, runs_per_device, stop_after, started)
