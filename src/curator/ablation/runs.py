"""The train stage: one LM per (arm, seed), in parallel over devices, each run's result in its own file.

It reads only `<out>/plan.json` and `<out>/prepared` (never the corpus or the classifier), so it can run on
another machine. The parent process tokenizes each arm's files into its stream (cache/streams/<arm>.npy) and the
evaluation sets once, then runs the jobs on slots: `runs_per_device` slots on each device, one process each
(in the parent itself when there is one slot). A slot takes the next job from a shared queue, trains, evaluates
and writes `runs/<arm>/seed<k>/metrics.json` (written whole, so a cut call loses only the runs in flight); jobs
go seed by seed (every arm's seed 0 first), so a cut call leaves whole seeds. A finished run is never redone.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import pickle
import queue
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer

from curator.ablation import evalsets, lm, report, subsets
from curator.ablation.plan import PREPARE_KEYS, SUBSET_KEYS, Paths, Plan, as_json

log = logging.getLogger("ablate")
LOG_FORMAT = "%(asctime)s %(message)s"


class OutOfTime(Exception):
    pass


class RunsFailed(Exception):
    pass


def check_prepared(plan: Plan, paths: Paths) -> dict:
    """The prepare stage's manifest, after checking that everything the train stage reads is there."""
    if not paths.manifest.exists():
        raise SystemExit(
            f"error: {paths.manifest} not found: run `ablate.py --stage prepare` for this --out first "
            "(or bring its prepared/ folder along)"
        )
    manifest = json.loads(paths.manifest.read_text())
    need = [
        paths.tokenizer,
        paths.train_files,
        paths.eval_dir / evalsets.HUMANEVAL,
        paths.eval_dir / "heldout",
    ]
    need += [paths.subset_ids(arm) for arm in plan.arms()]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise SystemExit("error: the prepared folder lacks " + ", ".join(missing))
    if sorted(manifest["arms"]) != sorted(plan.arms()):
        raise SystemExit(
            f"error: {paths.prepared} holds arms {sorted(manifest['arms'])}, plan.json asks {plan.arms()}"
        )
    # plan.json and prepared/ travel separately: they must come from the same prepare stage.
    diff = [
        k
        for k in PREPARE_KEYS + SUBSET_KEYS
        if k in manifest["plan"] and manifest["plan"][k] != as_json(getattr(plan, k))
    ]
    if diff:
        raise SystemExit(f"error: {paths.prepared} was prepared with other settings ({', '.join(diff)})")
    return manifest


def write_streams(paths: Paths, manifest: dict, tok: Tokenizer, arms: list[str]) -> None:
    """Each arm's training stream from its file list: the files tokenized, each followed by EOS, cut."""
    arms = [a for a in arms if not paths.stream(a).exists()]
    if not arms:
        return
    files = {a: paths.subset_ids(a).read_text().split() for a in arms}
    wanted = set().union(*files.values())
    table = pq.read_table(paths.train_files)
    text = {
        i: c
        for i, c in zip(table.column("id").to_pylist(), table.column("content").to_pylist(), strict=True)
        if i in wanted
    }
    order = sorted(wanted)
    t0 = time.time()
    tokens = dict(zip(order, lm.encode(tok, [text[i] for i in order]), strict=True))
    log.info("tokenized %s files for %d arms in %.1f s", f"{len(order):,}", len(arms), time.time() - t0)
    eos = tok.token_to_id(lm.EOS)
    for arm in arms:
        parts = [tokens[i] for i in files[arm]]
        uncut = sum(len(p) + 1 for p in parts)
        if uncut != manifest["arms"][arm]["chosen_tokens"]:
            log.warning(
                "arm %s: its files are %s tokens here, %s when prepared (another tokenizers version?)",
                arm,
                f"{uncut:,}",
                f"{manifest['arms'][arm]['chosen_tokens']:,}",
            )
        stream = subsets.build_stream(parts, manifest["subset_tokens"], eos)
        paths.stream(arm).parent.mkdir(parents=True, exist_ok=True)
        tmp = paths.stream(arm).with_name(f"{arm}.tmp.npy")
        np.save(tmp, stream)
        tmp.replace(paths.stream(arm))


