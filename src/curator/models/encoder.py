"""Loading a Hugging Face encoder, and pooling its token states into one vector per file.

Its tokenizer belongs to data (`curator.data.inputs`): data turns files into tensors, models take tensors.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch

from curator.hub import resolve_model_path

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


def build_encoder(
    name_or_path: str,
    pretrained: bool = True,
    config: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
    attn_implementation: str | None = "sdpa",
    init_weights: bool = True,
) -> PreTrainedModel:
    """An encoder by hub id or local path.

    pretrained=False builds the same architecture with random weights (tests, speed benchmarks).
    `config` is a full config dict (as saved in a checkpoint): with it nothing is read from the hub, which is
    how a trained checkpoint is rebuilt before its own weights are loaded into it. `config_overrides` shrink
    or change a config (e.g. a 2-layer encoder for tests). init_weights=False leaves a model built from a config
    uninitialised, for weights that are loaded next: random initialisation is about a second of a
    unixcoder-base load, paid by every scoring process at start-up.
    """
    # Here rather than at the top: transformers' modelling code takes seconds to import, which scoring on the
    # packed path does without (curator.models.bert).
    import transformers
    from transformers import AutoConfig, AutoModel

    # transformers 4.56 renamed from_pretrained's torch_dtype to dtype (5.x warns on the old name).
    dtype_arg = (
        "dtype"
        if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56)
        else "torch_dtype"
    )
    path = resolve_model_path(name_or_path)
    overrides = dict(config_overrides or {})
    if config is not None:
        cfg = AutoConfig.for_model(**{**config, **overrides})
    else:
        try:
            cfg = AutoConfig.from_pretrained(path, **overrides)
        except OSError as e:
            raise OSError(
                f"could not load encoder config {name_or_path!r}: {e}\n"
                "Offline? Use a local folder, or model.encoder=minilm for the packaged MiniLM."
            ) from e
    if attn_implementation is not None:
        cfg._attn_implementation = attn_implementation
    # BERT-style models carry a pooler we never use; models without one reject the argument.
    for kwargs in ({"add_pooling_layer": False}, {}):
        try:
            if pretrained and config is None:
                # fp32 weights whatever the saved dtype: training keeps fp32 master weights under bf16
                # autocast, and recent transformers would otherwise keep an fp16 checkpoint in fp16.
                return AutoModel.from_pretrained(path, config=cfg, **{dtype_arg: torch.float32}, **kwargs)
            with contextlib.nullcontext() if init_weights else _no_init_weights():
                return AutoModel.from_config(cfg, **kwargs)
        except TypeError as e:
            if "add_pooling_layer" not in str(e):
                raise
    raise AssertionError("unreachable")


def _no_init_weights():
    """transformers' context that skips weight initialisation (torch's and its own), wherever this version keeps
    it; a no-op where it has none."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


def max_model_tokens(config: PretrainedConfig) -> int:
    """How many tokens the encoder's position table allows.

    RoBERTa-family models (UniXcoder included) reserve padding_idx + 1 positions: position ids start after
    the padding index, so 1026 positions hold 1024 tokens.
    """
    n = config.max_position_embeddings
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        n -= config.pad_token_id + 1
    return n


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence: the first token's state ('cls'), or the mean over real tokens ('mean')."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r}: use 'cls' or 'mean'")


def avoid_cudnn_attention() -> None:
    """Keep PyTorch's attention off the cuDNN backend for padded batches of many different lengths.

    cuDNN's attention builds an execution plan for every new shape; length-grouped batches bring a new length
    almost every step. Measured on an H100 (experiments/gpu_throughput): eager training steps at batch 16 ran
    at 71 files/s with cuDNN attention and 381 files/s without. Flash and memory-efficient attention take over.
    """
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)
