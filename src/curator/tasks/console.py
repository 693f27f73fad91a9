"""What training prints: plain progress lines where no terminal shows a progress bar, and no start-up noise.

A progress bar redraws one terminal line; written to a log file (Slurm, nohup, `> train.log`) it shows nothing
until the epoch ends. `ProgressLines` logs a line every few steps there instead.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L

log = logging.getLogger(__name__)

WHEN = ("auto", "always", "never")


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class ProgressLines(L.Callback):
    """Every `every_n_steps` optimizer steps, one line: epoch, step, files/s, mean loss, time left to train.

    when: 'auto' prints only when stdout is not a terminal (the bar is there otherwise), 'always', 'never'.
    The time left counts training steps at the last window's rate; validation and testing come on top.
    """

    def __init__(self, every_n_steps: int = 50, when: str = "auto"):
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be 1 or more")
        if when not in WHEN:
            raise ValueError(f"when must be one of {WHEN}, not {when!r}")
        self.every_n_steps = every_n_steps
        self.when = when
        self._start()

    @property
    def active(self) -> bool:
        return self.when == "always" or (self.when == "auto" and not stdout_is_terminal())

    def _start(self) -> None:
        self._clock = time.perf_counter()
        self._step = None  # global step at the start of the window
        self._files = 0
        self._loss = 0.0  # a tensor during the window: summing numbers would wait for the GPU every step
        self._batches = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        if self._step is None:
            # The first batch of a window waits for the data loader to start: it only sets the clock.
            self._step, self._clock = trainer.global_step, time.perf_counter()
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss = self._loss + loss.detach()
            self._batches += 1
        self._files += batch["attention_mask"].shape[0]
        steps = trainer.global_step - self._step
        if steps < 1 or trainer.global_step % self.every_n_steps:
            return
        mean_loss = float(self._loss) / max(self._batches, 1)  # waits for the GPU once per window
        seconds = time.perf_counter() - self._clock
        total = trainer.estimated_stepping_batches
        # A stream without a length and no max_steps gives inf or -1: no total, no time left.
        known = 0 < total < float("inf")
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [
            f"epoch {trainer.current_epoch + 1}{epochs}",
            f"step {trainer.global_step}" + (f"/{total}" if known else ""),
            f"{self._files / seconds:.1f} files/s",
            f"loss {mean_loss:.4f}",
        ]
        if known:
            parts.append(f"eta {_duration((total - trainer.global_step) * seconds / steps)}")
        log.info("  ".join(parts))
        self._start()
        self._step = trainer.global_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Validation inside an epoch is not training time: the next window starts after it.
        self._start()
        if self.active and trainer.is_global_zero:
            metrics = trainer.callback_metrics
            shown = [f"{k} {float(metrics[k]):.4f}" for k in ("val/loss", "val/score") if k in metrics]
            if shown:
                log.info("epoch %d validation: %s", trainer.current_epoch + 1, "  ".join(shown))


class _DropMessages(logging.Filter):
    def __init__(self, test):
        super().__init__()
        self.test = test

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.test(record.getMessage())


def _only_unused_pooler_keys(message: str) -> bool:
    """A transformers load report whose every row is an UNEXPECTED `pooler.` key.

    The encoder is built without its pooler (it is never used), so a checkpoint's pooler weights are left
    over by design. Any other row (a missing or mismatched key) keeps the whole report.
    """
    if "LOAD REPORT" not in message:
        return False
    rows = [line for line in message.splitlines() if "|" in line][1:]  # the first is the table's header
    return bool(rows) and all(row.startswith("pooler.") and "UNEXPECTED" in row for row in rows)


_quieted = False


def quiet_startup() -> None:
    """Drop the start-up lines that say nothing about this run.

    Each is matched on its own text, so that every other warning still shows. Once per process: a multirun
    trains many times in one.
    """
    global _quieted
    if _quieted:
        return
    _quieted = True
    from lightning_utilities.core import rank_zero

    if logging.getLogger().handlers:
        # Imported after logging was set up (by Hydra, in train.py), Lightning's loggers pass their records up
        # to the root's handlers and also to the console handler of the `lightning` logger: every line twice.
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)

    # Lightning advertises its cloud logger at every Trainer start.
    rank_zero.log.addFilter(_DropMessages(lambda m: m.startswith("💡 Tip:")))
    logging.getLogger("transformers.modeling_utils").addFilter(_DropMessages(_only_unused_pooler_keys))
    # Lightning 2.6 calls a torch API that torch 2.10+ deprecates; nothing a user can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    if not sys.stderr.isatty():
        # "Loading weights" and download bars are carriage-return redraws: noise in a log file.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