@dataclass
class Context:
    """What every slot needs to run jobs (picklable, for spawned processes)."""

    out: str
    preset: str
    train_tokens: int
    eval_windows: str  # a pickle of {set name: lm.prepare_eval(...)}
    started: float
    stop_after: float | None
    estimate: float  # seconds a run took before (0: unknown), until a slot has timed its own
    runs_per_device: int
    threads: int | None  # torch threads per slot process
    spawned: bool


def worker(slot: str, jobs, ctx: Context) -> None:
    """Run jobs from the queue until its end marker, or until the next would likely end after --stop-after."""
    if ctx.spawned:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=sys.stdout)
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    device = torch.device(slot.split("#")[0])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with open(ctx.eval_windows, "rb") as fh:
        windows = pickle.load(fh)
    last = ctx.estimate
    while (job := jobs.get()) is not None:
        arm, seed = job
        if ctx.stop_after and time.time() - ctx.started + last > ctx.stop_after:
            log.info("[%s] stopping before %s seed %d (--stop-after %.0f s)", slot, arm, seed, ctx.stop_after)
            break
        t0 = time.time()
        try:
            one_run(slot, device, arm, seed, windows, ctx)
        except Exception:
            log.exception("[%s] %s seed %d failed", slot, arm, seed)
            run_dir = Paths(Path(ctx.out)).run_dir(arm, seed)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc())
        last = time.time() - t0


