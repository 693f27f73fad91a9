"""Every experiment, sweep and debug config composes and instantiates, so a broken file fails here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
# A tiny random encoder with room for 1024 tokens (len1024), in place of each experiment's real one.
TINY = [
    "model.encoder=minilm",
    "model.pretrained=false",
    "model.compile=false",
    "+model.overrides.num_hidden_layers=1",
    "+model.overrides.hidden_size=32",
    "+model.overrides.num_attention_heads=2",
    "+model.overrides.intermediate_size=64",
    "+model.overrides.max_position_embeddings=1024",
]


def _compose(*overrides: str, hydra_config: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra_config)


def test_experiment_is_not_in_the_defaults_list():
    defaults = OmegaConf.load(CONF / "train.yaml").defaults
    assert not any(isinstance(d, dict) and {"experiment", "sweep", "debug"} & set(d) for d in defaults)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, labeled_root, tmp_path):
    cfg = _compose(f"+experiment={experiment}", f"data.root={labeled_root}", *TINY)
    assert cfg.experiment_name == experiment
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.trainer.accelerator = "cpu"  # GPU experiments are checked on CPU here
        cfg.trainer.precision = "32"

    datamodule = hydra.utils.instantiate(cfg.data)
    assert len(datamodule.stream("val")) > 0
    model = hydra.utils.instantiate(cfg.task, _convert_="all")
    assert model.hparams.max_length == cfg.data.max_length
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_seed_recipe_is_the_default():
    cfg = _compose()
    assert cfg.model.encoder == "microsoft/unixcoder-base"
    assert (cfg.data.max_length, cfg.data.batch_size, cfg.task.lr) == (512, 16, 2e-5)
    assert (cfg.trainer.max_epochs, cfg.trainer.precision, cfg.model.compile) == (3, "bf16-mixed", True)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_params_are_valid_overrides(sweep):
    params = _compose(f"+sweep={sweep}", hydra_config=True).hydra.sweeper.params
    assert params
    for key, values in params.items():
        for value in str(values).split(","):
            _compose(f"+sweep={sweep}", f"{key}={value}")


def test_debug_fast_composes():
    cfg = _compose("+experiment=quickstart", "+debug=fast")
    assert cfg.trainer.limit_train_batches == 5 and not cfg.get("logger")


@pytest.mark.slow
def test_multirun_over_label_sets_from_the_command_line(labeled_root, tmp_path):
    """The real entry point: `-m +sweep=label_sets`, one run (and report) per label set."""
    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        str(root / "train.py"),
        "-m",
        "+sweep=label_sets",
        "+debug=fast",
        "model=tiny",
        "trainer=cpu",
        f"data.root={labeled_root}",
        "data.max_length=32",
        "trainer.limit_train_batches=2",
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    subprocess.run(cmd, check=True, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    for job, label_set in enumerate(["full", "coarse"]):
        report = (tmp_path / str(job) / "report.md").read_text()
        assert f"label_set | {label_set}" in report
