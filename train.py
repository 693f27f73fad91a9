"""Train a curator classifier, test its best checkpoint and write the report.

    python train.py +experiment=quickstart           # CPU, offline, a few minutes
    python train.py +experiment=len1024              # the seed recipe at 1024 tokens
    python train.py -m +sweep=loss_weights           # one run per loss-weight combination
    python train.py +experiment=len512 trainer=ddp trainer.devices=8

Configs live in conf/; `train.yaml` lists the groups.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

# Paths in conf/ are relative to this folder, wherever the command is run from.
os.environ.setdefault("CURATOR_ROOT", str(Path(__file__).resolve().parent))

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from curator.cli import BadInput, check_labeled_data

# torch, Lightning and transformers take seconds to import: they are imported in train(), so that
# `train.py --help` answers at once.

log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    """Whether W&B has an API key: in the environment, or in ~/.netrc where `wandb login` puts it.

    Only asks whether a key exists; the key itself is never read into the config or the logs.
    """
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def prepare_loggers(cfg: DictConfig) -> None:
    """Name each multirun job's run, and go offline when W&B cannot be reached with a key."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # composed in a test or a notebook, not run by @hydra.main
        hydra_cfg = None
    with open_dict(cfg):
        if hydra_cfg is not None and hydra_cfg.mode == RunMode.MULTIRUN:
            overrides = hydra_cfg.job.override_dirname
            cfg.run_name = f"{cfg.experiment_name}-{hydra_cfg.job.num}" + (
                f"-{overrides}" if overrides else ""
            )
        wandb_cfg = (cfg.get("logger") or {}).get("wandb")
        if wandb_cfg is not None and os.environ.get("WANDB_MODE") is None and not wandb_logged_in():
            log.warning("no W&B API key found: logging offline (upload later with `wandb sync`)")
            wandb_cfg.offline = True
            # wandb.init still asks for a key unless the mode is set where it looks first.
            os.environ["WANDB_MODE"] = "offline"


def train(cfg: DictConfig) -> float | None:
    import lightning as L

    from curator.tasks.console import quiet_startup, stdout_is_terminal
    from curator.tasks.report import log_report_to_wandb, side_by_side, write_report

    quiet_startup()
    L.seed_everything(cfg.seed, workers=True)
    prepare_loggers(cfg)

    datamodule = hydra.utils.instantiate(cfg.data)
    # Before the model loads: a wrong data.root should cost a second, not minutes.
    limits = {"val": cfg.trainer.get("limit_val_batches"), "test": cfg.trainer.get("limit_test_batches")}
    check_labeled_data(datamodule, ["train"] + [split for split, limit in limits.items() if limit != 0])
    model = hydra.utils.instantiate(cfg.task, _convert_="all")
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    extra = {}
    if "enable_progress_bar" not in cfg.trainer and not stdout_is_terminal():
        # A log file gets nothing from the bar until an epoch ends; the progress_lines callback writes there.
        extra["enable_progress_bar"] = False
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    for logger in loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        optimized = trainer.callback_metrics.get(cfg.get("optimized_metric"))

        # Test the best checkpoint, not the last epoch (the weights in memory when no checkpoint was kept).
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)

        meta = {
            "experiment": cfg.experiment_name,
            "run": cfg.run_name,
            "checkpoint": best or "(final weights)",
            "data": cfg.data.root,
            "split": "test",
            "encoder": cfg.model.encoder,
            "label_set": cfg.labels.name,
            "max_length": cfg.data.max_length,
            "epochs": trainer.current_epoch,
        }
        test_report = model.test_report
        # Every rank takes part in these tests (they are collective under DDP); rank 0 writes.
        other_reports = evaluate_sets(cfg, trainer, model, best)

        if trainer.is_global_zero and test_report is None:
            log.warning("no test batches ran (trainer.limit_test_batches=0?): no test report written")
        elif trainer.is_global_zero:
            paths = write_report(test_report, cfg.paths.output_dir, f"{cfg.run_name}: test", meta)
            reports = {"test split": test_report}
            for name, report in other_reports.items():
                root = cfg.eval_sets[name]
                write_report(report, Path(cfg.paths.output_dir) / name, f"{cfg.run_name}: {name}",
                             {**meta, "data": root, "split": name})  # fmt: skip
                reports[name] = report
            for logger in loggers:
                if type(logger).__name__ == "WandbLogger":
                    for name, report in reports.items():
                        log_report_to_wandb(report, logger, prefix="test" if name == "test split" else name)
            if len(reports) > 1:
                # The same model on held-out sets (the gold set), beside the test split, in report.md.
                with open(paths["report"], "a") as fh:
                    fh.write("\n## Beside the test split\n\n" + side_by_side(reports) + "\n")
            print(f"\nbest checkpoint: {best or '(none kept)'}")
            print(f"test report:     {paths['report']}")
            print(f"test metrics:    {paths['metrics']}")
            for name in other_reports:
                print(
                    f"{name} report:{' ' * max(1, 10 - len(name))}{Path(cfg.paths.output_dir) / name / 'report.md'}"
                )
    finally:
        # One W&B run per multirun job: close this one before the next job starts in the same process.
        if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
            import wandb

            wandb.finish()

    return None if optimized is None else float(optimized)


def evaluate_sets(cfg: DictConfig, trainer, model, best: str) -> dict:
    """The tested checkpoint on each of `eval_sets` (name: labeled shards, every row of them, shared among the
    ranks like the test split); returns the reports by name."""
    from curator.data.datamodule import ALL_ROWS

    reports = {}
    for name, root in (cfg.get("eval_sets") or {}).items():
        datamodule = hydra.utils.instantiate(cfg.data, root=root)
        datamodule.trainer = trainer  # so that each rank reads its own share of the rows
        loader = datamodule.loader(datamodule.stream(ALL_ROWS))
        trainer.test(model, dataloaders=loader, ckpt_path=best or None, verbose=False)
        reports[name] = model.test_report
    return reports


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except BadInput as e:
        # One line rather than Hydra's report of an exception with its traceback.
        raise SystemExit(f"train.py: error: {e}") from None


if __name__ == "__main__":
    main()
