"""Unpadded ("packed") forward passes for BERT- and RoBERTa-family encoders: scoring, and training.

A padded batch spends compute on padding; scoring a corpus whose files range from 20 to 1024 tokens would
waste a large share of the GPU on it. Here the files of a batch are concatenated into one (total_tokens,)
sequence with cumulative lengths `cu_seqlens`, every linear layer runs on real tokens only, and attention runs
per file through Flash Attention's variable-length kernel (`aten._flash_attention_forward`, CUDA, bf16 and
fp16; it has a backward and takes the attention dropout). On a CPU, or where that kernel is missing, attention
falls back to one SDPA call per file: same function, slower, which is what the tests compare against the
Hugging Face forward.

In training (the wrapped encoder in train mode) the encoder's dropouts apply where the Hugging Face model
applies them, attention dropout included. A padded batch with a padding mask cannot use Flash Attention at all:
PyTorch falls back to a slower kernel for it.

The aten operator is called directly rather than through `torch.nn.attention.varlen.varlen_attn`: that wrapper
is a Python custom op whose module imports the compiler (torch._dynamo, 1-3.5 s at every scoring start-up)
and adds a kernel per layer for a random-state tensor that inference does not use.

The weights are the encoder's own (shared, not copied), so a trained checkpoint runs here unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from curator.models.classifier import CuratorClassifier

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SUPPORTED_MODEL_TYPES = ("bert", "roberta")
_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


def supports_packing(encoder: PreTrainedModel) -> bool:
    return packable(encoder.config)


def packable(config) -> bool:
    """Whether an encoder of this config (Hugging Face's, or `curator.models.bert.EncoderConfig`) runs packed."""
    return (
        config.model_type in SUPPORTED_MODEL_TYPES
        and (getattr(config, "position_embedding_type", None) or "absolute") == "absolute"
        and config.hidden_act in _ACTIVATIONS
    )


def position_ids_for(cu_seqlens: torch.Tensor, total: int, offset: int) -> torch.Tensor:
    """Position of every packed token within its own file, plus the model's offset.

    RoBERTa counts positions from padding_idx + 1 (its position table reserves the first rows), BERT from 0;
    getting this wrong shifts every position embedding and silently changes the scores.
    """
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lengths, output_size=total)
    return torch.arange(total, device=cu_seqlens.device) - starts + offset


def _attention_per_file(q, k, v, cu_q, cu_k, dropout: float) -> torch.Tensor:
    """The CPU fallback: one SDPA call per file, on (tokens, heads, head_dim) slices."""
    bounds_q, bounds_k = cu_q.tolist(), cu_k.tolist()
    parts = []
    for i in range(len(bounds_q) - 1):
        # (L, H, D) -> (1, H, L, D) for SDPA, and back
        qs = q[bounds_q[i] : bounds_q[i + 1]].transpose(0, 1).unsqueeze(0)
        ks, vs = (t[bounds_k[i] : bounds_k[i + 1]].transpose(0, 1).unsqueeze(0) for t in (k, v))
        parts.append(F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout)[0].transpose(0, 1))
    return torch.cat(parts)  # the files' queries are contiguous and in order


