"""The LightningModule: one training step, validation and test metrics, the optimizer and its schedule.

It takes plain hyperparameters (names and numbers, no Hydra objects), and saves the encoder's full config in
the checkpoint, so `CuratorTask.load_from_checkpoint(path)` rebuilds the model anywhere, without Hydra and
without downloading weights.
"""

from __future__ import annotations

import re
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from curator.labels import QUALITY, STRUCTURED_DATA, get_label_set
from curator.models import CuratorClassifier, build_encoder, max_model_tokens
from curator.models.encoder import avoid_cudnn_attention
from curator.models.packed import PackedEncoder, packed_forward, supports_packing
from curator.tasks.metrics import CONTENT_TYPE, CuratorMetrics, flatten_for_logging

HEADS = (QUALITY.name, STRUCTURED_DATA.name, CONTENT_TYPE)
# Weight-independent numbers, one per head, averaged into `<stage>/score`: the loss cannot rank runs of a
# loss-weight sweep (its scale is the weights), and a sweep needs one number to optimise.
SCORE_KEYS = {QUALITY.name: "spearman", STRUCTURED_DATA.name: "spearman", CONTENT_TYPE: "macro_f1"}


class CuratorTask(L.LightningModule):
    def __init__(
        self,
        encoder: str = "microsoft/unixcoder-base",
        tokenizer: str | None = None,
        label_set: str = "full",
        pooling: str = "cls",
        max_length: int = 512,
        loss_weights: dict[str, float] | None = None,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.06,
        dropout: float = 0.1,
        encoder_pretrained: bool = True,
        encoder_overrides: dict[str, Any] | None = None,
        encoder_config: dict[str, Any] | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        compile_ddp_split: bool = False,
        packed: bool = False,
        freeze_layers: int = 0,
        code_markers: bool = False,
        with_path: bool = False,
    ):
        super().__init__()
        if encoder_config is None:
            net = build_encoder(encoder, pretrained=encoder_pretrained, config_overrides=encoder_overrides)
        else:
            # From a checkpoint: the architecture from its saved config, the weights come with the state dict.
            net = build_encoder(encoder, config=encoder_config)
        limit = max_model_tokens(net.config)
        if max_length > limit:
            raise ValueError(
                f"max_length={max_length} but encoder {encoder!r} takes at most {limit} tokens "
                f"(max_position_embeddings={net.config.max_position_embeddings}); lower data.max_length"
            )
        encoder_config = net.config.to_dict()
        encoder_overrides = dict(encoder_overrides) if encoder_overrides else None
        tokenizer = tokenizer or encoder
        unknown = set(loss_weights or {}) - set(HEADS)
        loss_weights = {head: float((loss_weights or {}).get(head, 1.0)) for head in HEADS}
        if unknown or not any(w > 0 for w in loss_weights.values()):
            raise ValueError(
                f"loss_weights: heads are {HEADS}, at least one weight above 0; got {loss_weights}"
            )
        # After the locals above are final: save_hyperparameters reads them from this frame.
        self.save_hyperparameters()

        self.labels = get_label_set(label_set)
        self.heads = [head for head in HEADS if loss_weights[head] > 0]
        self.model = CuratorClassifier(net, len(self.labels.classes), pooling=pooling, dropout=dropout)
        # from_pretrained hands back the encoder in eval mode, and Lightning keeps each submodule's mode: without
        # this the encoder's dropout would stay off during fine-tuning.
        self.model.train()
        if freeze_layers:
            # Train only the upper layers and the heads: autograd then stops below them, which cuts the backward
            # pass to a fraction (a CPU run); the lower layers keep their general-purpose features.
            for name, param in self.model.encoder.named_parameters():
                layer = re.match(r"encoder\.layer\.(\d+)\.", name)
                if name.startswith("embeddings.") or (layer and int(layer.group(1)) < freeze_layers):
                    param.requires_grad_(False)
        self.packed_encoder = None
        if packed:
            if not supports_packing(net):
                raise ValueError(
                    f"model.packed=true needs a BERT- or RoBERTa-family encoder with absolute positions; "
                    f"{encoder!r} is {net.config.model_type!r}: set model.packed=false"
                )
            # Not a submodule: it shares the encoder's weights, and the checkpoint must keep one copy of them.
            object.__setattr__(self, "packed_encoder", PackedEncoder(self.model.encoder))
        self.val_metrics = CuratorMetrics(self.labels.classes)
        self.test_metrics = CuratorMetrics(self.labels.classes)
        self.val_score_best = float("-inf")
        self.test_report: dict | None = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)

    def _step(self, batch: dict) -> tuple[torch.Tensor, dict, dict]:
        if self.packed_encoder is None:
            preds = self(batch["input_ids"], batch["attention_mask"])
        else:
            # Every layer runs on real tokens, attention in Flash Attention. The batches come packed by the
            # DataModule's workers (data.packed follows model.packed in conf/data).
            if "cu_seqlens" not in batch:
                raise ValueError("model.packed=true needs packed batches: set data.packed=true")
            ids, cu_seqlens = batch["packed_input_ids"], batch["cu_seqlens"]
            # max_length rather than the batch's width as the bound on a file's length: a constant keeps a
            # compiled encoder from compiling again for each width (evaluate.py may ask for longer files).
            bound = max(self.hparams.max_length, batch["input_ids"].shape[1])
            preds = packed_forward(self.model, self.packed_encoder, ids, cu_seqlens, bound)
        # A head with weight 0 is neither trained nor scored.
        preds = {head: preds[head] for head in self.heads}
        losses = {}
        for head in self.heads:
            if head == CONTENT_TYPE:
                losses[head] = F.cross_entropy(preds[head], batch[head])
            else:
                losses[head] = F.mse_loss(preds[head], batch[head].float())
        loss = sum(self.hparams.loss_weights[head] * losses[head] for head in self.heads)
        return loss, losses, preds

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, losses, _ = self._step(batch)
        # Batches are of uneven size: the DataModule reads each train row once per epoch and gives every rank
        # the same number of steps, so some batches hold a few files fewer than data.batch_size (never none).
        # The loss is the mean over this rank's batch, and DDP averages the ranks' gradients with equal
        # weights, so in a step where one rank's batch is smaller its files weigh slightly more (batch sizes
        # differ by a file or two between ranks). `batch_size=n` would only weight an epoch mean; these are
        # logged per step, each the value of its own batch.
        n = batch["input_ids"].shape[0]
        # Nothing here may make the host wait for the GPU, or it cannot queue the next step while this one
        # runs. Tensors on the GPU are fine (the logger reads them every log_every_n_steps); Lightning turns a
        # progress-bar value into a number after every batch, and copies a Python number to the GPU, so those
        # go in as CPU tensors, and the loss reaches the progress bar only now and then.
        # Lightning hands a step's values to the loggers only every log_every_n_steps steps, and each self.log
        # costs the host about a millisecond (its result collection, a few small GPU kernels): five a step held
        # up the queueing of the next step on a GPU (experiments/multi_gpu, training on one device). So they
        # are logged at the steps whose values reach the loggers, the same values as before.
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss", loss, batch_size=n)
            self.log_dict({f"train/loss/{head}": value for head, value in losses.items()}, batch_size=n)
            # Here rather than a LearningRateMonitor callback, which refuses to run without a logger.
            self.log("train/lr", torch.tensor(self.optimizers().param_groups[0]["lr"]), batch_size=n)
        if every and self.global_step % every == 0:
            self.log("loss", torch.tensor(loss.item()), prog_bar=True, logger=False, batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, _, preds = self._step(batch)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=len(batch["id"]))
        self.val_metrics.update(preds, batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss, _, preds = self._step(batch)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(batch["id"]))
        self.test_metrics.update(preds, batch)

    def _log_report(self, report: dict, stage: str) -> float:
        flat = flatten_for_logging(report, stage)
        score = sum(report[head][SCORE_KEYS[head]] for head in report) / len(report)
        flat[f"{stage}/score"] = score
        # Already reduced over ranks by the metric: every rank logs the same numbers.
        self.log_dict(flat, prog_bar=False)
        return score

    def on_validation_epoch_end(self) -> None:
        report = self.val_metrics.compute()
        self.val_metrics.reset()
        score = self._log_report(report, "val")
        # The sanity check's few batches must not count as the best epoch.
        if not self.trainer.sanity_checking:
            self.val_score_best = max(self.val_score_best, score)
            self.log("val/score_best", self.val_score_best)

    def on_test_epoch_end(self) -> None:
        self.test_report = self.test_metrics.compute()
        self.test_metrics.reset()
        self._log_report(self.test_report, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A resumed run must not take its first validation for the best one so far.
        checkpoint["val_score_best"] = self.val_score_best

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.val_score_best = checkpoint.get("val_score_best", float("-inf"))

    def setup(self, stage: str) -> None:
        avoid_cudnn_attention()

    def on_fit_start(self) -> None:
        if self.hparams.compile:
            # In place (Module.compile keeps the state-dict keys), only the encoder (the heads are cheap), and
            # only for training, so loading a checkpoint in a notebook never waits for a compiler.
            # mode="reduce-overhead" replays CUDA graphs, one per batch shape (see data.pad_to_multiple_of).
            encoder = self.model.encoder if self.packed_encoder is None else self.packed_encoder
            import torch._dynamo

            # Under DDP (on any number of devices) the compiler can split the graph at DDP's gradient buckets,
            # so that each bucket's all-reduce starts while the rest of the backward runs. The pieces cost the
            # host about 5 ms a step on an H200 (launching 13 graphs instead of one), more than the all-reduce
            # they hide on NVLinked GPUs, so one graph is the default (experiments/multi_gpu measures both).
            # Without DDP the setting does nothing.
            torch._dynamo.config.optimize_ddp = self.hparams.compile_ddp_split
            encoder.compile(dynamic=True, mode=self.hparams.compile_mode)

    def on_train_epoch_start(self) -> None:
        # The stream reshuffles per epoch; its workers start after this hook and copy the epoch with them.
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if gradient_clip_val and optimizer.defaults.get("fused"):
            # Lightning refuses to clip for a fused optimizer, for fear of fp16's grad scaler; with bf16 or fp32
            # (the only precisions given a fused one) the gradients are unscaled already.
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        hp = self.hparams
        # No weight decay on biases and LayerNorm weights (the usual BERT recipe).
        decay, no_decay = [], []
        for param in self.parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 else decay).append(param)
        # One fused kernel per step on a GPU instead of a dozen passes over the weights (about 3 ms a step for
        # a 125M encoder on an H100). fp16 is left out: its grad scaler must unscale before clipping.
        fused = self.device.type == "cuda" and self.trainer.precision != "16-mixed"
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            fused=fused or None,
        )
        total = self.trainer.estimated_stepping_batches
        if not 0 < total < float("inf"):
            raise ValueError("cannot size the lr schedule: set trainer.max_steps (the stream has no length)")
        warmup = max(1, int(hp.warmup_ratio * total))

        def linear_warmup_then_decay(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_then_decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
