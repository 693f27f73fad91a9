"""From labeled rows to model batches: tokenize, group files of similar length, pad each batch to its longest.

Plain functions over lists of dicts, so the DataModule, the evaluation script and a notebook build batches the
same way.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import torch

from curator.labels import QUALITY, STRUCTURED_DATA, LabelSet

CONTENT_TYPE = "content_type"
# Tokenizing a few hundred files per call amortises the fast tokenizer's per-call overhead.
TOKENIZE_CHUNK = 256
# Only a file's head is tokenized: max_length tokens of code take about 3 characters each, so 6 per token
# leaves room. Tokenizing whole files cost 4.3x more on the shipped sample at 512 tokens for the same model
# input (experiments/gpu_throughput/tokenize_heads.py), enough to make tokenization the limit of training.
HEAD_CHARS_PER_TOKEN = 6


def encode_rows(rows: list[dict], tokenizer, max_length: int, label_set: LabelSet) -> list[dict]:
    """Token ids (truncated to max_length, special tokens included) and integer targets of labeled rows.

    Each file's head of HEAD_CHARS_PER_TOKEN x max_length characters is tokenized; a head that holds fewer
    than max_length tokens (blank runs, tokens a tokenizer folds away) is tokenized again whole, so the model
    input is what tokenizing the whole file with truncation gives.
    """

    def tokenize(texts: list[str]) -> list[list[int]]:
        return tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]

    head = HEAD_CHARS_PER_TOKEN * max_length
    examples = []
    for start in range(0, len(rows), TOKENIZE_CHUNK):
        chunk = rows[start : start + TOKENIZE_CHUNK]
        texts = [row["content"] or "" for row in chunk]
        ids = tokenize([t[:head] for t in texts])
        redo = [i for i, t in enumerate(texts) if len(t) > head and len(ids[i]) < max_length]
        for i, again in zip(redo, tokenize([texts[i] for i in redo]) if redo else [], strict=True):
            ids[i] = again
        for row, input_ids in zip(chunk, ids, strict=True):
            examples.append(
                {
                    "id": str(row["id"]),
                    "language": row.get("language"),
                    "input_ids": input_ids,
                    QUALITY.name: int(row[QUALITY.name]),
                    STRUCTURED_DATA.name: int(row[STRUCTURED_DATA.name]),
                    CONTENT_TYPE: label_set.index(row[CONTENT_TYPE]),
                }
            )
    return examples


def length_grouped(
    examples: Iterable[dict], batch_size: int, buffer_batches: int, rng: random.Random | None
) -> Iterator[list[dict]]:
    """Batches of files of similar length: fill a buffer of `buffer_batches` batches, sort it by length, cut it
    into batches, and (with an rng) shuffle those batches so that a step's length does not creep upwards.

    Only the last batch of the stream can be short, so a stream of n files gives ceil(n / batch_size) batches.
    """
    buffer: list[dict] = []
    for example in examples:
        buffer.append(example)
        if len(buffer) == batch_size * buffer_batches:
            yield from _cut(buffer, batch_size, rng)
            buffer = []
    if buffer:
        yield from _cut(buffer, batch_size, rng)


def _cut(buffer: list[dict], batch_size: int, rng: random.Random | None) -> list[list[dict]]:
    buffer.sort(key=lambda e: len(e["input_ids"]))
    batches = [buffer[i : i + batch_size] for i in range(0, len(buffer), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def padded_width(longest: int, multiple_of: int = 1, max_width: int | None = None) -> int:
    """`longest` rounded up to a multiple of `multiple_of`, but never past max(longest, max_width).

    Rounding keeps the number of distinct batch shapes small: a compiled model captured as CUDA graphs
    records one graph per shape (at 512 tokens and a multiple of 64, eight widths per batch size).
    """
    width = -(-longest // multiple_of) * multiple_of
    if max_width is not None:
        width = min(width, max(longest, max_width))
    return width


def pad_sequences(
    sequences: list[list[int]], pad_token_id: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token id lists padded on the right to `width` (default: the longest)."""
    width = max(len(s) for s in sequences) if width is None else width
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
    return input_ids, attention_mask


def pad_batch(
    examples: list[dict], pad_token_id: int, multiple_of: int = 1, max_width: int | None = None
) -> dict:
    """Tensors padded to the longest file of this batch (not to max_length): short files cost short steps.

    With `multiple_of`, the width is rounded up (see `padded_width`).
    """
    sequences = [e["input_ids"] for e in examples]
    width = padded_width(max(len(s) for s in sequences), multiple_of, max_width)
    input_ids, attention_mask = pad_sequences(sequences, pad_token_id, width)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "id": [e["id"] for e in examples],
        "language": [e["language"] for e in examples],
    }
    for head in (QUALITY.name, STRUCTURED_DATA.name, CONTENT_TYPE):
        batch[head] = torch.tensor([e[head] for e in examples], dtype=torch.long)
    return batch
