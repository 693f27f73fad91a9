"""From labeled rows to training and evaluation batches: model input (through `curator.data.inputs`, the path
scoring uses too), targets, groups of files of similar length, each batch padded to its longest file.

Plain functions over lists, so the DataModule, evaluation, error analysis and a notebook batch the same way.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate, islice

import torch

from curator.data.inputs import InputEncoder, pack, pad, padded_width
from curator.labels import QUALITY, STRUCTURED_DATA, LabelSet

CONTENT_TYPE = "content_type"
# Tokenizing a few hundred files per call amortises the fast tokenizer's per-call overhead.
TOKENIZE_CHUNK = 256


@dataclass
class LabeledExample:
    """One labeled file as the model sees it, with its targets (content_type as a class index)."""

    row: int  # position among the rows given to encode_rows
    id: str
    language: str | None
    input_ids: list[int]
    num_tokens: int
    truncated: bool
    quality: int
    structured_data: int
    content_type: int


def encode_rows(
    rows: list[dict], encoder: InputEncoder, label_set: LabelSet
) -> tuple[list[LabeledExample], dict]:
    """Model input and integer targets of labeled rows; also {row position: reason} for rows that have no
    model input (null or binary content), which the caller reports instead of losing silently."""
    examples, errors = [], {}
    for start in range(0, len(rows), TOKENIZE_CHUNK):
        chunk = rows[start : start + TOKENIZE_CHUNK]
        paths = [r.get("path") for r in chunk]
        for i, (row, x) in enumerate(
            zip(chunk, encoder.encode([r["content"] for r in chunk], paths), strict=True)
        ):
            if x.error is not None:
                errors[start + i] = x.error
                continue
            examples.append(
                LabeledExample(
                    row=start + i,
                    id=str(row["id"]),
                    language=row.get("language"),
                    input_ids=x.ids,
                    num_tokens=x.num_tokens,
                    truncated=x.truncated,
                    quality=int(row[QUALITY.name]),
                    structured_data=int(row[STRUCTURED_DATA.name]),
                    content_type=label_set.index(row[CONTENT_TYPE]),
                )
            )
    return examples, errors


def length_grouped(
    examples: Iterable[LabeledExample], batch_size: int, buffer_batches: int, rng: random.Random | None
) -> Iterator[list[LabeledExample]]:
    """Batches of files of similar length: fill a buffer of `buffer_batches` batches, sort it by length, cut it
    into batches, and (with an rng) shuffle those batches so that a step's length does not creep upwards.

    Only the last batch of the stream can be short, so a stream of n files gives ceil(n / batch_size) batches.
    """
    buffer: list[LabeledExample] = []
    for example in examples:
        buffer.append(example)
        if len(buffer) == batch_size * buffer_batches:
            yield from _cut(buffer, batch_size, rng)
            buffer = []
    if buffer:
        yield from _cut(buffer, batch_size, rng)


def _cut(
    buffer: list[LabeledExample], batch_size: int, rng: random.Random | None
) -> list[list[LabeledExample]]:
    buffer.sort(key=lambda e: len(e.input_ids))
    batches = [buffer[i : i + batch_size] for i in range(0, len(buffer), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def sized_groups(
    examples: Iterable[LabeledExample], sizes: list[int], buffer_batches: int, rng: random.Random | None
) -> Iterator[list[LabeledExample]]:
    """Exactly len(sizes) batches of files of similar length, the k-th buffer cut at the k-th run of
    `buffer_batches` sizes (as `length_grouped`, with sizes given rather than all batch_size).

    `sizes` counts the rows planned; a row without model input (left out by `encode_rows`, which warns) makes
    the stream end short, and the batches still to come then share what is left. Only when fewer files than
    batches remain are files of this stream yielded again (with a warning), so that the count still holds.
    """
    examples = iter(examples)
    seen: list[LabeledExample] = []
    for start in range(0, len(sizes), buffer_batches):
        group = sizes[start : start + buffer_batches]
        buffer = list(islice(examples, sum(group)))
        if len(buffer) < sum(group):
            left = len(sizes) - start
            if len(buffer) < left:
                pool = buffer + seen
                if not pool:
                    raise ValueError(f"no file with model input to fill {left} batches")
                warnings.warn(
                    f"{left - len(buffer)} files repeat this epoch: rows without model input left "
                    f"fewer files than batches",
                    stacklevel=2,
                )
                buffer += [pool[i % len(pool)] for i in range(left - len(buffer))]
            group = [len(buffer) // left + (b < len(buffer) % left) for b in range(left)]
            yield from _cut_sizes(buffer, group, rng)
            return
        seen = buffer
        yield from _cut_sizes(buffer, group, rng)


def _cut_sizes(
    buffer: list[LabeledExample], sizes: list[int], rng: random.Random | None
) -> list[list[LabeledExample]]:
    buffer.sort(key=lambda e: len(e.input_ids))
    ends = list(accumulate(sizes))
    batches = [buffer[end - size : end] for size, end in zip(sizes, ends, strict=True)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def make_batch(
    examples: list[LabeledExample],
    pad_id: int,
    packed: bool = False,
    multiple_of: int = 1,
    max_width: int | None = None,
) -> dict:
    """A batch dict: `input_ids` and `attention_mask` padded to the longest file of the batch (not to
    max_length; with `multiple_of`, rounded up, see `padded_width`), the targets, `id`, `language`, and with
    `packed` also `packed_input_ids` and `cu_seqlens` (the files unpadded, for the packed encoder)."""
    sequences = [e.input_ids for e in examples]
    width = padded_width(max(len(s) for s in sequences), multiple_of, max_width)
    input_ids, attention_mask = pad(sequences, pad_id, width)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "id": [e.id for e in examples],
        "language": [e.language for e in examples],
    }
    for head in (QUALITY.name, STRUCTURED_DATA.name, CONTENT_TYPE):
        batch[head] = torch.tensor([getattr(e, head) for e in examples], dtype=torch.long)
    if packed:
        # Packed where the batch is made (a worker), so the tensors get pinned and the step never asks the GPU
        # for the lengths (which would make the host wait for it).
        batch["packed_input_ids"], batch["cu_seqlens"], _ = pack(sequences)
    return batch