class PackedEncoder(nn.Module):
    """Runs `encoder`'s layers on packed tokens; returns hidden states of shape (total_tokens, hidden)."""

    def __init__(self, encoder: PreTrainedModel):
        super().__init__()
        if not supports_packing(encoder):
            raise ValueError(
                f"packing supports {SUPPORTED_MODEL_TYPES} encoders with absolute positions, "
                f"got model_type={encoder.config.model_type!r}"
            )
        self.encoder = encoder
        cfg = encoder.config
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.layer_norm_eps
        self.act = _ACTIVATIONS[cfg.hidden_act]
        self.position_offset = cfg.pad_token_id + 1 if cfg.model_type == "roberta" else 0
        self.hidden_dropout = cfg.hidden_dropout_prob
        self.attention_dropout = cfg.attention_probs_dropout_prob
        # Set by `fuse_qkv`: each layer's self-attention then has one (3 x hidden, hidden) projection, `qkv`.
        self.qkv_fused = False
        # Set by `use_gelu_epilogue`: the feed-forward's bias and GELU applied by the matmul itself.
        self.gelu_epilogue = False
        # Set by `use_fused_add_norm`: each sublayer's residual add and LayerNorm as one Triton kernel.
        self.fused_add_norm = None
        self._per_file = _attention_per_file  # left out of the compiler once one is asked for (below)
        self.compile_layers(None)  # eager until asked

    def _attention(self, q, k, v, cu_q, cu_k, max_q, max_k):
        dropout = self.attention_dropout if self.encoder.training else 0.0
        if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            return torch.ops.aten._flash_attention_forward(
                q, k, v, cu_q, cu_k, max_q, max_k, dropout, False, False
            )[0]
        return self._per_file(q, k, v, cu_q, cu_k, dropout)

    def _keep_fallback_eager(self) -> None:
        # The per-file loop breaks the graph anyway, and Inductor's CPU backend fails on SDPA with dropout under
        # dynamic shapes ("Exponent must be non-negative"). Wrapped here, not at import: torch.compiler.disable
        # imports the compiler, seconds that a run which never compiles should not pay.
        self._per_file = torch.compiler.disable(_attention_per_file)

    def compile(self, *args, **kwargs) -> None:
        """nn.Module.compile, the CPU attention fallback left to eager (training compiles this way)."""
        self._keep_fallback_eager()
        super().compile(*args, **kwargs)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.hidden_dropout, training=self.encoder.training)

    def compile_layers(self, options: dict | None) -> None:
        """torch.compile one transformer layer and run every layer through it ("regional" compilation);
        `options` for torch.compile, or None for the eager functions.

        The layers share their code and differ only in their weights, which the compiled function takes as
        inputs: one layer is compiled instead of the whole stack, which cuts the compile at start-up several
        times over (it is paid on every scoring run) and gives up only fusions across layer boundaries,
        where matrix products sit anyway. The embeddings and the first-token-only last layer get their own,
        smaller graphs.
        """
        functions = (self._embed, self._layer, self._first_only_layer)
        if options is not None:
            self._keep_fallback_eager()
            functions = tuple(torch.compile(f, **options) for f in functions)
        self._embed_fn, self._layer_fn, self._first_only_layer_fn = functions

    def _embed(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        emb = self.encoder.embeddings
        total = input_ids.shape[0]
        positions = position_ids_for(cu_seqlens, total, self.position_offset)
        x = (
            emb.word_embeddings(input_ids)
            + emb.position_embeddings(positions)
            + emb.token_type_embeddings.weight[0]
        )
        return self._dropout(emb.LayerNorm(x))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], self.num_heads, self.head_dim)

    def _fused_qkv(self, att: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Views into one (tokens, 3, heads, head_dim) result: Flash Attention takes any row stride.
        return att.qkv(x).view(x.shape[0], 3, self.num_heads, self.head_dim).unbind(1)

    def _layer(self, layer: nn.Module, x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int):
        att = layer.attention.self
        if self.qkv_fused:
            q, k, v = self._fused_qkv(att, x)
        else:
            q, k, v = self._heads(att.query(x)), self._heads(att.key(x)), self._heads(att.value(x))
        a = self._attention(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)
        return self._feed_forward(layer, a, x)

    def _first_only_layer(self, layer: nn.Module, x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int):
        """A layer whose output is wanted for each file's first token only: keys and values for every token,
        the query, attention output and feed-forward for the first tokens alone."""
        att = layer.attention.self
        starts = cu_seqlens[:-1].long()
        if self.qkv_fused:
            # Fused, the queries are computed for every token (1/144 of a 12-layer encoder's FLOPs), the first
            # ones kept.
            q, k, v = self._fused_qkv(att, x)
            q, x = q[starts], x[starts]
        else:
            k, v = self._heads(att.key(x)), self._heads(att.value(x))
            x = x[starts]  # one query per file
            q = self._heads(att.query(x))
        cu_q = torch.arange(x.shape[0] + 1, dtype=cu_seqlens.dtype, device=x.device)
        a = self._attention(q, k, v, cu_q, cu_seqlens, 1, max_seqlen)
        return self._feed_forward(layer, a, x)

    def _add_norm(
        self, norm: nn.LayerNorm, sublayer_out: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        if self.fused_add_norm is not None and not self.encoder.training:
            return self.fused_add_norm(sublayer_out, residual, norm)
        return norm(self._dropout(sublayer_out) + residual)

    def _feed_forward(self, layer: nn.Module, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = layer.attention.output
        x = self._add_norm(out.LayerNorm, out.dense(a.reshape(x.shape[0], -1)), x)
        dense = layer.intermediate.dense
        if self.gelu_epilogue and type(dense) is nn.Linear:
            # One kernel: the matmul's epilogue adds the bias and applies GELU on the way out, where an
            # elementwise GELU kernel would read and write the (tokens, 4 x hidden) activation once more.
            h = torch._addmm_activation(dense.bias, x, dense.weight.t(), use_gelu=True)
        else:
            h = self.act(dense(x))
        return self._add_norm(layer.output.LayerNorm, layer.output.dense(h), x)

    def forward(
        self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, first_only: bool = False
    ) -> torch.Tensor:
        """Hidden states (total_tokens, hidden); with first_only, those of each file's first token only.

        first_only is what first-token pooling needs, and it saves most of the last layer: keys and values are
        computed for every token, but the query, the attention output and the feed-forward only for the first
        token of each file (about 7% of a 12-layer encoder's FLOPs).
        """
        x = self._embed_fn(input_ids, cu_seqlens)
        layers = self.encoder.encoder.layer
        for i, layer in enumerate(layers):
            if first_only and i == len(layers) - 1:
                return self._first_only_layer_fn(layer, x, cu_seqlens, max_seqlen)
            x = self._layer_fn(layer, x, cu_seqlens, max_seqlen)
        return x


def fuse_qkv(encoder: PackedEncoder) -> PackedEncoder:
    """Give every layer's self-attention one query-key-value projection, `qkv`, the three weights stacked: one
    matmul in place of three, and its input read once. For inference: the stacked weights are copies, which
    training would not update (and the classifier's state_dict gains them)."""
    for layer in encoder.encoder.encoder.layer:
        att = layer.attention.self
        parts = (att.query, att.key, att.value)
        w = parts[0].weight
        att.qkv = nn.Linear(w.shape[1], 3 * w.shape[0], device=w.device, dtype=w.dtype).requires_grad_(False)
        with torch.no_grad():
            att.qkv.weight.copy_(torch.cat([p.weight for p in parts]))
            att.qkv.bias.copy_(torch.cat([p.bias for p in parts]))
    encoder.qkv_fused = True
    return encoder


def use_gelu_epilogue(encoder: PackedEncoder) -> PackedEncoder:
    """Apply the feed-forward's GELU inside its first matmul, for inference on a GPU.

    `torch._addmm_activation(..., use_gelu=True)` runs on CUDA as one cuBLASLt matmul whose epilogue adds the
    bias and applies GELU in its tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), which
    differs from the exact (erf) GELU the encoder was trained with by at most about 5e-4, a fraction of one
    bf16 rounding step at the activations' scale (experiments/gpu_throughput measures scores both ways).
    On a CPU the same call applies the exact GELU. torch.compile leaves the call to ATen (Inductor's fallback),
    so compiled and eager forwards both keep the fusion. Inference only: in training the dense layer and an
    exact GELU stay apart.
    """
    if encoder.act is not F.gelu:
        raise ValueError(f"the GELU epilogue needs a GELU encoder, this one's activation is {encoder.act}")
    encoder.gelu_epilogue = True
    return encoder


def use_fused_add_norm(encoder: PackedEncoder) -> PackedEncoder:
    """End each sublayer with one Triton kernel for its residual add and LayerNorm
    (`curator.models.add_norm`), for inference on a GPU: the two eager kernels spent a fifth of the forward's
    GPU time moving the same activations. Not for training (no backward, and the dropout between them is left
    out: in train mode the encoder takes the eager pair) nor under torch.compile, which fuses the pair itself."""
    from curator.models import add_norm

    encoder.fused_add_norm = add_norm.add_layer_norm
    return encoder


def packed_pool(hidden: torch.Tensor, cu_seqlens: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per file from packed hidden states: its first token ('cls') or its mean ('mean')."""
    starts = cu_seqlens[:-1].long()
    if pooling == "cls":
        return hidden[starts]
    if pooling == "mean":
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        file_of_token = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), lengths)
        sums = torch.zeros(len(lengths), hidden.shape[1], device=hidden.device, dtype=torch.float32)
        sums.index_add_(0, file_of_token, hidden.float())
        return sums / lengths.clamp(min=1).unsqueeze(1)
    raise ValueError(f"unknown pooling {pooling!r}: use 'cls' or 'mean'")


class PackedClassifier(nn.Module):
    """CuratorClassifier on packed input: same heads, same outputs, no padding."""

    def __init__(self, classifier: CuratorClassifier):
        super().__init__()
        self.classifier = classifier
        self.encoder = PackedEncoder(classifier.encoder)

    @torch.inference_mode()
    def forward(
        self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int
    ) -> dict[str, torch.Tensor]:
        return packed_forward(self.classifier, self.encoder, input_ids, cu_seqlens, max_seqlen)


def packed_forward(
    classifier: CuratorClassifier,
    encoder: PackedEncoder,
    input_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
) -> dict[str, torch.Tensor]:
    """The classifier's outputs for packed files; `encoder` is a PackedEncoder over the classifier's encoder."""
    if classifier.pooling == "cls":
        pooled = encoder(input_ids, cu_seqlens, max_seqlen, first_only=True)
    else:
        pooled = packed_pool(encoder(input_ids, cu_seqlens, max_seqlen), cu_seqlens, classifier.pooling)
    return classifier.heads(pooled)
