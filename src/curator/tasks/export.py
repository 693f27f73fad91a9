"""Export a checkpoint as one self-contained folder with its model card: what a user ships to the machines
that score a corpus. `curator.tasks.trained.load_trained(folder)` reads it back."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors.torch import save_model

from curator.tasks.card import CARD_NAME, find_report, model_card
from curator.tasks.trained import (
    CONFIG_NAME,
    EXPORT_FORMAT_VERSION,
    WEIGHTS_NAME,
    _from_checkpoint,
    _read_checkpoint,
)


def export_trained(
    src_ckpt: str | Path, out_dir: str | Path, overwrite: bool = False, report: str | Path | None = None
) -> Path:
    """Write a checkpoint as one self-contained folder that `load_trained(out_dir)` reads.

    The folder also gets a model card (README.md) with the test tables of `report` (a metrics.json; by default
    the run's own, when the checkpoint sits in `<run>/checkpoints/`). The folder is assembled beside its target
    and renamed into place, so an interrupted export never leaves a folder that looks complete.
    """
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
        "code_markers": trained.code_markers,
        "with_path": trained.with_path,
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


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload an exported folder (weights, config, tokenizer, model card) to the Hub model repository `repo_id`,
    creating it if needed; returns the commit's URL.

    The token is read from HF_TOKEN (or the login that `hf auth login` saved) by huggingface_hub itself: it is
    never passed around, printed or written here. HF_ENDPOINT points at another Hub (or a test stand-in).
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_NAME}: not an exported model")
    api = HfApi()
    if not get_token():
        raise PermissionError("no Hub token: set HF_TOKEN (a token with write access) or run `hf auth login`")
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message=f"curator model from {folder.name}",
        )
    except HfHubHTTPError as e:
        # The first line of the Hub's message (status and reason); the request headers, token included, are not
        # part of it.
        raise RuntimeError(f"upload of {folder} to {repo_id} failed: {str(e).splitlines()[0]}") from None
    return commit.commit_url
