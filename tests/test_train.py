"""Training end to end on the real config (shrunk), the checkpoint contract, loss weights and length limits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from curator.data.datamodule import CuratorDataModule
from curator.tasks.module import CuratorTask

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}


def shrunk_config(data_root: Path, out_dir: Path, *overrides: str):
    """The real train config on CPU with a tiny random encoder, a few short batches and no logger."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "model=tiny",
                "trainer=cpu",
                "logger=none",
                f"data.root={data_root}",
                "data.max_length=64",
                "data.batch_size=8",
                "data.eval_batch_size=16",
                "data.num_workers=0",
                "trainer.max_epochs=2",
                "trainer.limit_train_batches=3",
                "+trainer.num_sanity_val_steps=0",
                "+trainer.enable_progress_bar=false",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    return cfg


@pytest.mark.slow
def test_train_end_to_end_writes_the_report(labeled_root, tmp_path):
    import train

    cfg = shrunk_config(labeled_root, tmp_path)
    score = train.train(cfg)

    assert isinstance(score, float)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"quality", "structured_data", "content_type", "meta"}
    assert metrics["quality"]["n"] == 48  # the whole test split
    assert "## content_type" in (tmp_path / "report.md").read_text()


def _tiny_task(**kwargs) -> CuratorTask:
    torch.manual_seed(0)
    return CuratorTask(
        encoder="minilm", encoder_pretrained=False, encoder_overrides=TINY, max_length=64, **kwargs
    )


def _batch(labeled_root, label_set="full"):
    dm = CuratorDataModule(str(labeled_root), "minilm", label_set=label_set, max_length=64, num_workers=0)
    return next(iter(dm.test_dataloader()))


def _quiet_cpu_trainer(**kwargs):
    """A Lightning Trainer on the CPU that writes nothing: no logger, checkpoints, bars or sanity check."""
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_checkpoint_loads_without_hydra_and_predicts_the_same(labeled_root, tmp_path):
    model = _tiny_task(label_set="coarse", pooling="cls")
    trainer = _quiet_cpu_trainer(max_steps=2, limit_val_batches=0)
    dm = CuratorDataModule(
        str(labeled_root), "minilm", label_set="coarse", max_length=64, batch_size=8, num_workers=0
    )
    trainer.fit(model, datamodule=dm)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    # The contract the scoring code reads: plain values only, so even a weights-only load works.
    hparams = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]
    for key in ("encoder", "encoder_config", "tokenizer", "label_set", "pooling", "max_length"):
        assert key in hparams
    assert hparams["encoder_config"]["num_hidden_layers"] == 2 and hparams["label_set"] == "coarse"

    loaded = CuratorTask.load_from_checkpoint(path, map_location="cpu")
    batch = _batch(labeled_root, "coarse")
    model.eval()
    loaded.eval()
    with torch.no_grad():
        before = model(batch["input_ids"], batch["attention_mask"])
        after = loaded(batch["input_ids"], batch["attention_mask"])
    for head in ("quality", "structured_data", "content_type"):
        torch.testing.assert_close(before[head], after[head])


def test_a_resumed_run_keeps_its_best_validation_score(labeled_root, tmp_path):
    def fit(model, max_epochs, ckpt_path=None):
        trainer = _quiet_cpu_trainer(max_epochs=max_epochs, limit_train_batches=2, limit_val_batches=2)
        dm = CuratorDataModule(str(labeled_root), "minilm", max_length=64, batch_size=8, num_workers=0)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return trainer

    first = _tiny_task()
    trainer = fit(first, max_epochs=1)
    assert first.val_score_best > float("-inf")
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    resumed = _tiny_task()
    fit(resumed, max_epochs=1, ckpt_path=tmp_path / "last.ckpt")  # restores, then has nothing left to do
    assert resumed.val_score_best == first.val_score_best


def test_loss_weight_zero_turns_a_head_off(labeled_root):
    model = _tiny_task(loss_weights={"quality": 1.0, "structured_data": 0.0, "content_type": 1.0})
    batch = _batch(labeled_root)
    loss, losses, preds = model._step(batch)
    assert set(losses) == set(preds) == {"quality", "content_type"}
    loss.backward()
    assert model.model.structured_data.proj.weight.grad is None
    model.val_metrics.update(preds, batch)
    assert "structured_data" not in model.val_metrics.compute()


def test_max_length_above_the_encoder_limit_is_a_clear_error():
    with pytest.raises(ValueError, match="takes at most 512 tokens"):
        CuratorTask(encoder="minilm", encoder_pretrained=False, encoder_overrides=TINY, max_length=1024)


def test_training_speed_counts_every_timed_file_and_token(labeled_root, tmp_path):
    from curator.tasks.speed import TrainingSpeed

    class Record(TrainingSpeed):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seen = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seen.append((batch["attention_mask"].shape[0], int(batch["attention_mask"].sum())))
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    speed = Record(every_n_steps=2, skip_steps=2, out_file=str(tmp_path / "speed.json"))
    trainer = _quiet_cpu_trainer(max_steps=7, limit_val_batches=0, callbacks=[speed])
    dm = CuratorDataModule(str(labeled_root), "minilm", max_length=64, batch_size=4, num_workers=0)
    trainer.fit(_tiny_task(), datamodule=dm)

    # Step 1 sets the clock; windows of two steps are (2, 3), (4, 5), (6, 7); the first is skipped.
    timed = speed.seen[3:7]
    summary = json.loads((tmp_path / "speed.json").read_text())
    assert summary["steps"] == 4
    assert summary["files"] == sum(n for n, _ in timed)
    assert summary["tokens"] == sum(t for _, t in timed)
    assert summary["files_per_s"] == pytest.approx(summary["files"] / summary["seconds"])


