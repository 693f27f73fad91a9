"""Where a training step's time goes on each rank: a Lightning callback that profiles a run of steps.

Added to a train.py run as a Hydra override (check_training.py's --profile-steps does this for every run):

    PYTHONPATH=$PWD/src:$PWD/experiments/multi_gpu python train.py ... \\
        +callbacks.step_profile._target_=step_profile.StepProfile +callbacks.step_profile.start=300 \\
        +callbacks.step_profile.out_dir=OUT

From step `start` (past compiling and the first buffers) it records `steps` steps with torch.profiler on every
rank, then writes `step_profile.rank<r>.json`: wall ms a step, the tokens of each step's batch, the GPU's time a
step by kind of kernel (matmul, attention, NCCL, optimizer, ...), the largest kernels, and the GPU's idle time
(wall less kernel time, where the host or the data made it wait). Set against the single-GPU run's, a DDP rank's
profile says what DDP adds: the all-reduce's own time, the time an NCCL kernel spends waiting for the slower
rank (it counts as NCCL time), and any slowing of the backward's kernels while the all-reduce shares the GPU.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu_throughput"))

from fp8_bench import gpu_kernel_times, gpu_ms_by_kind, kind_of  # noqa: E402  (the kernel-time split of the throughput study)


def step_kind(name: str) -> str:
    n = name.lower()
    if "nccl" in n or "gloo" in n:
        return "NCCL / collectives (incl. waiting for the other rank)"
    if "adam" in n or "multi_tensor" in n:
        return "optimizer"
    return kind_of(name)


class StepProfile(L.Callback):
    def __init__(self, start: int = 300, steps: int = 20, out_dir: str = "."):
        self.start, self.steps, self.out_dir = start, steps, Path(out_dir)
        self._prof = None
        self._t0 = 0.0
        self._tokens: list[int] = []
        self._done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._done or trainer.global_step != self.start:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._prof = torch.profiler.profile(activities=activities)
        self._prof.__enter__()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._prof is None:
            return
        self._tokens.append(int(batch["input_ids"].numel()))
        if len(self._tokens) < self.steps:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - self._t0) * 1e3 / self.steps
        self._prof.__exit__(None, None, None)
        kernels = gpu_kernel_times(self._prof)
        per_step = [(name, ms / self.steps) for name, ms in kernels]
        gpu_ms = sum(ms for _, ms in per_step)
        res = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "first_step": self.start,
            "steps": self.steps,
            "wall_ms_per_step": round(wall_ms, 2),
            "gpu_kernel_ms_per_step": round(gpu_ms, 2),
            "gpu_idle_ms_per_step": round(wall_ms - gpu_ms, 2),
            "gpu_ms_per_step_by_kind": gpu_ms_by_kind(per_step, step_kind),
            "tokens_per_step": self._tokens,
            "top_kernels_ms_per_step": [(k[:120], round(ms / self.steps, 3)) for k, ms in kernels[:15]],
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"step_profile.rank{trainer.global_rank}.json").write_text(json.dumps(res, indent=1))
        self._prof, self._done = None, True
