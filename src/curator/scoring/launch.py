"""`score.py --gpus N`: one scoring process per GPU of this machine, started by score.py itself.

What torchrun does for scoring, without what scoring does not need. The ranks of a scoring job never talk to
each other (each takes every WORLD_SIZE-th shard), so there is no rendezvous to hold; and torchrun's launcher
imports torch before it starts the first rank and waits on an agent after the last exits, seconds that come
on top of every run (experiments/multi_gpu). Here the parent imports nothing heavy: it starts the N processes
at once with the rank variables torchrun would set, and waits.

Several machines: start one `score.py --gpus N` per machine with torchrun or srun (one task per machine); each
process's RANK and WORLD_SIZE become those of its machine, and its N processes take ranks
machine_rank x N ... machine_rank x N + N - 1 of WORLD_SIZE x N.

Nothing here imports torch: the parent's job is to start processes, and it should do that at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

# Set by torchrun (first) or srun for each process they start. The runner reads them through env_int too.
RANK_VARS = ("RANK", "SLURM_PROCID")
WORLD_VARS = ("WORLD_SIZE", "SLURM_NTASKS")
LOCAL_RANK_VARS = ("LOCAL_RANK", "SLURM_LOCALID")
PER_MACHINE_VARS = ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE")


def env_int(names: Sequence[str], default: int, env=None) -> int:
    """The first of these variables that is set (and not empty), as a number; default when none is."""
    env = os.environ if env is None else env
    for name in names:
        value = env.get(name)
        if value:
            # srun writes SLURM_NTASKS_PER_NODE as "2" or "2(x3)" (two tasks on each of three machines).
            return int(value.split("(")[0])
    return default


def rank_env(gpus: int, env=None) -> list[dict[str, str]]:
    """The rank variables of each of the `gpus` processes this machine starts.

    A process started alone is the whole job; one started by torchrun or srun is one machine of a larger job,
    and must be that machine's only process (else two launchers would start their ranks on the same GPUs).
    """
    machine = env_int(RANK_VARS, 0, env)
    machines = env_int(WORLD_VARS, 1, env)
    if env_int(PER_MACHINE_VARS, 1, env) > 1:
        raise ValueError(
            f"--gpus {gpus} starts a process per GPU itself, but this process is one of several on its machine "
            "(torchrun --nproc_per_node > 1, or srun with several tasks a node): either launch one process per "
            "machine with --gpus, or one per GPU without it"
        )
    if not 0 <= machine < machines:
        raise ValueError(f"rank {machine} is outside world size {machines}")
    world = machines * gpus
    return [
        {
            "RANK": str(machine * gpus + g),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(g),
            "LOCAL_WORLD_SIZE": str(gpus),
            # Slurm's variables would otherwise say "one task" to anything that reads them after ours.
            "SLURM_PROCID": str(machine * gpus + g),
            "SLURM_NTASKS": str(world),
            "SLURM_LOCALID": str(g),
            "SLURM_NTASKS_PER_NODE": str(gpus),
        }
        for g in range(gpus)
    ]


def launch(commands: list[list[str]], envs: list[dict[str, str]]) -> list[int]:
    """Run the commands at once, each with its extra environment, and wait for all of them: their exit codes.

    A process that fails leaves the others running: each rank's scores are its own, and a re-run scores only
    what is missing. SIGINT, SIGTERM and SIGHUP (Ctrl-C, a scheduler's preemption, a closed terminal) are passed
    to every process, which stops as a killed score.py does: what it wrote is kept.
    """
    # Each in a session of its own, so that a Ctrl-C reaches it once, from here, not also from the terminal.
    procs = [
        subprocess.Popen(cmd, env={**os.environ, **extra}, start_new_session=True)
        for cmd, extra in zip(commands, envs, strict=True)
    ]

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return codes


def score_on_gpus(gpus: int, argv: list[str], device: str, script: str) -> int:
    """`score.py --gpus N`: score.py once per GPU with the same arguments, rank variables and its own device.

    argv: score.py's arguments as typed; device: its --device (cpu keeps every process on the CPU, for tests;
    anything else gives process g the GPU cuda:g).
    """
    envs = rank_env(gpus)
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes share the cores: each one's own torch threads (the CPU forward, tensor work in the main
        # process) get a share, as torchrun limits them (to 1) for the same reason; without this, two CPU
        # processes on 2 cores ran 3x slower than under torchrun.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        for env in envs:
            env["OMP_NUM_THREADS"] = str(max(1, cores // gpus))
    commands = [
        # The last --gpus and --device given win in argparse: each process is one rank on one device.
        [sys.executable, script, *argv, "--gpus", "1", "--device", "cpu" if device == "cpu" else f"cuda:{g}"]
        for g in range(gpus)
    ]
    first, world = int(envs[0]["RANK"]), int(envs[0]["WORLD_SIZE"])
    log.info(
        "score.py --gpus %d: starting ranks %d-%d of %d, one per %s",
        gpus,
        first,
        first + gpus - 1,
        world,
        "process on the CPU" if device == "cpu" else "GPU",
    )
    start = time.perf_counter()
    codes = launch(commands, envs)
    failed = [(first + g, c) for g, c in enumerate(codes) if c != 0]
    for rank, code in failed:
        reason = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        log.error("rank %d failed (%s)", rank, reason)
    if failed:
        log.error("run the same command again: it scores only the parts that are missing")
        return 1
    log.info("score.py --gpus %d: all %d processes done in %.1f s", gpus, gpus, time.perf_counter() - start)
    return 0
