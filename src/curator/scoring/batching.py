"""From corpus rows to model batches for scoring: the model input of `curator.data.inputs`, length sorting and
token-budget batching, in DataLoader worker processes so that tokenizing overlaps the model.

Rows are read a window at a time (e.g. 1024 files), sorted by token count within the window, and cut into
batches within a token budget. For the padded forward the budget bounds files x longest file (rounded up to a
multiple of 8): short files travel in large batches, long files in small ones. For the packed forward the
workers pack the batch themselves, so the budget bounds real tokens and the main process only copies the batch
to the GPU. Every row keeps its position within its part, so that the writer restores the input order.

What a worker hands the runner, one typed item at a time:
- `ModelBatch`: rows with model input and their tensors (padded, or packed when the forward is packed);
- `ErrorRows`: rows that cannot be scored (null, binary, not UTF-8, unreadable), each with its reason;
- `Progress`: every row of a part up to a point has been handed over (after each window but the last), so that
  the runner can write what it has of a long part before the part ends;
- `PartDone`: a part was read to its end (how many rows);
- `PartFailed`: a part could not be read (its output is not written, so a re-run tries it again).
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import IterableDataset

from curator.data.inputs import InputEncoder, pack, pad, padded_width, text_of
from curator.data.signals import file_signals, null_signals
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
class RowInfo:
    """One corpus row on its way to a score row: where it came from and what the model saw of it."""

    index: int  # row number within the shard (the runner subtracts the part's start)
    id: str
    path: str | None
    num_tokens: int | None = None  # content tokens of the whole file (see curator.data.inputs)
    estimated: bool = False
    truncated: bool = False
    error: str | None = None
    window: int = 0  # which of the file's windows this row holds (0: the head)
    windows: int = 1  # windows of the file that are scored (0 for a row with an error)
    weight: int = 0  # tokens of the file new to this window: its weight in the file's mean
    ids: list[int] | None = field(default=None, repr=False)  # model input; dropped once batched
    signals: dict = field(
        default_factory=null_signals, repr=False
    )  # of the whole file (curator.data.signals)


@dataclass
class ModelBatch:
    part: int
    rows: list[RowInfo]
    input_ids: torch.Tensor  # (files, width) padded, or (tokens,) packed
    attention_mask: torch.Tensor | None = None  # padded batches
    cu_seqlens: torch.Tensor | None = None  # packed batches: where each file starts, and the end

    @property
    def tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.cu_seqlens[-1]) if self.cu_seqlens is not None else int(self.attention_mask.sum())

    def pin_memory(self) -> ModelBatch:
        # The DataLoader calls this on each item when pin_memory=True: pinned tensors copy to the GPU
        # without making the host wait.
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return ModelBatch(
            self.part, self.rows, pin(self.input_ids), pin(self.attention_mask), pin(self.cu_seqlens)
        )

    def halves(self) -> list[ModelBatch]:
        """The batch split in two by files (for a retry after running out of GPU memory)."""
        h = len(self.rows) // 2
        if self.cu_seqlens is None:
            return [
                ModelBatch(self.part, self.rows[a:b], self.input_ids[a:b], self.attention_mask[a:b])
                for a, b in ((0, h), (h, None))
            ]
        cu, ids = self.cu_seqlens, self.input_ids
        mid = int(cu[h])
        return [
            ModelBatch(self.part, self.rows[:h], ids[:mid], cu_seqlens=cu[: h + 1]),
            ModelBatch(self.part, self.rows[h:], ids[mid:], cu_seqlens=cu[h:] - mid),
        ]


@dataclass
class ErrorRows:
    part: int
    rows: list[RowInfo]


@dataclass
class Progress:
    """Every row of the part before `upto` (absolute row number) has been handed over."""

    part: int
    upto: int


@dataclass
class PartDone:
    part: int
    rows_read: int


@dataclass
class PartFailed:
    part: int
    reason: str


def encode_rows(
    encoder: InputEncoder, raw_rows: list[dict], first_index: int, id_prefix: str, max_windows: int = 1
) -> list[RowInfo]:
    """RowInfos with model input for raw corpus rows, one per window of each file (one per file with the
    default `max_windows=1`); a row without an id gets `<id_prefix><row number>`."""
    # Each row's text once: the model input reads its head, the junk signals the whole file (within their own
    # size cap). A row that is not text goes to the encoder as it is, which gives the reason.
    texts = [text_of(r.get("content"), encoder.max_chars)[0] for r in raw_rows]
    inputs = encoder.windows(
        [r.get("content") if t is None else t for r, t in zip(raw_rows, texts, strict=True)],
        [r.get("max_stars_repo_path") for r in raw_rows],
        max_windows,
    )
    rows = []
    for i, (raw, text, wins) in enumerate(zip(raw_rows, texts, inputs, strict=True)):
        row_id = raw.get("id")
        error = raw.get("_error") or wins[0].error
        signals = null_signals() if text is None else file_signals(text)
        for k, x in enumerate(wins):
            rows.append(
                RowInfo(
                    index=first_index + i,
                    id=f"{id_prefix}{first_index + i}" if row_id is None else str(row_id),
                    path=raw.get("max_stars_repo_path"),
                    num_tokens=x.num_tokens,
                    estimated=x.estimated,
                    truncated=x.truncated,
                    error=error,
                    window=k,
                    windows=0 if error is not None else len(wins),
                    weight=x.weight,
                    ids=x.ids,
                    signals=signals,
                )
            )
    return rows


def budget_batches(rows: list[RowInfo], tokens_per_batch: int, max_length: int) -> Iterator[list[RowInfo]]:
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


def packed_batches(rows: list[RowInfo], tokens_per_batch: int) -> Iterator[list[RowInfo]]:
    """Rows sorted longest first, cut greedily so that the real tokens of a batch stay within tokens_per_batch.

    Sorting is not needed for packing itself; it keeps batch sizes even, so the last batch of a window is not
    a handful of long files.
    """
    rows = sorted(rows, key=lambda r: len(r.ids), reverse=True)
    batch: list[RowInfo] = []
    total = 0
    for r in rows:
        if batch and total + len(r.ids) > tokens_per_batch:
            yield batch
            batch, total = [], 0
        batch.append(r)
        total += len(r.ids)
    if batch:
        yield batch


def make_model_batch(
    part: int, rows: list[RowInfo], packed: bool, pad_id: int, max_length: int
) -> ModelBatch:
    sequences = [r.ids for r in rows]
    for r in rows:
        r.ids = None  # the tensors carry them now; the rows travel on as metadata only
    if packed:
        input_ids, cu_seqlens, _ = pack(sequences)
        return ModelBatch(part, rows, input_ids, cu_seqlens=cu_seqlens)
    width = padded_width(max(map(len, sequences)), PAD_MULTIPLE, max_length)
    input_ids, attention_mask = pad(sequences, pad_id, width)
    return ModelBatch(part, rows, input_ids, attention_mask=attention_mask)


def part_items(
    k: int,
    part: Part,
    encoder: InputEncoder,
    window: int,
    tokens_per_batch: int,
    packed: bool,
    max_windows: int = 1,
):
    """The items of part number k: model batches and error rows, then `PartDone`. Every window of a file is
    handed over before the `Progress` that passes its row."""
    raw = iter_rows(part.shard, part.start, part.stop)
    id_prefix = f"{part.shard.language}/{part.shard.stem}#"
    n = 0
    while chunk := list(itertools.islice(raw, window)):
        if n:
            yield Progress(k, part.start + n)
        rows = encode_rows(encoder, chunk, part.start + n, id_prefix, max_windows)
        n += len(chunk)
        failed = [r for r in rows if r.error is not None]
        if failed:
            yield ErrorRows(k, failed)
        good = [r for r in rows if r.error is None]
        batches = (
            packed_batches(good, tokens_per_batch)
            if packed
            else budget_batches(good, tokens_per_batch, encoder.max_length)
        )
        for batch in batches:
            yield make_model_batch(k, batch, packed, encoder.pad_id, encoder.max_length)
    yield PartDone(k, n)


class ScoreDataset(IterableDataset):
    """Items for a list of parts, read once: each DataLoader worker takes the next part not yet taken.

    Taken in turn rather than dealt in advance (worker w: parts w, w+W, ...): with a fixed deal, the workers
    given one part more than the others, or longer files, are still tokenizing when the rest have finished,
    and the GPU waits on a few of them at the end of every run.
    """

    def __init__(
        self,
        parts: list[Part],
        encoder: InputEncoder,
        window: int,
        tokens_per_batch: int,
        packed: bool = False,
        max_windows: int = 1,
    ):
        self.parts, self.encoder, self.window, self.tokens_per_batch = (
            parts,
            encoder,
            window,
            tokens_per_batch,
        )
        self.packed = packed
        self.max_windows = max_windows
        # The next part to take, shared by the workers (inherited by them when the DataLoader starts them).
        self._next_part = multiprocessing.Value("q", 0)

    def _take(self) -> int | None:
        with self._next_part.get_lock():
            k = self._next_part.value
            if k >= len(self.parts):
                return None
            self._next_part.value = k + 1
            return k

    def __iter__(self):
        while (k := self._take()) is not None:
            try:
                yield from part_items(
                    k,
                    self.parts[k],
                    self.encoder,
                    self.window,
                    self.tokens_per_batch,
                    self.packed,
                    self.max_windows,
                )
            except Exception as e:
                yield PartFailed(k, f"{type(e).__name__}: {e}")


def keep_as_is(item):
    """collate_fn for the DataLoader: items are whole batches already."""
    return item