def test_training_speed_counts_the_wait_for_the_next_batch(labeled_root, tmp_path):
    # A dataloader that takes 50 ms a batch: the time between one batch's end and the next one's start.
    from curator.tasks.speed import TrainingSpeed

    class SlowData(TrainingSpeed):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            time.sleep(0.05)
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    speed = SlowData(every_n_steps=2, skip_steps=0, out_file=str(tmp_path / "speed.json"))
    trainer = _quiet_cpu_trainer(max_steps=5, limit_val_batches=0, callbacks=[speed])
    dm = CuratorDataModule(str(labeled_root), "minilm", max_length=64, batch_size=4, num_workers=0)
    trainer.fit(_tiny_task(), datamodule=dm)
    summary = json.loads((tmp_path / "speed.json").read_text())
    assert summary["steps"] == 4 and summary["rank"] == 0
    # Four timed steps, each after a wait of at least 50 ms, all inside the timed windows.
    assert 0.2 <= summary["data_wait_s"] <= summary["seconds"]
    assert summary["data_wait_share"] == pytest.approx(summary["data_wait_s"] / summary["seconds"])


@pytest.mark.skipif(
    "fused" not in torch.optim.AdamW.__init__.__code__.co_varnames, reason="no fused AdamW in this torch"
)
def test_gradients_are_clipped_for_a_fused_optimizer():
    model = _tiny_task()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, fused=True)
    for p in params:
        p.grad = 10 * torch.randn_like(p)
    # Lightning's own clipping refuses fused optimizers; the task clips them itself.
    model.configure_gradient_clipping(optimizer, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert norm == pytest.approx(1.0, rel=1e-3)


def test_packed_training_fits_and_its_checkpoint_loads(labeled_root, tmp_path):
    model = _tiny_task(packed=True)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _quiet_cpu_trainer(max_steps=2, limit_val_batches=1)
    dm = CuratorDataModule(
        str(labeled_root), "minilm", max_length=64, batch_size=8, num_workers=0, packed=True
    )
    trainer.fit(model, datamodule=dm)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    # One copy of the weights: the packed encoder shares the encoder's and is not saved twice.
    state = torch.load(tmp_path / "model.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert not any(key.startswith("packed_encoder") for key in state)
    loaded = CuratorTask.load_from_checkpoint(tmp_path / "model.ckpt", map_location="cpu")
    assert loaded.packed_encoder is not None


def test_train_losses_reach_the_logger_at_its_steps_and_are_logged_only_then(
    labeled_root, tmp_path, monkeypatch
):
    """The step values go to the logger every log_every_n_steps steps (Lightning's rule); self.log is called
    only at those steps, since each call costs the host time on every step."""
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    calls = []
    log = L.LightningModule.log

    def recording_log(self, name, *args, **kwargs):
        calls.append((name, self.global_step))
        return log(self, name, *args, **kwargs)

    monkeypatch.setattr(L.LightningModule, "log", recording_log)
    trainer = L.Trainer(
        accelerator="cpu", logger=CSVLogger(tmp_path), max_steps=30, limit_val_batches=0, log_every_n_steps=10,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    dm = CuratorDataModule(str(labeled_root), "minilm", max_length=64, batch_size=4, num_workers=0)
    trainer.fit(_tiny_task(), datamodule=dm)
    assert [step for name, step in calls if name == "train/loss"] == [9, 19, 29]
    with open(next(tmp_path.rglob("metrics.csv"))) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [9, 19, 29]
    assert all(r["train/lr"] and r["train/loss/quality"] for r in rows)


def test_training_steps_do_not_wait_for_the_device(labeled_root, monkeypatch):
    """What a training step logs must not make the host wait for the GPU: Lightning copies a Python number to
    the module's device (a copy that waits), and turns every progress-bar value into a number after each batch
    (a wait, for a GPU tensor). So numbers go in as CPU tensors, and a step's own tensors stay off the bar but
    now and then."""
    import lightning as L

    from curator.tasks.speed import TrainingSpeed

    logged = []
    log = L.LightningModule.log

    def recording_log(self, name, value, *args, prog_bar=False, **kwargs):
        logged.append((name, value, prog_bar))
        return log(self, name, value, *args, prog_bar=prog_bar, **kwargs)

    monkeypatch.setattr(L.LightningModule, "log", recording_log)
    speed = TrainingSpeed(every_n_steps=5, skip_steps=0)
    trainer = _quiet_cpu_trainer(max_steps=40, limit_val_batches=0, log_every_n_steps=20, callbacks=[speed])
    dm = CuratorDataModule(str(labeled_root), "minilm", max_length=64, batch_size=4, num_workers=0)
    trainer.fit(_tiny_task(), datamodule=dm)

    assert {name for name, _, _ in logged} >= {
        "train/loss", "train/lr", "loss", "train/files_per_s", "train/data_wait_share"
    }  # fmt: skip
    assert all(isinstance(value, torch.Tensor) for _, value, _ in logged), "a Python number was logged"
    on_bar = [value for _, value, bar in logged if bar]
    assert all(value.device.type == "cpu" and value.grad_fn is None for value in on_bar)
    assert sum(name == "loss" for name, _, _ in logged) == 2  # steps 0 and 20 of 40