def one_run(slot: str, device: torch.device, arm: str, seed: int, windows: dict, ctx: Context) -> None:
    paths = Paths(Path(ctx.out))
    run_dir = paths.run_dir(arm, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").unlink(missing_ok=True)
    cfg = lm.PRESETS[ctx.preset]
    stream = np.load(paths.stream(arm))
    log.info("[%s] %s seed %d: training on %s tokens (subset %s)", slot, arm, seed, f"{ctx.train_tokens:,}",
             f"{len(stream):,}")  # fmt: skip
    t0 = time.time()
    model, info = lm.train(
        cfg,
        stream,
        ctx.train_tokens,
        seed,
        device,
        lambda msg: log.info("[%s] %s seed %d: %s", slot, arm, seed, msg),
    )
    t1 = time.time()
    results = {name: lm.evaluate(model, w, cfg, device) for name, w in windows.items()}
    metrics = {
        "arm": arm,
        "seed": seed,
        "subset_tokens": int(len(stream)),
        "train": info,
        "eval": results,
        "seconds": round(time.time() - t0, 1),
        "eval_seconds": round(time.time() - t1, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "runs_per_device": ctx.runs_per_device,
    }
    tmp = run_dir / "metrics.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(run_dir / "metrics.json")
    log.info(
        "[%s] %s seed %d: done in %.1f s (training %.1f s at %s tokens/s, evaluation %.1f s); HumanEval %.4f "
        "bits/byte",
        slot,
        arm,
        seed,
        metrics["seconds"],
        info["train_seconds"],
        f"{info['tokens_per_s']:,}",
        metrics["eval_seconds"],
        results["humaneval"]["bits_per_byte"],
    )


def run_jobs(jobs: list[tuple[str, int]], slots: list[str], ctx: Context) -> bool:
    """Run the jobs on the slots; False if a slot's process died (killed, out of memory)."""
    if len(slots) == 1:
        q: queue.SimpleQueue = queue.SimpleQueue()
        for j in [*jobs, None]:
            q.put(j)
        worker(slots[0], q, ctx)
        return True
    spawn = mp.get_context("spawn")  # CUDA cannot be used in forked processes
    mq = spawn.Queue()
    for j in jobs + [None] * len(slots):
        mq.put(j)
    procs = [spawn.Process(target=worker, args=(s, mq, ctx), name=s) for s in slots]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            log.error("[%s] its process ended with status %s", p.name, p.exitcode)
    mq.close()
    mq.cancel_join_thread()  # end markers left by slots that stopped early must not hold us
    return not any(p.exitcode for p in procs)


def slots_for(devices: list[str] | None, runs_per_device: int) -> list[str]:
    """Slot names `<device>#<k>`, k counting slots; devices: "cpu", "cuda:N" or N (a device named twice gets
    two slots); default every GPU, else the CPU."""
    if not devices:
        n = torch.cuda.device_count()
        devices = [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    names = [f"cuda:{d}" if d.isdigit() else d for d in devices for _ in range(runs_per_device)]
    return [f"{d}#{k}" for k, d in enumerate(names)]


def merge(plan: Plan, out: Path) -> tuple[dict, list[tuple[str, int]]]:
    """The table and plot of the finished runs of the plan's arms and seeds (none written if none finished)."""
    paths = Paths(out)
    jobs = [(arm, seed) for seed in plan.seeds for arm in plan.arms()]
    finished = [j for j in jobs if (paths.run_dir(*j) / "metrics.json").exists()]
    runs = [json.loads((paths.run_dir(*j) / "metrics.json").read_text()) for j in finished]
    if not runs:
        log.info("no finished runs in %s", out / "runs")
        return {}, finished
    has_mbpp = (paths.eval_dir / evalsets.MBPP).is_file() or any("mbpp" in r["eval"] for r in runs)
    note = None if has_mbpp else "MBPP: n/a (no package installable here ships it; pass --mbpp mbpp.jsonl)."
    agg = report.write(runs, out, note)
    log.info("results (%d of %d runs): %s", len(runs), len(jobs), out / "results.md")
    print(report.markdown(agg, note))
    return agg, finished


def train_stage(
    plan: Plan,
    out: Path,
    devices: list[str] | None,
    runs_per_device: int,
    stop_after: float | None,
    started: float,
) -> dict:
    paths = Paths(out)
    manifest = check_prepared(plan, paths)
    cfg = lm.PRESETS[plan.preset]
    jobs = [(arm, seed) for seed in plan.seeds for arm in plan.arms()]
    done = {j for j in jobs if (paths.run_dir(*j) / "metrics.json").exists()}
    todo = [j for j in jobs if j not in done]
    log.info("%d runs: %d done before, %d to run", len(jobs), len(done), len(todo))
    clean = True
    if todo:
        slots = slots_for(devices, runs_per_device)
        log.info("LM preset %s: %s; slots: %s", plan.preset, cfg, ", ".join(slots))
        tok = Tokenizer.from_file(str(paths.tokenizer))
        write_streams(paths, manifest, tok, sorted({arm for arm, _ in todo}))
        sets = evalsets.load_all(paths.eval_dir, plan.eval_files_per_language)
        log.info("evaluation sets: %s", ", ".join(f"{k} ({len(v)})" for k, v in sets.items()))
        windows = {name: lm.prepare_eval(tok, items, cfg.seq_len) for name, items in sets.items()}
        eval_path = paths.cache / "eval_windows.pkl"
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        with open(eval_path, "wb") as fh:
            pickle.dump(windows, fh, protocol=pickle.HIGHEST_PROTOCOL)
        before = [json.loads((paths.run_dir(*j) / "metrics.json").read_text())["seconds"] for j in done]
        ctx = Context(
            out=str(out),
            preset=plan.preset,
            train_tokens=plan.train_tokens,
            eval_windows=str(eval_path),
            started=started,
            stop_after=stop_after,
            estimate=statistics.fmean(before) if before else 0.0,
            runs_per_device=runs_per_device,
            threads=max(1, (os.cpu_count() or 1) // len(slots)) if len(slots) > 1 else None,
            spawned=len(slots) > 1,
        )
        clean = run_jobs(todo, slots, ctx)

    agg, finished = merge(plan, out)
    missing = [j for j in jobs if j not in finished]
    failed = [j for j in missing if (paths.run_dir(*j) / "error.txt").exists()]
    if failed or (missing and not clean):
        raise RunsFailed(
            "not finished: "
            + ", ".join(f"{a} seed {s}" for a, s in missing)
            + " (errors: runs/<arm>/seed<k>/error.txt and the log above)"
        )
    if missing:
        raise OutOfTime(f"{len(missing)} of {len(jobs)} runs not run (--stop-after); re-run to go on")
    return agg
