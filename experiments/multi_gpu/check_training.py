"""Training on 2 GPUs against 1: speed, every labeled row once per epoch, validation side by side.

    PYTHONPATH=$PWD/src python experiments/multi_gpu/check_training.py --out experiments/multi_gpu/results/train_run1
    python experiments/multi_gpu/check_training.py --dry-run          # print the commands, run nothing
    python experiments/multi_gpu/check_training.py --smoke --out /tmp/smoke   # CPU, tiny model, 2 gloo processes

(--smoke checks the script and the row record; its speeds say nothing of GPUs.)

1. Builds the data: the train split is the shipped sample's heuristic train split repeated to --rows with fresh
   ids (as `experiments/gpu_throughput/train_cli_bench.py` builds it); val and test are the sample's own val
   and test splits (275 and 264 held-out files, never trained on). The encoder is unixcoder-base-shaped with
   random weights (`model.pretrained=false`) and a byte-level BPE of UniXcoder's vocabulary size trained on the
   sample (the hub is out of reach on the GPU machine), as in train_cli_bench.py.
2. Runs `train.py +experiment=fast512` on 1 GPU, then with `trainer=ddp trainer.devices=N` (by default at the
   single run's batch split over the ranks, `--ddp-batch same-global`, so both take the same steps), for --epochs epochs
   on the same rows, with the row record on (`callbacks.train_rows.enabled=true`: every rank writes the ids of
   the rows it took, per epoch). Each run has its own log under --out and a timeout (--run-timeout).
3. Reports, per run: files/s as the `TrainingSpeed` callback measures it (after the first 50 steps, which
   compile; rank 0's files scaled by all ranks' rows over rank 0's rows, exact to a row since the ranks step in
   lockstep), the epoch's files/s including start-up and compiling (all rows over the slowest rank's first
   epoch), steps per rank, whether every train row was read exactly once in every epoch, and the last
   validation's metrics. Writes check_training.json and check_training.md to --out.

Prints PASS or FAIL; exits 1 when a run fails, a row is missed or read twice in an epoch, or the ranks took
different numbers of steps. The speed-up (goal 1.8x) and the validation metrics are reported, not judged: one
seed says little of seed-to-seed spread; `--seeds 42 43 44` runs each setting with every seed and reports the
range of each metric per setting.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

# Added to each run's environment (printed with the commands).
RUN_ENV = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONFAULTHANDLER": "1",
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "disabled",
}
# The validation numbers shown side by side (the last validation of each run).
METRICS = [
    "val/score",
    "val/loss",
    "val/quality/spearman",
    "val/quality/mae",
    "val/structured_data/spearman",
    "val/structured_data/mae",
    "val/content_type/macro_f1",
    "val/content_type/accuracy",
]


def build_data(work: Path, rows: int, smoke: bool) -> tuple[Path, Path]:
    """Labeled shards and a local encoder folder (config and tokenizer, no weights)."""
    sys.path.insert(0, str(REPO / "experiments" / "gpu_throughput"))
    import bench
    from train_cli_bench import write_labeled
    from transformers import RobertaConfig

    labeled = work / "labeled"
    shutil.rmtree(labeled, ignore_errors=True)
    texts = write_labeled(labeled, rows, eval_rows=1)
    # Validation and test on held-out files rather than repeats of training rows.
    for split in ("val", "test"):
        shutil.rmtree(labeled / split)
        shutil.copytree(REPO / "data/labeled/heuristic" / split, labeled / split)
    encoder = work / "encoder"
    RobertaConfig(**(bench.SMOKE if smoke else bench.UNIXCODER)).save_pretrained(encoder)
    bench.train_tokenizer(texts, encoder)
    return labeled, encoder


FAST512_BATCH = 64  # conf/experiment/fast512.yaml's data.batch_size


def commands(args, labeled: Path, encoder: Path, work: Path) -> list[dict]:
    """The runs: (setting, seed) -> train.py command and its run folder."""
    common = [
        "+experiment=fast512", f"model.encoder={encoder}", "model.pretrained=false", f"data.root={labeled}",
        f"data.num_workers={args.num_workers}", "logger=csv", f"trainer.max_epochs={args.epochs}",
        "trainer.limit_test_batches=0", "callbacks.train_rows.enabled=true",
    ]  # fmt: skip
    if args.smoke:
        # CPU, tiny model, gloo: checks the script and the row record, not the GPUs.
        common += ["model.compile=false", "data.max_length=128", "data.batch_size=16", "data.eval_batch_size=64",
                   "callbacks.training_speed.every_n_steps=5", "callbacks.training_speed.skip_steps=5"]  # fmt: skip
        settings = {
            "single": ["trainer=cpu"],
            f"ddp{args.devices}": [
                "trainer=ddp",
                "trainer.accelerator=cpu",
                f"trainer.devices={args.devices}",
                "trainer.precision=32",
            ],
        }
    else:
        settings = {
            "single": ["trainer.devices=1"],
            f"ddp{args.devices}": ["trainer=ddp", f"trainer.devices={args.devices}"],
        }
    if args.ddp_batch == "same-global":
        # The single run's batch split over the ranks: the same optimisation (global batch, learning rate,
        # steps), so that validation can be compared; "same-per-rank" doubles the global batch.
        batch = 16 if args.smoke else FAST512_BATCH
        settings[f"ddp{args.devices}"].append(f"data.batch_size={batch // args.devices}")
    envs: dict[str, dict[str, str]] = {}
    for variant in args.ddp_variant:
        # The DDP setting with more overrides, e.g. compile_one_graph="task.compile_ddp_split=false"; a word
        # env:NAME=VALUE sets an environment variable of the run instead (OMP_NUM_THREADS, NCCL_...).
        name, _, overrides = variant.partition("=")
        words = shlex.split(overrides)
        setting = f"ddp{args.devices}_{name}"
        settings[setting] = settings[f"ddp{args.devices}"] + [w for w in words if not w.startswith("env:")]
        envs[setting] = dict(w.removeprefix("env:").split("=", 1) for w in words if w.startswith("env:"))
    runs = []
    for seed in args.seeds:
        for setting, overrides in settings.items():
            name = setting if len(args.seeds) == 1 else f"{setting}_seed{seed}"
            run_dir = work / f"run-{name}"
            cmd = [sys.executable, "train.py", *common, *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}",
                   *shlex.split(args.extra)]  # fmt: skip
            for module, (callback, option) in PROFILERS.items():
                if (start := getattr(args, option)) is not None:  # importable through run_one's PYTHONPATH
                    cmd += [f"+callbacks.{module}._target_={module}.{callback}",
                            f"+callbacks.{module}.start={start}", f"+callbacks.{module}.out_dir={run_dir}"]  # fmt: skip
            runs.append(
                dict(
                    name=name, setting=setting, seed=seed, run_dir=run_dir, cmd=cmd, env=envs.get(setting, {})
                )
            )
    return runs


# The profiling callbacks of this folder: module -> (callback class, the option that gives their first step).
PROFILERS = {
    "step_profile": ("StepProfile", "profile_steps"),
    "host_profile": ("HostProfile", "host_profile_steps"),
}


def command_line(run: dict) -> str:
    """A run's command as a shell line, its own environment variables first."""
    return shlex.join([f"{k}={v}" for k, v in run["env"].items()] + run["cmd"])


