"""The LM every arm trains: tokenizer, a small Llama-style decoder from scratch, training and evaluation.

One recipe for every arm and seed; only the training tokens differ. The tokenizer is a byte-level BPE trained
once on a seeded sample of the whole pool (not of any arm's subset, so that no arm gets a tokenizer fitted to
it). Results are in bits per byte of the target text as well as mean loss per token, so that they do not
depend on how the tokenizer splits text.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class LMConfig:
    """The model and its optimisation; `PRESETS` names the ones used."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    seq_len: int
    batch_size: int  # sequences per step
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05


PRESETS = {
    # GPU: 8 layers of width 512 (25M parameters besides the 8.4M tied embedding), 1,024-token context,
    # 64 x 1,024 = 65,536 tokens a step.
    "small": LMConfig(16384, 512, 8, 8, 1408, 1024, 64),
    # CPU smoke test: a few seconds a run.
    "tiny": LMConfig(512, 32, 1, 2, 64, 64, 8, lr=3e-3),
}


# ---------------------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def encode(tok: Tokenizer, texts: list[str], chunk: int = 1024) -> list[np.ndarray]:
    """Each text's token ids as uint16 (vocabularies stay below 65,536), encoded in parallel a chunk at a time
    (the tokenizer's encodings of a whole pool at once would take gigabytes)."""
    out = []
    for i in range(0, len(texts), chunk):
        encs = tok.encode_batch(texts[i : i + chunk], add_special_tokens=False)
        out += [np.asarray(e.ids, dtype=np.uint16) for e in encs]
    return out


# ---------------------------------------------------------------------------------------------------------
# Model and training


def build_model(cfg: LMConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.seq_len,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
    )
    return LlamaForCausalLM(config)


def lr_at(step: int, total: int, cfg: LMConfig) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    warmup = max(1, int(total * cfg.warmup_fraction))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def autocast(device: torch.device):
    # bf16 on a GPU, as pretraining runs do; fp32 on a CPU, where bf16 matmuls are slow.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def train(
    cfg: LMConfig,
    stream: np.ndarray,
    train_tokens: int,
    seed: int,
    device: torch.device,
    log: Callable[[str], None],
    log_every: int = 50,
    compile_model: bool = False,
):
    """Train a fresh model on `train_tokens` tokens drawn as blocks of `stream`, reshuffled every epoch."""
    torch.manual_seed(seed)
    model = build_model(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    blocks = torch.from_numpy(stream[: len(stream) // cfg.seq_len * cfg.seq_len].astype(np.int64))
    blocks = blocks.view(-1, cfg.seq_len).to(device)  # the whole stream on the device: no copy a step
    if len(blocks) < cfg.batch_size:
        raise ValueError(f"{len(stream)} tokens make fewer than one batch of {cfg.batch_size}x{cfg.seq_len}")
    steps = max(1, math.ceil(train_tokens / (cfg.batch_size * cfg.seq_len)))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    step_fn = torch.compile(model) if compile_model else model
    rng = torch.Generator().manual_seed(seed)  # the batch order follows the seed too
    # An epoch's order is moved to the device once: a copy from host memory every step would wait for the GPU.
    order, pos = torch.randperm(len(blocks), generator=rng).to(device), 0
    model.train()
    start, last_loss = time.time(), float("nan")
    for step in range(steps):
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(blocks), generator=rng).to(device), 0
        batch = blocks[order[pos : pos + cfg.batch_size]]
        pos += cfg.batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, cfg)
        with autocast(device):
            loss = step_fn(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == steps - 1:
            last_loss = loss.item()
            rate = (step + 1) * cfg.batch_size * cfg.seq_len / max(time.time() - start, 1e-9)
            log(f"step {step + 1}/{steps} loss {last_loss:.4f} {rate:,.0f} tokens/s")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.time() - start
    model.eval()
    tokens = steps * cfg.batch_size * cfg.seq_len
    return model, {
        "params": n_params,
        "steps": steps,
        "train_tokens": tokens,
        "train_seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / max(seconds, 1e-9)),
        "final_train_loss": last_loss,
        "config": asdict(cfg),
    }


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def windows(ids: list[int], first_target: int, seq_len: int) -> list[tuple[list[int], list[int]]]:
    """(inputs, labels) windows covering a sequence; labels are -100 where no target is scored.

    `ids` starts with EOS (the document boundary the model saw in training), so the first real token is
    predicted too. Windows do not overlap: each target is scored once, with up to `seq_len` tokens of context.
    """
    labels = [-100 if i < first_target else t for i, t in enumerate(ids)]
    out = []
    for start in range(0, len(ids) - 1, seq_len):
        chunk = ids[start : start + seq_len + 1]
        lab = labels[start : start + seq_len + 1]
        if any(x != -100 for x in lab[1:]):
            out.append((chunk[:-1], lab[1:]))
    return out


def prepare_eval(tok: Tokenizer, items, seq_len: int) -> dict:
    """An evaluation set as windows, tokenized once for every run."""
    eos = tok.token_to_id(EOS)
    contexts = encode(tok, [item.context for item in items])
    targets = encode(tok, [item.target for item in items])
    wins, n_bytes = [], 0
    for item, ctx, tgt in zip(items, contexts, targets, strict=True):
        ctx, tgt = ctx.tolist(), tgt.tolist()
        wins += windows([eos, *ctx, *tgt], 1 + len(ctx), seq_len)
        n_bytes += len(item.target.encode("utf-8"))
    wins.sort(key=lambda w: len(w[0]))  # similar lengths together: less padding
    return {"items": len(items), "windows": wins, "bytes": n_bytes, "pad": eos}


@torch.no_grad()
def evaluate(model, prepared: dict, cfg: LMConfig, device: torch.device) -> dict:
    """Mean loss per target token and bits per target byte over a prepared set."""
    wins, batch_size = prepared["windows"], max(16, 65536 // cfg.seq_len)
    nats, n_tokens = 0.0, 0
    for i in range(0, len(wins), batch_size):
        chunk = wins[i : i + batch_size]
        width = max(len(x) for x, _ in chunk)
        inputs = torch.full((len(chunk), width), prepared["pad"], dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for j, (x, y) in enumerate(chunk):
            inputs[j, : len(x)] = torch.tensor(x)
            labels[j, : len(y)] = torch.tensor(y)
        inputs, labels = inputs.to(device), labels.to(device)
        with autocast(device):
            logits = model(input_ids=inputs).logits
        nll = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        nats += nll.item()
        n_tokens += int((labels != -100).sum())
    n_bytes = prepared["bytes"]
    return {
        "items": prepared["items"],
        "tokens": n_tokens,
        "bytes": n_bytes,
        "loss": nats / max(n_tokens, 1),
        "bits_per_byte": nats / math.log(2) / max(n_bytes, 1),
    }


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(path)


def sample_texts(texts: list[str], max_chars: int, seed: int = 0) -> list[str]:
    """A seeded sample of texts totalling at most about `max_chars` characters, for the tokenizer."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    out, total = [], 0
    for i in order:
        if total >= max_chars:
            break
        out.append(texts[i])
        total += len(texts[i])
    return out
