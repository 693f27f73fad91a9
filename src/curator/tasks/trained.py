"""A trained classifier ready to score: loaded from a Lightning checkpoint or from an exported folder.

A checkpoint (`.ckpt`) holds the plain hyperparameters of `curator.tasks.module.CuratorTask`: `encoder`,
`encoder_config` (the full encoder config, so nothing is downloaded), `tokenizer`, `label_set`, `pooling`,
`max_length`, and a state_dict whose keys start with `model.`. Reading it needs torch only, not Lightning.

An exported folder is self-contained: `model.safetensors`, `curator_config.json` and the tokenizer files. It is
what a user ships to the machines that score a corpus, or pushes to the Hub (`export.py --push-to-hub`): a hub
id (`owner/name`, or `owner/name@revision`) that is not a local path is downloaded with huggingface_hub's
`snapshot_download` into its cache (HF_HUB_OFFLINE=1 reads the cache alone).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from curator.data.inputs import InputEncoder, build_tokenizer, load_tokenizer, register_code_markers
from curator.labels import LabelSet, get_label_set
from curator.models.bert import BertLikeEncoder, EncoderConfig
from curator.models.classifier import CuratorClassifier
from curator.models.encoder import build_encoder, max_model_tokens
from curator.models.packed import packable

EXPORT_FORMAT_VERSION = 1
# owner/name with the Hub's characters, and an optional @revision (a branch, tag or commit).
_HUB_ID = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)(@(?P<revision>[\w./-]+))?")
CONFIG_NAME = "curator_config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class TrainedModel:
    model: CuratorClassifier  # in eval mode, on the device it was loaded to
    tokenizer: Any
    label_set: LabelSet
    max_length: int
    code_markers: bool = False  # newlines and indentation as tokens (see curator.data.inputs)
    with_path: bool = False  # the file's path first (see curator.data.inputs)

    def input_encoder(self, max_chars: int | None = None) -> InputEncoder:
        """The model's input path: the same token ids for a file as in its training."""
        return InputEncoder(self.tokenizer, self.max_length, max_chars, self.code_markers, self.with_path)


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


def _build(encoder_config: dict, label_set: LabelSet, pooling: str, packed: bool) -> CuratorClassifier:
    """The classifier's architecture, for the trained weights loaded next.

    With a full config the name is not looked up (and a short name like 'minilm' would need its package on the
    scoring machine). packed: for the packed forward only, an encoder that allows it is built as
    `BertLikeEncoder`, which spares the import of transformers' modelling code (seconds at every start-up).
    """
    light = EncoderConfig.from_dict(encoder_config) if packed else None
    if light is not None and packable(light):
        encoder = BertLikeEncoder(light)
    else:
        encoder = build_encoder("from-config", pretrained=False, config=encoder_config, init_weights=False)
    return CuratorClassifier(encoder, num_content_types=len(label_set.classes), pooling=pooling)


def _finish(
    model: CuratorClassifier, tokenizer, label_set: LabelSet, max_length, device, inputs: dict
) -> TrainedModel:
    """`inputs`: the input options the model was trained with (code_markers, with_path)."""
    max_length = int(max_length or max_model_tokens(model.encoder.config))
    return TrainedModel(model.to(device).eval(), tokenizer, label_set, max_length, **inputs)


def _input_options(saved: dict) -> dict:
    return {
        "code_markers": bool(saved.get("code_markers", False)),
        "with_path": bool(saved.get("with_path", False)),
    }


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


def _from_checkpoint(
    hp: dict, state: dict, device, packed: bool = False, light_tokenizer: bool = False
) -> TrainedModel:
    label_set = _label_set_from(hp["label_set"])
    model = _build(hp["encoder_config"], label_set, hp.get("pooling", "cls"), packed)
    model.load_state_dict(state)
    inputs = _input_options(hp)
    tokenizer = build_tokenizer(hp.get("tokenizer") or hp["encoder"], inputs["code_markers"], light_tokenizer)
    return _finish(model, tokenizer, label_set, hp.get("max_length"), device, inputs)


def _load_exported(folder: Path, device, packed: bool = False, light_tokenizer: bool = False) -> TrainedModel:
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    if cfg.get("format_version", 0) > EXPORT_FORMAT_VERSION:
        raise ValueError(
            f"{folder} was exported with format {cfg['format_version']}; this curator reads up to "
            f"{EXPORT_FORMAT_VERSION}: upgrade curator"
        )
    label_set = _label_set_from(cfg["label_set"])
    model = _build(cfg["encoder_config"], label_set, cfg["pooling"], packed)
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    tokenizer = load_tokenizer(folder, light=light_tokenizer)
    inputs = _input_options(cfg)
    if inputs["code_markers"]:
        register_code_markers(tokenizer)
    return _finish(model, tokenizer, label_set, cfg["max_length"], device, inputs)


def from_hub(model_id: str) -> Path:
    """The local folder of a model on the Hub (`owner/name[@revision]`), downloaded into the Hub cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    m = _HUB_ID.fullmatch(model_id)
    try:
        folder = snapshot_download(m["repo"], revision=m["revision"], repo_type="model")
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FileNotFoundError(
            f"no checkpoint or exported model at {model_id}, and it could not be downloaded from the Hub: {first}"
        ) from None
    return Path(folder)


def load_trained(
    path: str | Path, device: str | torch.device = "cpu", packed: bool = False, light_tokenizer: bool = False
) -> TrainedModel:
    """A trained classifier from a Lightning checkpoint file, an exported folder, or a hub id of one.

    packed: the model will run on the packed forward only (`curator.models.packed`), as score.py's does on a
    GPU: a BERT/RoBERTa-family encoder is then built without transformers' modelling code, and the classifier's
    padded forward is not available.
    light_tokenizer: the tokenizer only turns files into ids (`input_encoder`), as in scoring: read from its
    tokenizer.json without transformers (`curator.data.inputs.TokenizerFile`), where there is one.
    """
    if not Path(path).exists() and _HUB_ID.fullmatch(str(path)):
        path = from_hub(str(path))
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} is a folder but has no {CONFIG_NAME}: not an exported model")
        return _load_exported(path, device, packed, light_tokenizer)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or exported model at {path}")
    return _from_checkpoint(*_read_checkpoint(path), device, packed, light_tokenizer)