def run_one(
    cmd: list[str], log_path: Path, timeout: float, extra_env: dict | None = None
) -> tuple[int | str, float]:
    """Runs a command in its own process group (train.py's DDP ranks are its children), log to a file."""
    t = time.perf_counter()
    # Unbuffered, so the log is whole if the run is stopped; on a timeout SIGABRT makes faulthandler print
    # where every thread of every rank was, then the group is killed.
    env = {**os.environ, **RUN_ENV, **(extra_env or {})}
    # step_profile.py (--profile-steps) is imported by train.py's Hydra callbacks from this folder.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(Path(__file__).parent)) if p)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            returncode: int | str = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGABRT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group: a rank stuck in a collective
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            returncode = "timeout"
    return returncode, time.perf_counter() - t


def last_validation(run_dir: Path) -> dict:
    """The last row of the CSV logger's metrics that holds val/score."""
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return {}
    last = {}
    with open(files[-1]) as fh:
        for row in csv.DictReader(fh):
            if row.get("val/score"):
                last = row
    return {k: float(last[k]) for k in ["epoch", *METRICS] if last.get(k)}


def summarise(run: dict, returncode, wall: float, train_ids: set[str]) -> dict:
    from curator.tasks.rows import check_rows

    run_dir = run["run_dir"]
    res = {"name": run["name"], "setting": run["setting"], "seed": run["seed"], "cmd": command_line(run),
           "returncode": returncode, "wall_s": wall}  # fmt: skip
    rows = check_rows(run_dir / "train_rows", train_ids)
    res["rows_ok"] = rows["ok"]
    res["epochs"] = rows["epochs"]
    speed_file = run_dir / "training_speed.json"
    if speed_file.exists() and rows["epochs"]:
        speed = json.loads(speed_file.read_text())
        first = rows["epochs"][0]
        per_rank = first["rows_per_rank"]
        scale = sum(per_rank.values()) / per_rank[0] if per_rank.get(0) else float("nan")
        res["speed_rank0"] = speed
        res["files_per_s"] = speed["files_per_s"] * scale
        res["epoch_files_per_s"] = first["rows"] / max(first["seconds_per_rank"].values())
        # The share of each rank's timed steps spent waiting for its next batch (the dataloader's workers).
        waits = {0: speed.get("data_wait_share")}
        for f in run_dir.glob("training_speed.rank*.json"):
            other = json.loads(f.read_text())
            waits[other["rank"]] = other.get("data_wait_share")
        res["data_wait_share_per_rank"] = dict(sorted(waits.items()))
    res["validation"] = last_validation(run_dir)
    for module in PROFILERS:
        found = [json.loads(f.read_text()) for f in sorted(run_dir.glob(f"{module}.rank*.json"))]
        if found:
            res[module] = found
    return res


