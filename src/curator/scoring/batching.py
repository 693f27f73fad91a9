"""From input rows to model batches: content checks, tokenization, length sorting and token-budget batching.

This runs in DataLoader worker processes, so tokenization overlaps the model. Rows are read a window at a
time (e.g. 4096 files), sorted by token count within the window, and cut into batches within a token budget.
For the padded forward the budget bounds files x longest file (rounded up to a multiple of 8): short files
travel in large batches, long files in small ones, and little compute is spent on padding. For the packed
forward the workers pack the batch themselves (one row of real tokens and the offsets where files start), so
the budget bounds real tokens and the main process only copies the batch to the GPU. Every item carries the
rows' positions within their part, so that the writer restores the input order.

A row that cannot be scored (null, binary, not UTF-8, unreadable) is not an exception: it travels in an item of
its own with its reason in `error`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset, get_worker_info

from curator.data.batching import HEAD_CHARS_PER_TOKEN, pad_sequences, padded_width
from curator.models.packed import pack
from curator.scoring.sources import Shard, iter_rows

PAD_MULTIPLE = 8  # tensor cores like multiples of 8; the extra padding counts against the budget


@dataclass(frozen=True)
class Part:
    """Rows start..stop-1 of a shard, scored into one output file."""

    shard: Shard
    start: int
    stop: int
    path: str  # the output file of this part

    @property
    def num_rows(self) -> int:
        return self.stop - self.start


@dataclass
class Row:
    index: int  # row number within the shard (the runner subtracts the part's start)
    id: str
    path: str | None
    ids: list[int] | None = None  # model input with special tokens, truncated to max_length
    num_tokens: int | None = None  # content tokens before truncation, special tokens not counted
    estimated: bool = False  # num_tokens extrapolated from a character-truncated head
    truncated: bool = False  # the model did not see the whole file
    error: str | None = None

    def meta(self) -> tuple:
        return (self.index, self.id, self.path, self.num_tokens, self.estimated, self.truncated, self.error)


def text_of(content, max_chars: int) -> tuple[str | None, str | None]:
    """(the content as text, error): None and a reason for what cannot be scored. Never raises."""
    if content is None:
        return None, "null content"
    if isinstance(content, (bytes, bytearray, memoryview)):
        raw = bytes(content)
        if b"\x00" in raw[: max_chars * 4]:
            return None, "binary content (NUL bytes)"
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"not valid UTF-8 (byte {e.start})"
    if not isinstance(content, str):
        return None, f"content is not text ({type(content).__name__})"
    # As git decides: a NUL among the first characters makes a file binary. Only the head is searched, so a
    # 100 MB file costs no more than a small one.
    if "\x00" in content[:max_chars]:
        return None, "binary content (NUL bytes)"
    return content, None


class Tokenize:
    """Turns content into model input: `prefix + content tokens[:room] + suffix`, as the training tokenizer
    does with truncation, while counting the content tokens before truncation.

    Tokenizing a 100 MB file costs seconds and the model sees only max_length tokens, so only a head of
    max_chars characters (default 6 x max_length; code runs about 3 characters a token) is tokenized; the count
    of a longer file is extrapolated from the head's characters per token and marked as estimated. A head that
    holds fewer tokens than the model takes (blanks, or long runs a tokenizer folds away) is doubled until it
    does, up to 64 x max_chars, so that the model sees what training showed it.
    """

    def __init__(self, tokenizer, max_length: int, max_chars: int | None = None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_chars = max_chars or max_length * HEAD_CHARS_PER_TOKEN
        # Where the special tokens go, learnt from the tokenizer itself ([CLS] x [SEP], <s> x </s>, ...).
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
        self.prefix, self.suffix = full[:at], full[at + len(plain) :]
        self.room = max_length - len(self.prefix) - len(self.suffix)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _encode(self, texts: list[str]) -> list[list[int] | str]:
        try:
            return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        except Exception:  # one odd text must not cost its window: retry one by one
            out = []
            for t in texts:
                try:
                    out.append(self.tokenizer([t], add_special_tokens=False, verbose=False)["input_ids"][0])
                except Exception as e:
                    out.append(f"tokenizer failed: {type(e).__name__}: {str(e)[:200]}")
            return out

    def rows(self, raw_rows: list[dict], first_index: int, id_prefix: str) -> list[Row]:
        rows, texts, todo = [], [], []
        for i, raw in enumerate(raw_rows, first_index):
            row_id = raw.get("id")
            row = Row(i, f"{id_prefix}{i}" if row_id is None else str(row_id), raw.get("max_stars_repo_path"))
            text, row.error = text_of(raw.get("content"), self.max_chars)
            row.error = raw.get("_error") or row.error
            if row.error is None:
                texts.append(text[: self.max_chars])
                todo.append((row, text))
            rows.append(row)
        for (row, text), ids in zip(todo, self._encode(texts) if texts else [], strict=True):
            head = min(len(text), self.max_chars)
            while (
                isinstance(ids, list) and len(ids) < self.room and head < min(len(text), 64 * self.max_chars)
            ):
                head = min(len(text), 2 * head)
                ids = self._encode([text[:head]])[0]
            if isinstance(ids, str):
                row.error = ids
                continue
            row.estimated = head < len(text)
            row.num_tokens = round(len(ids) * len(text) / head) if row.estimated else len(ids)
            row.truncated = row.estimated or len(ids) > self.room
            row.ids = self.prefix + ids[: self.room] + self.suffix
        return rows


def budget_batches(rows: list[Row], tokens_per_batch: int, max_length: int) -> Iterator[list[Row]]:
    """Rows sorted longest first, cut greedily so that len(batch) * padded longest <= tokens_per_batch.

    A file longer than the budget still goes through, alone in its batch.
    """
    rows = sorted(rows, key=lambda r: len(r.ids), reverse=True)
    i = 0
    while i < len(rows):
        per_row = padded_width(len(rows[i].ids), PAD_MULTIPLE, max_length)
        n = max(1, tokens_per_batch // per_row)
        yield rows[i : i + n]
        i += n


def packed_batches(rows: list[Row], tokens_per_batch: int) -> Iterator[list[Row]]:
    """Rows sorted longest first, cut greedily so that the real tokens of a batch stay within tokens_per_batch.

    Sorting is not needed for packing itself; it keeps batch sizes even, so the last batch of a window is not
    a handful of long files.
    """
    rows = sorted(rows, key=lambda r: len(r.ids), reverse=True)
    batch: list[Row] = []
    total = 0
    for r in rows:
        if batch and total + len(r.ids) > tokens_per_batch:
            yield batch
            batch, total = [], 0
        batch.append(r)
        total += len(r.ids)
    if batch:
        yield batch


def collate_packed(rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids (total,) int32, cu_seqlens (n+1,) int32) of a packed batch."""
    input_ids, cu_seqlens, _ = pack([r.ids for r in rows])
    return input_ids, cu_seqlens


