"""Where a training step's host time goes, and where the host waits for the GPU: a Lightning callback.

step_profile.py says how long the GPU's kernels take; when the wall time of a step is longer than that, the GPU
sat idle waiting for the host, which either had too much Python to run or waited for the GPU itself (a
`.item()`, a copy to pageable memory, `torch.cuda.synchronize`) and so could not queue the next step ahead.
This callback answers both, on every rank, for `steps` steps from global step `start`:

- Python's cProfile of the main thread (the one that runs the step): the functions with the most own time and
  the most cumulative time, in ms a step. cProfile slows Python down, so these are shares, not speeds;
- `torch.cuda.set_sync_debug_mode("warn")`: every operation that made the host wait for the GPU, counted per
  place in the code (the Python stack of the call, innermost frames last).

It writes `host_profile.rank<r>.json`, and Python's own statistics as `host_profile.rank<r>.prof` (for
`pstats`: who called what). Added to a train.py run as Hydra overrides (check_training.py's
`--host-profile-steps` does this for every run):

    PYTHONPATH=$PWD/src:$PWD/experiments/multi_gpu python train.py ... \\
        +callbacks.host_profile._target_=host_profile.HostProfile +callbacks.host_profile.start=300 \\
        +callbacks.host_profile.out_dir=OUT
"""

from __future__ import annotations

import cProfile
import json
import pstats
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import lightning as L
import torch


def _short(frame: traceback.FrameSummary) -> str:
    parts = Path(frame.filename).parts
    # site-packages/<package>/... or src/curator/...: the path from the package on
    for anchor in ("site-packages", "src"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    return f"{'/'.join(parts[-3:])}:{frame.lineno} {frame.name}"


class HostProfile(L.Callback):
    def __init__(self, start: int = 300, steps: int = 30, out_dir: str = ".", stack_depth: int = 8):
        self.start, self.steps, self.out_dir, self.stack_depth = start, steps, Path(out_dir), stack_depth
        self._profiler: cProfile.Profile | None = None
        self._warnings: warnings.catch_warnings | None = None
        self._syncs: Counter = Counter()
        self._done_steps = 0
        self._t0 = 0.0
        self._done = False

    def _on_warning(self, message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if "synchroniz" not in text:
            return
        stack = traceback.extract_stack()[:-1]
        # The innermost frames that are not this callback or the warnings module
        frames = [f for f in stack if "warnings.py" not in f.filename and "host_profile.py" not in f.filename]
        self._syncs[(text.split("\n")[0][:120], tuple(_short(f) for f in frames[-self.stack_depth :]))] += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._done or self._profiler is not None or trainer.global_step != self.start:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self._on_warning
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")
        self._profiler = cProfile.Profile()
        self._t0 = time.perf_counter()
        self._profiler.enable()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._profiler is None:
            return
        self._done_steps += 1
        if self._done_steps < self.steps:
            return
        self._profiler.disable()
        wall_ms = (time.perf_counter() - self._t0) * 1e3 / self.steps
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
        self._warnings.__exit__(None, None, None)
        stats = pstats.Stats(self._profiler)
        rows = []
        for (filename, lineno, name), (_, calls, own, cumulative, _) in stats.stats.items():
            where = _short(traceback.FrameSummary(filename, lineno, name))
            rows.append((where, calls / self.steps, own * 1e3 / self.steps, cumulative * 1e3 / self.steps))

        def top(key: int, n: int = 40) -> list:
            ranked = sorted(rows, key=lambda r: -r[key])[:n]
            return [
                {
                    "function": w,
                    "calls_per_step": round(c, 1),
                    "own_ms": round(o, 3),
                    "cumulative_ms": round(cu, 3),
                }
                for w, c, o, cu in ranked
            ]

        res = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "first_step": self.start,
            "steps": self.steps,
            "wall_ms_per_step_under_cprofile": round(wall_ms, 2),
            "python_own_ms_per_step": round(sum(r[2] for r in rows), 2),
            "host_waits_for_gpu_per_step": round(sum(self._syncs.values()) / self.steps, 2),
            "host_waits_for_gpu": [
                {"per_step": round(n / self.steps, 2), "what": what, "stack": list(stack)}
                for (what, stack), n in self._syncs.most_common()
            ],
            "top_own_time": top(2),
            "top_cumulative_time": top(3),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stats.dump_stats(self.out_dir / f"host_profile.rank{trainer.global_rank}.prof")
        (self.out_dir / f"host_profile.rank{trainer.global_rank}.json").write_text(json.dumps(res, indent=1))
        self._profiler, self._done = None, True
