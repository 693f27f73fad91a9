"""Training speed as files/s and useful (non-padding) tokens/s: logged every few steps, summed up at the end.

Lightning's ThroughputMonitor synchronises the GPU after every batch, which stalls the host that should be
preparing the next step; this callback synchronises once per window. Time between batches counts (data
loading included), time outside the training loop (validation, checkpointing) does not, and the first steps
are left out of the summary: compiling and capturing CUDA graphs happen there.

It also counts the time the host waits for the next batch (from one batch's end to the next one's start, where
Lightning fetches it from the DataLoader): a large share says the dataloader workers, not the GPU, set the pace.
Every rank writes its own summary (rank 0 to `out_file`, rank r to `<out_file stem>.rank<r>.json`), since under
DDP one slow rank holds up the others.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


class TrainingSpeed(L.Callback):
    def __init__(self, every_n_steps: int = 50, skip_steps: int = 50, out_file: str | None = None):
        if every_n_steps < 1 or skip_steps < 0:
            raise ValueError("every_n_steps must be 1 or more and skip_steps 0 or more")
        self.every_n_steps = every_n_steps
        self.skip_steps = skip_steps
        self.out_file = out_file
        self._last: float | None = None
        self._batch_end: float | None = None
        self._window = self._zero()
        self._total = self._zero()

    @staticmethod
    def _zero() -> dict:
        return {"steps": 0, "files": 0, "tokens": 0, "seconds": 0.0, "data_wait_s": 0.0}

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The first batch of an epoch waits for the workers to start: it only sets the clock.
        self._last = self._batch_end = None
        self._window = self._zero()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A validation inside an epoch (val_check_interval) is not training time: start the clock again.
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        if self._batch_end is not None:
            self._window["data_wait_s"] += time.perf_counter() - self._batch_end

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        self._step_end(trainer, pl_module, batch)
        self._batch_end = time.perf_counter()

    def _step_end(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict) -> None:
        if self._last is None:
            self._sync(pl_module)
            self._last = time.perf_counter()
            return
        w = self._window
        w["steps"] += 1
        w["files"] += batch["attention_mask"].shape[0]
        # Kept a tensor on the device until the window closes: a number now would wait for the GPU every step.
        w["tokens"] = w["tokens"] + batch["attention_mask"].sum()
        if w["steps"] < self.every_n_steps:
            return
        self._sync(pl_module)
        now = time.perf_counter()
        w["seconds"], w["tokens"] = now - self._last, int(w["tokens"])
        self._last = now
        files_per_s, tokens_per_s = w["files"] / w["seconds"], w["tokens"] / w["seconds"]
        # CPU tensors: Lightning would copy Python numbers to the GPU, and read the progress bar's every batch.
        pl_module.log("train/files_per_s", torch.tensor(files_per_s), prog_bar=True)
        pl_module.log("train/tokens_per_s", torch.tensor(tokens_per_s))
        # Per window, so that a dashboard shows when the workers fall behind (a stall every N steps, a slow
        # start), not only the epoch's share.
        data_wait_share = w["data_wait_s"] / w["seconds"]
        pl_module.log("train/data_wait_share", torch.tensor(data_wait_share))
        # hydra.verbose=curator.tasks.speed prints each window
        log.debug(
            "step %d: %.0f files/s, %.0f useful tokens/s, %.0f%% waiting for data",
            trainer.global_step, files_per_s, tokens_per_s, 100 * data_wait_share,
        )  # fmt: skip
        if trainer.global_step - w["steps"] >= self.skip_steps:
            for key in self._total:
                self._total[key] += w[key]
        self._window = self._zero()

    def summary(self) -> dict | None:
        t = self._total
        if not t["seconds"]:
            return None
        return {
            **t,
            "files_per_s": t["files"] / t["seconds"],
            "tokens_per_s": t["tokens"] / t["seconds"],
            "data_wait_share": t["data_wait_s"] / t["seconds"],
            "skipped_steps": self.skip_steps,
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        s = self.summary()
        if s is None:
            return
        rank = trainer.global_rank
        if trainer.is_global_zero:
            ranks = f" per rank ({trainer.world_size} ranks)" if trainer.world_size > 1 else ""
            log.info(
                "training speed%s: %.0f files/s, %.0f useful tokens/s over %d steps (after the first %d)",
                ranks, s["files_per_s"], s["tokens_per_s"], s["steps"], self.skip_steps,
            )  # fmt: skip
        log.info(
            "rank %d: waited %.1f s (%.0f%%) of %.1f s for the next batch",
            rank, s["data_wait_s"], 100 * s["data_wait_share"], s["seconds"],
        )  # fmt: skip
        if self.out_file:
            path = Path(self.out_file)
            if rank:
                path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**s, "rank": rank}, indent=1))