def collate(rows: list[Row], pad_id: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = padded_width(max(len(r.ids) for r in rows), PAD_MULTIPLE, max_length)
    return pad_sequences([r.ids for r in rows], pad_id, width)


def part_items(
    part: Part, tok: Tokenize, window: int, tokens_per_batch: int, packed: bool = False
) -> Iterator[dict]:
    """Items for one part: model batches, items of error rows, and a closing item with the rows read.

    A batch item holds `input_ids` and `attention_mask` (padded), or `input_ids` and `cu_seqlens` (packed).
    """
    raw = iter_rows(part.shard, part.start, part.stop)
    id_prefix = f"{part.shard.language}/{part.shard.stem}#"
    n = 0
    while chunk := list(itertools.islice(raw, window)):
        rows = tok.rows(chunk, part.start + n, id_prefix)
        n += len(chunk)
        failed = [r for r in rows if r.error is not None]
        if failed:
            yield {"meta": [r.meta() for r in failed], "input_ids": None, "attention_mask": None}
        good = [r for r in rows if r.error is None]
        if packed:
            for batch in packed_batches(good, tokens_per_batch):
                input_ids, cu_seqlens = collate_packed(batch)
                yield {"meta": [r.meta() for r in batch], "input_ids": input_ids, "cu_seqlens": cu_seqlens}
            continue
        for batch in budget_batches(good, tokens_per_batch, tok.max_length):
            input_ids, attention_mask = collate(batch, tok.pad_id, tok.max_length)
            yield {
                "meta": [r.meta() for r in batch],
                "input_ids": input_ids,
                "attention_mask": attention_mask,
            }
    yield {"done": n}


class ScoreDataset(IterableDataset):
    """Items for a list of parts; DataLoader worker w takes parts w, w+W, w+2W, ...

    Each item names its part by its index in `parts`. A part that cannot be read yields a `failed` item
    instead of stopping the run: its output is not written, so a re-run tries it again.
    """

    def __init__(
        self, parts: list[Part], tok: Tokenize, window: int, tokens_per_batch: int, packed: bool = False
    ):
        self.parts, self.tok, self.window, self.tokens_per_batch = parts, tok, window, tokens_per_batch
        self.packed = packed

    def __iter__(self):
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info else (0, 1)
        for k in range(wid, len(self.parts), nworkers):
            try:
                for item in part_items(
                    self.parts[k], self.tok, self.window, self.tokens_per_batch, self.packed
                ):
                    yield {"part": k, **item}
            except Exception as e:
                yield {"part": k, "failed": f"{type(e).__name__}: {e}"}


def keep_as_is(item):
    """collate_fn for the DataLoader: items are whole batches already."""
    return item