def markdown(res: dict) -> str:
    runs = res["runs"]
    lines = [f"# check_training: {res['device']}, {res['rows']:,} train rows, {res['epochs']} epoch(s)", ""]
    lines += ["| run | files/s (TrainingSpeed) | files/s (first epoch, all of it) | waiting for data, per rank | steps per rank | every row once, equal steps | wall s | exit |",
              "|---|---:|---:|---|---|---|---:|---|"]  # fmt: skip
    for r in runs:
        steps = "; ".join(
            f"epoch {e['epoch']}: " + ", ".join(str(s) for s in e["steps_per_rank"].values())
            for e in r["epochs"]
        )
        waits = ", ".join(
            f"{w:.0%}" if w is not None else "-" for w in r.get("data_wait_share_per_rank", {}).values()
        )
        lines.append(
            f"| {r['name']} | {r.get('files_per_s', float('nan')):,.0f} | {r.get('epoch_files_per_s', float('nan')):,.0f} "
            f"| {waits or '-'} | {steps or '-'} | {'yes' if r['rows_ok'] else 'NO'} | {r['wall_s']:.0f} | {r['returncode']} |"
        )
    for key, value in res["speedup"].items():
        lines.append(f"\nspeed-up {key}: {value:.2f}x (goal 1.8x)")
    lines += ["", "## Last validation", "", "| metric | " + " | ".join(r["name"] for r in runs) + " |",
              "|---|" + "---:|" * len(runs)]  # fmt: skip
    for m in METRICS:
        values = [r["validation"].get(m) for r in runs]
        lines.append(f"| {m} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in values) + " |")
    if res.get("spread"):
        lines += [
            "",
            "## Range over seeds, per setting",
            "",
            "| metric | setting | min | max |",
            "|---|---|---:|---:|",
        ]
        for m, per in res["spread"].items():
            for setting, (lo, hi) in per.items():
                lines.append(f"| {m} | {setting} | {lo:.4f} | {hi:.4f} |")
    profiled = [(r["name"], prof) for r in runs for prof in r.get("step_profile", [])]
    if profiled:
        kinds = sorted({k for _, prof in profiled for k in prof["gpu_ms_per_step_by_kind"]})
        lines += ["", f"## One step, profiled ({profiled[0][1]['steps']} steps from step {profiled[0][1]['first_step']}, ms a step)", "",
                  "| run, rank | wall | GPU kernels | GPU idle | tokens a step | " + " | ".join(kinds) + " |",
                  "|---|" + "---:|" * (4 + len(kinds))]  # fmt: skip
        for name, prof in profiled:
            by = prof["gpu_ms_per_step_by_kind"]
            tokens = sum(prof["tokens_per_step"]) / len(prof["tokens_per_step"])
            lines.append(f"| {name}, rank {prof['rank']} | {prof['wall_ms_per_step']:.1f} | {prof['gpu_kernel_ms_per_step']:.1f} "
                         f"| {prof['gpu_idle_ms_per_step']:.1f} | {tokens:,.0f} | " + " | ".join(f"{by.get(k, 0.0):.1f}" for k in kinds) + " |")  # fmt: skip
    hosted = [(r["name"], prof) for r in runs for prof in r.get("host_profile", [])]
    if hosted:
        first = hosted[0][1]
        lines += ["", f"## The host's side of a step (cProfile and CUDA sync debug mode, {first['steps']} steps from step {first['first_step']})", "",
                  "| run, rank | wall ms a step under cProfile | Python own ms a step | host waits for the GPU a step | where it waited most |",
                  "|---|---:|---:|---:|---|"]  # fmt: skip
        for name, prof in hosted:
            waits = prof["host_waits_for_gpu"]
            where = f"{waits[0]['per_step']} a step at {waits[0]['stack'][-1]}" if waits else "-"
            lines.append(f"| {name}, rank {prof['rank']} | {prof['wall_ms_per_step_under_cprofile']:.1f} | {prof['python_own_ms_per_step']:.1f} "
                         f"| {prof['host_waits_for_gpu_per_step']} | {where} |")  # fmt: skip
    lines += ["", "## Commands", ""] + [f"    {r['cmd']}" for r in runs]
    lines += ["", f"verdict: {res['verdict']}"] + [f"- {p}" for p in res["problems"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="train rows (default 64,000; 600 with --smoke)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--devices", type=int, default=2, help="GPUs (ranks) of the DDP run")
    p.add_argument(
        "--num-workers", type=int, default=None, help="dataloader workers per rank (8; 2 with --smoke)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="every setting runs once per seed")
    p.add_argument("--run-timeout", type=float, default=1800, help="seconds before a run is stopped")
    p.add_argument("--extra", default="", help="Hydra overrides added to every run")
    p.add_argument("--ddp-variant", action="append", default=[], metavar="NAME=OVERRIDES",
                   help="one more DDP setting: the DDP run's overrides plus these, reported as ddpN_NAME "
                        "(repeatable), e.g. one_graph=task.compile_ddp_split=false")  # fmt: skip
    p.add_argument("--ddp-batch", choices=("same-global", "same-per-rank"), default="same-global",
                   help="the DDP run's batch: the single run's split over the ranks (the same optimisation, "
                        "validation comparable; default), or the same batch on every rank (run 1)")  # fmt: skip
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "check_training",
                   help="data and run folders (rebuilt: the data and every run-* folder are replaced)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, gloo: check the script")
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    p.add_argument("--profile-steps", type=int, default=None, metavar="STEP",
                   help="profile 20 steps from this global step on every rank of every run (step_profile.py)")  # fmt: skip
    p.add_argument("--host-profile-steps", type=int, default=None, metavar="STEP",
                   help="cProfile and count the host's waits for the GPU over 30 steps from this global step, "
                        "every rank of every run (host_profile.py)")  # fmt: skip
    args = p.parse_args()
    args.rows = args.rows or (600 if args.smoke else 64_000)
    args.num_workers = args.num_workers if args.num_workers is not None else (2 if args.smoke else 8)

    work = args.work
    labeled, encoder = work / "labeled", work / "encoder"
    runs = commands(args, labeled, encoder, work)
    print(f"work folder: {work}; each run's environment adds {shlex.join(f'{k}={v}' for k, v in RUN_ENV.items())}",
          flush=True)  # fmt: skip
    if args.dry_run:
        for run in runs:
            print("$", command_line(run))
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    build_data(work, args.rows, args.smoke)
    print(
        f"{args.rows:,} train rows and the encoder folder ready in {time.perf_counter() - t:.0f} s",
        flush=True,
    )
    import pyarrow.parquet as pq
    import torch

    train_ids = set(pq.read_table(labeled / "train", columns=["id"]).column("id").to_pylist())
    device = (
        "cpu" if args.smoke else (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
    )
    res = {"device": device, "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cpus": os.cpu_count(),
           "rows": args.rows, "epochs": args.epochs, "args": {k: str(v) for k, v in vars(args).items()}, "runs": []}  # fmt: skip
    for run in runs:
        print("$ cd", REPO, "&&", command_line(run), flush=True)
        log_path = args.out / f"{run['name']}.log"
        # A fresh run folder: records of an earlier run there would mix with this one's.
        shutil.rmtree(run["run_dir"], ignore_errors=True)
        returncode, wall = run_one(run["cmd"], log_path, args.run_timeout, run["env"])
        r = summarise(run, returncode, wall, train_ids)
        res["runs"].append(r)
        if returncode != 0:
            print(log_path.read_text(errors="replace")[-3000:], flush=True)
        print(f"{r['name']}: exit {returncode}, {r.get('files_per_s', float('nan')):,.0f} files/s (TrainingSpeed), "
              f"{r.get('epoch_files_per_s', float('nan')):,.0f} files/s over the first epoch, rows once and equal "
              f"steps: {r['rows_ok']}, {wall:.0f} s; validation {r['validation']}", flush=True)  # fmt: skip
        (args.out / "check_training.json").write_text(json.dumps(res, indent=1, default=str))

    # Speed-up of the mean over seeds of each setting.
    by_setting: dict[str, list[dict]] = {}
    for r in res["runs"]:
        by_setting.setdefault(r["setting"], []).append(r)
    single = by_setting["single"]
    res["speedup"] = {}
    for setting, multi in by_setting.items():
        if setting == "single":
            continue
        for key, label in (("files_per_s", "TrainingSpeed"), ("epoch_files_per_s", "first epoch, all of it")):
            a = [r[key] for r in single if key in r]
            b = [r[key] for r in multi if key in r]
            if a and b:
                res["speedup"][f"{setting}, {label}"] = (sum(b) / len(b)) / (sum(a) / len(a))
    if len(args.seeds) > 1:
        res["spread"] = {
            m: {s: (min(v), max(v)) for s, rs in by_setting.items() if (v := [r["validation"][m] for r in rs if m in r["validation"]])}
            for m in METRICS
        }  # fmt: skip
    problems = []
    for r in res["runs"]:
        if r["returncode"] != 0:
            problems.append(
                f"{r['name']}: train.py exit {r['returncode']} (log: {args.out / (r['name'] + '.log')})"
            )
        if len(r["epochs"]) != args.epochs:
            problems.append(f"{r['name']}: row records for {len(r['epochs'])} of {args.epochs} epochs")
        for e in r["epochs"]:
            if not e["ok"]:
                problems.append(
                    f"{r['name']} epoch {e['epoch']}: {e['missed']} rows missed, {e['repeated']} read more than once, "
                    f"{e['unknown']} unknown, steps per rank {e['steps_per_rank']}, {e['ranks_recorded']} of "
                    f"{e['world_size']} ranks recorded"
                )
    res["problems"] = problems
    res["verdict"] = "PASS" if not problems else f"FAIL ({len(problems)} problems)"
    (args.out / "check_training.json").write_text(json.dumps(res, indent=1, default=str))
    (args.out / "check_training.md").write_text(markdown(res))
    print(markdown(res))
    for line in problems:
        print("FAIL:", line)
    print(res["verdict"])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
