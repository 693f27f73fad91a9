"""A trained classifier ready to score: loaded from a Lightning checkpoint or from an exported folder.

A checkpoint (`.ckpt`) holds the plain hyperparameters of `curator.tasks.module.CuratorTask`: `encoder`,
`encoder_config` (the full encoder config, so nothing is downloaded), `tokenizer`, `label_set`, `pooling`,
`max_length`, and a state_dict whose keys start with `model.`. Reading it needs torch only, not Lightning.

An exported folder is self-contained: `model.safetensors`, `curator_config.json` and the tokenizer files. It is
what a user ships to the machines that score a corpus.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from transformers import AutoTokenizer

from curator.labels import LabelSet, get_label_set
from curator.models.classifier import CuratorClassifier
from curator.models.encoder import build_encoder, build_tokenizer, max_model_tokens

EXPORT_FORMAT_VERSION = 1
CONFIG_NAME = "curator_config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class TrainedModel:
    model: CuratorClassifier  # in eval mode, on the device it was loaded to
    tokenizer: Any
    label_set: LabelSet
    max_length: int


def _label_set_from(value: Any) -> LabelSet:
    """A LabelSet from what a checkpoint or config stores: a name, a {name, classes} dict, or a LabelSet."""
    if isinstance(value, LabelSet):
        return value
    if isinstance(value, str):
        return get_label_set(value)
    if isinstance(value, Mapping) and "name" in value:
        classes = tuple(value.get("classes") or ())
        try:
            known = get_label_set(value["name"])
        except ValueError:
            if not classes:
                raise
            # A label set this version of the package does not define: the class names are all scoring needs.
            return LabelSet(value["name"], classes, {c: c for c in classes})
        if classes and classes != known.classes:
            raise ValueError(
                f"label set {value['name']!r} was saved with classes {list(classes)}, but this package defines "
                f"{list(known.classes)}; scores would be attributed to the wrong classes"
            )
        return known
    raise ValueError(f"cannot read a label set from {value!r}")


def _build(encoder_config: dict, label_set: LabelSet, pooling: str) -> CuratorClassifier:
    # With a full config the name is not looked up (and a short name like 'minilm' would need its package on
    # the scoring machine): only the architecture is built, the trained weights are loaded next.
    encoder = build_encoder("from-config", pretrained=False, config=encoder_config)
    return CuratorClassifier(encoder, num_content_types=len(label_set.classes), pooling=pooling)


def _finish(model: CuratorClassifier, tokenizer, label_set: LabelSet, max_length, device) -> TrainedModel:
    max_length = int(max_length or max_model_tokens(model.encoder.config))
    return TrainedModel(model.to(device).eval(), tokenizer, label_set, max_length)


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    # weights_only=False: Lightning checkpoints carry plain Python hyperparameters next to the tensors.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hp = dict(ckpt.get("hyper_parameters") or {})
    missing = [k for k in ("encoder_config", "label_set") if k not in hp]
    if missing:
        raise ValueError(f"{path} is not a curator checkpoint: hyper_parameters lack {missing}")
    # `_orig_mod.` is what torch.compile(module) puts into names; a compiled run's weights are the same weights.
    state = {
        k[len("model.") :].replace("_orig_mod.", ""): v
        for k, v in ckpt["state_dict"].items()
        if k.startswith("model.")
    }
    if not state:
        raise ValueError(f"{path}: no state_dict keys start with 'model.'")
    return hp, state


def _from_checkpoint(hp: dict, state: dict, device) -> TrainedModel:
    label_set = _label_set_from(hp["label_set"])
    model = _build(hp["encoder_config"], label_set, hp.get("pooling", "cls"))
    model.load_state_dict(state)
    tokenizer = build_tokenizer(hp.get("tokenizer") or hp["encoder"])
    return _finish(model, tokenizer, label_set, hp.get("max_length"), device)


def _load_exported(folder: Path, device) -> TrainedModel:
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    if cfg.get("format_version", 0) > EXPORT_FORMAT_VERSION:
        raise ValueError(
            f"{folder} was exported with format {cfg['format_version']}; this curator reads up to "
            f"{EXPORT_FORMAT_VERSION}: upgrade curator"
        )
    label_set = _label_set_from(cfg["label_set"])
    model = _build(cfg["encoder_config"], label_set, cfg["pooling"])
    load_model(model, str(folder / WEIGHTS_NAME))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return _finish(model, tokenizer, label_set, cfg["max_length"], device)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """A trained classifier from a Lightning checkpoint file or an exported folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} is a folder but has no {CONFIG_NAME}: not an exported model")
        return _load_exported(path, device)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or exported model at {path}")
    return _from_checkpoint(*_read_checkpoint(path), device)


def export_trained(
    src_ckpt: str | Path, out_dir: str | Path, overwrite: bool = False, report: str | Path | None = None
) -> Path:
    """Write a checkpoint as one self-contained folder that `load_trained(out_dir)` reads.

    The folder also gets a model card (README.md) with the test tables of `report` (a metrics.json; by default
    the run's own, when the checkpoint sits in `<run>/checkpoints/`). The folder is assembled beside its target
    and renamed into place, so an interrupted export never leaves a folder that looks complete.
    """
    # Here, not at the top: the card's tables come from curator.tasks (torchmetrics), which loading a model
    # to score never needs.
    from curator.models.card import CARD_NAME, find_report, model_card

    src_ckpt, out_dir = Path(src_ckpt), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    if report is not None and not Path(report).is_file():
        raise FileNotFoundError(f"no test report at {report}")
    report = report if report is not None else find_report(src_ckpt)
    hp, state = _read_checkpoint(src_ckpt)
    trained = _from_checkpoint(hp, state, "cpu")
    config = {
        "format_version": EXPORT_FORMAT_VERSION,
        "encoder": hp.get("encoder"),
        "encoder_config": hp["encoder_config"],
        "label_set": {"name": trained.label_set.name, "classes": list(trained.label_set.classes)},
        "pooling": trained.model.pooling,
        "max_length": trained.max_length,
        "source_checkpoint": src_ckpt.name,
    }
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # save_model (not save_file) handles tensors that share storage, such as tied embeddings.
    save_model(trained.model, str(tmp / WEIGHTS_NAME))
    (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    trained.tokenizer.save_pretrained(str(tmp))
    num_parameters = sum(p.numel() for p in trained.model.parameters())
    card = model_card(out_dir, src_ckpt, config, trained.label_set, num_parameters, report)
    (tmp / CARD_NAME).write_text(card)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
