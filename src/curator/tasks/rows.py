"""Which train rows each rank took, epoch by epoch: the evidence that every labeled row is read exactly once per
epoch across ranks and dataloader workers (see `curator.data.datamodule`).

Off by default; `callbacks.train_rows.enabled=true` makes every rank write
`<out_dir>/epoch_<NNN>/rank_<R>.json` at the end of each epoch: the ids of the rows of its batches in the order
it took them, its number of steps, each batch's size and the seconds from the epoch's start to its last step.
The ids come with every batch (`make_batch` keeps them) and reach the main process whichever worker read them,
so the record covers every worker. `check_rows` reads a run's records back.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch


class TrainRows(L.Callback):
    def __init__(self, enabled: bool = False, out_dir: str | None = None):
        if enabled and not out_dir:
            raise ValueError("callbacks.train_rows.enabled=true needs an out_dir")
        self.enabled = enabled
        self.out_dir = out_dir
        self._ids: list[str] = []
        self._sizes: list[int] = []
        self._start = 0.0
        self._seconds = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ids, self._sizes = [], []
        self._start = time.perf_counter()
        self._seconds = 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        if not self.enabled:
            return
        self._ids += batch["id"]
        self._sizes.append(len(batch["id"]))
        if batch_idx + 1 == trainer.num_training_batches:
            # The epoch's last step: wait for the GPU once, so that the time covers the work of every step.
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self._seconds = time.perf_counter() - self._start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        record = {
            "epoch": trainer.current_epoch,
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "steps": len(self._sizes),
            "rows": len(self._ids),
            "seconds": self._seconds or time.perf_counter() - self._start,
            "batch_sizes": self._sizes,
            "ids": self._ids,
        }
        path = Path(self.out_dir) / f"epoch_{trainer.current_epoch:03d}" / f"rank_{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))


def check_rows(out_dir: str | Path, expected_ids: set[str] | None = None) -> dict:
    """Read a run's records: per epoch, the ranks' step counts, rows, and the ids missed or taken more than once
    (against `expected_ids` when given; otherwise only repeats can be found).

    Returns {"epochs": [per-epoch summaries], "ok": bool}.
    """
    epochs = []
    for folder in sorted(Path(out_dir).glob("epoch_*")):
        records = [json.loads(p.read_text()) for p in sorted(folder.glob("rank_*.json"))]
        counts = Counter(i for r in records for i in r["ids"])
        repeated = sorted(i for i, n in counts.items() if n > 1)
        missed = sorted(expected_ids - counts.keys()) if expected_ids is not None else []
        unknown = sorted(counts.keys() - expected_ids) if expected_ids is not None else []
        world_size = records[0]["world_size"] if records else 0
        steps = {r["rank"]: r["steps"] for r in records}
        summary = {
            "epoch": int(folder.name.split("_")[1]),
            "ranks_recorded": len(records),
            "world_size": world_size,
            "steps_per_rank": steps,
            "rows_per_rank": {r["rank"]: r["rows"] for r in records},
            "seconds_per_rank": {r["rank"]: r["seconds"] for r in records},
            "smallest_batch": min((min(r["batch_sizes"], default=0) for r in records), default=0),
            "largest_batch": max((max(r["batch_sizes"], default=0) for r in records), default=0),
            "rows": sum(counts.values()),
            "distinct_rows": len(counts),
            "repeated": len(repeated),
            "missed": len(missed),
            "unknown": len(unknown),
            "examples": {"repeated": repeated[:5], "missed": missed[:5], "unknown": unknown[:5]},
        }
        summary["ok"] = (
            len(records) == world_size
            and len(set(steps.values())) == 1
            and not repeated
            and not missed
            and not unknown
        )
        epochs.append(summary)
    return {"epochs": epochs, "ok": bool(epochs) and all(e["ok"] for e in epochs)}
