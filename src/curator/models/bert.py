"""A BERT- or RoBERTa-family encoder's weights without transformers' modelling code, for scoring.

Importing transformers' modelling code takes seconds (6.3 s on the CPU of an H200 machine, 2.2 s on a CPU
machine here, experiments/gpu_throughput), and every scoring process pays it before its first batch. The packed
forward (`curator.models.packed.PackedEncoder`) needs only the encoder's parameters and a few config fields,
so scoring on the packed path builds this module tree instead: the submodules and parameter names of Hugging
Face's BertModel / RobertaModel without the pooler, so that a checkpoint's or an exported folder's weights load
into it unchanged and strictly, and `model_fingerprint` gives the same digest. It has no forward of its own: it
runs through PackedEncoder, which the tests compare with the Hugging Face forward.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

from torch import nn

# Keys that some transformers versions keep in an encoder's state dict: constant index buffers, not weights.
INDEX_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


@dataclass
class EncoderConfig:
    """The fields of a Hugging Face BERT/RoBERTa config that the packed forward reads (defaults: BERT's)."""

    model_type: str
    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    position_embedding_type: str = "absolute"

    @classmethod
    def from_dict(cls, config: dict) -> EncoderConfig:
        """From a saved Hugging Face config dict (its other fields are ignored)."""
        return cls(
            **{f.name: config[f.name] for f in dataclasses.fields(cls) if config.get(f.name) is not None}
        )


def _drop_index_buffers(module, state_dict, prefix, *args) -> None:
    # Index buffers that some transformers versions save with the weights are not weights: a state dict that
    # holds them loads strictly all the same, into this encoder or into a classifier around it.
    for name in INDEX_BUFFERS:
        state_dict.pop(prefix + name, None)


class _Module(nn.Module):
    """An nn.Module whose children are given as keyword arguments (Hugging Face's names)."""

    def __init__(self, /, **children: nn.Module):  # positional-only: one child is called `self`
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


@contextlib.contextmanager
def _without_initialisation():
    """The layers' reset_parameters as no-ops while they are built.

    Initialising 125M weights that are overwritten at once costs about a second, and building on the meta
    device instead imports torch's compiler (its meta kernels for the initialisers), which costs more.
    """
    layers = (nn.Linear, nn.Embedding, nn.LayerNorm)
    saved = [cls.reset_parameters for cls in layers]
    for cls in layers:
        cls.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for cls, reset in zip(layers, saved, strict=True):
            cls.reset_parameters = reset


class BertLikeEncoder(nn.Module):
    """embeddings (word, position, token type, LayerNorm) and encoder.layer[i] (attention.self.query/key/value,
    attention.output.dense/LayerNorm, intermediate.dense, output.dense/LayerNorm), uninitialised until the
    weights are loaded."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        h, n = config.hidden_size, config.intermediate_size
        eps = config.layer_norm_eps
        # Uninitialised memory: the weights are loaded next (load_state_dict is strict, so none is left so).
        with _without_initialisation():
            self.embeddings = _Module(
                word_embeddings=nn.Embedding(config.vocab_size, h),
                position_embeddings=nn.Embedding(config.max_position_embeddings, h),
                token_type_embeddings=nn.Embedding(config.type_vocab_size, h),
                LayerNorm=nn.LayerNorm(h, eps=eps),
            )
            layers = [
                _Module(
                    attention=_Module(
                        self=_Module(query=nn.Linear(h, h), key=nn.Linear(h, h), value=nn.Linear(h, h)),
                        output=_Module(dense=nn.Linear(h, h), LayerNorm=nn.LayerNorm(h, eps=eps)),
                    ),
                    intermediate=_Module(dense=nn.Linear(h, n)),
                    output=_Module(dense=nn.Linear(n, h), LayerNorm=nn.LayerNorm(h, eps=eps)),
                )
                for _ in range(config.num_hidden_layers)
            ]
            self.encoder = _Module(layer=nn.ModuleList(layers))
        self.register_load_state_dict_pre_hook(_drop_index_buffers)

    def forward(self, *args, **kwargs):
        raise TypeError(
            "BertLikeEncoder holds weights for the packed forward: run it through "
            "curator.models.packed.PackedEncoder (the padded forward needs the Hugging Face model)"
        )
