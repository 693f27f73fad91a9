"""How often DDP ranks agree on a SIGTERM: every N steps instead of every step.

Lightning (2.5.x-2.6.x) starts every training step of a multi-process run with `_broadcast_sigterm_tensor`: it
copies a flag to the GPU, broadcasts it from rank 0 and reads it back with `.item()`, so that all ranks stop
together when one is sent SIGTERM. Both the copy and the read make the host wait until the GPU has finished the
step before; the host then cannot queue the next step while the GPU runs the last one. On two H200s that cost a
DDP rank about a quarter of its time, with 2 such waits a step
(experiments/multi_gpu, "the SIGTERM broadcast"; Lightning-AI/pytorch-lightning issue 21487).

`SigtermCheckEveryNSteps` keeps the broadcast but runs it only at global steps divisible by `every_n_steps`.
Every rank has the same global step, so all ranks take part in the same broadcasts; a SIGTERM is acted on
within N steps (a few seconds at N=50, well within the grace period of Slurm or Kubernetes). `every_n_steps: 1`
gives Lightning's own behaviour. With one process Lightning does no broadcast, and neither does this.
"""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger(__name__)


class SigtermCheckEveryNSteps(L.Callback):
    def __init__(self, every_n_steps: int = 50):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.every_n_steps == 1:
            return
        loop = trainer.fit_loop.epoch_loop
        broadcast = getattr(loop, "_broadcast_sigterm_tensor", None)
        if broadcast is None or getattr(broadcast, "every_n_steps", None) is not None:
            return  # a Lightning without the per-step broadcast, or already wrapped (a second fit)

        def every_n_steps() -> None:
            if trainer.global_step % self.every_n_steps == 0:
                broadcast()

        every_n_steps.every_n_steps = self.every_n_steps
        loop._broadcast_sigterm_tensor = every_n_steps
        log.debug("SIGTERM broadcast among ranks every %d steps", self.every_n_steps)
