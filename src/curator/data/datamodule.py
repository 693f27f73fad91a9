"""Streaming labeled shards into batches for Lightning.

The data is split into units: local parquet units are (file, row group, row slice); through `datasets` a unit
is one shard of the streaming dataset. Each (rank, dataloader worker) slot tokenizes its rows, groups files of
similar length and pads each batch to its longest file; slot = rank * num_workers + worker.

Local parquet: every row of the split is read exactly once per epoch, across ranks and workers, the train
split included (`deal`). Unit i goes to slot i % (world_size * num_workers), so that each slot mixes files from
across the shards, and the units are laid end to end in slot order; then the row boundaries between ranks, and
between the workers of a rank, are moved so that every rank holds the same number of rows (to one) and each
worker as many rows as its share of the rank's batches. A slot thus reads its own units, less or plus a piece of
a neighbour's at its two ends (a `Piece`); a unit can be cut among several slots when a split has fewer units
than slots (the gold set, one unit of 216 rows).

DDP all-reduces every training step, so every rank must take the same number of steps or the busiest one hangs.
For the train split every rank takes steps = ceil(rows of the largest rank / batch_size) batches, and a slot
cuts its rows into its batches with sizes as even as they come (`batch_sizes`): every batch holds between 1 and
batch_size files, some a few fewer than batch_size, none empty, and no row is read twice. Validation and test
take ceil(rows of the rank / batch_size) batches on each rank (Lightning needs no equal count there).

Through `datasets` the row counts are unknown: a train stream takes data.train_batches_per_epoch batches per
rank, each worker going round its shards again when they run out (rows may repeat there).
"""

from __future__ import annotations

import math
import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from curator.data.batching import CONTENT_TYPE, encode_rows, length_grouped, make_batch, sized_groups
from curator.data.inputs import InputEncoder, build_tokenizer
from curator.data.shards import labeled_files
from curator.labels import QUALITY, STRUCTURED_DATA, get_label_set

# The tokenizer runs inside dataloader workers; its own thread pool would fight them for cores (and warn
# after a fork).
os.environ["TOKENIZERS_PARALLELISM"] = "false"  # overrides a "true": see curator.scoring.runner
# Lightning warns that an IterableDataset's length may be off with several workers; this one counts each
# worker's share exactly.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")

# The "split" that reads every row of the files, whatever their split column says: a held-out evaluation set
# such as the gold set, which is all for testing.
ALL_ROWS = "all"
READ_COLUMNS = [
    "id",
    "language",
    "path",
    "content",
    QUALITY.name,
    STRUCTURED_DATA.name,
    CONTENT_TYPE,
    "split",
]


@dataclass(frozen=True)
class Unit:
    """Rows [start, stop) of one parquet row group; `rows` of them belong to the wanted split."""

    path: str
    row_group: int
    start: int
    stop: int
    rows: int


def local_units(files: list[Path], split: str, unit_rows: int) -> list[Unit]:
    """Units of at most `unit_rows` rows, so that even a few big row groups spread over many workers.

    Rows whose `split` column names another split are not counted (the folder may hold every split).
    """
    units = []
    for path in files:
        pf = pq.ParquetFile(path)
        # The labeled-shard contract, checked once per file before any worker reads it; the split may also
        # come from the folder.
        missing = [c for c in READ_COLUMNS if c != "split" and c not in pf.schema_arrow.names]
        if missing:
            raise ValueError(f"{path} is not a labeled shard: missing columns {missing}")
        has_split = "split" in pf.schema_arrow.names and split != ALL_ROWS
        if not has_split and split != ALL_ROWS and path.parent.name != split:
            raise ValueError(
                f"{path}: no `split` column and not in a `{split}/` folder: cannot tell its split"
            )
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            if has_split:
                in_split = (
                    pf.read_row_group(rg, columns=["split"]).column("split").to_numpy(zero_copy_only=False)
                )
                in_split = in_split == split
            else:
                in_split = np.ones(n, dtype=bool)
            for start in range(0, n, unit_rows):
                stop = min(n, start + unit_rows)
                rows = int(in_split[start:stop].sum())
                if rows:
                    units.append(Unit(str(path), rg, start, stop, rows))
    return units


@dataclass(frozen=True)
class Piece:
    """Rows [lo, hi) of unit `unit`, counted among the unit's rows of the split: what one slot reads of it."""

    unit: int
    lo: int
    hi: int


@dataclass(frozen=True)
class Share:
    """What one (rank, worker) slot reads in an epoch: its pieces, cut into `batches` batches."""

    pieces: tuple[Piece, ...]
    batches: int

    @property
    def rows(self) -> int:
        return sum(p.hi - p.lo for p in self.pieces)


def deal(
    unit_rows: list[int], world_size: int, num_workers: int, batch_size: int, equal_steps: bool
) -> list[list[Share]]:
    """Every row of the units to exactly one slot: shares[rank][worker].

    Units are laid end to end in the order of the slots they go to (unit i to slot i % slots), and that row
    range is cut: first into `world_size` ranges of equal size (to one row), then each rank's range among its
    workers in proportion to their batches, so that each worker can fill its batches (at least one row each, at
    most batch_size). With `equal_steps` (training) every rank takes as many batches as the largest one needs;
    that takes at least as many rows as batches on every rank, which holds whenever batch_size >= 2 and every
    rank has a row. Otherwise a rank takes ceil(its rows / batch_size) batches.
    """
    slots = world_size * num_workers
    order = [i for slot in range(slots) for i in range(slot, len(unit_rows), slots)]
    starts = [0]
    for i in order:
        starts.append(starts[-1] + unit_rows[i])
    total = starts[-1]

    def pieces(lo: int, hi: int) -> tuple[Piece, ...]:
        # The units of `order` that overlap rows [lo, hi) of the laid-out range, each cut to the overlap.
        out = []
        for k, i in enumerate(order):
            a, b = max(lo, starts[k]), min(hi, starts[k + 1])
            if a < b:
                out.append(Piece(i, a - starts[k], b - starts[k]))
        return tuple(out)

    bounds = [total * r // world_size for r in range(world_size + 1)]
    rank_rows = [bounds[r + 1] - bounds[r] for r in range(world_size)]
    steps = [math.ceil(n / batch_size) for n in rank_rows]
    if equal_steps:
        steps = [max(steps)] * world_size
        if min(rank_rows) < steps[0]:
            raise ValueError(
                f"{total} training rows cannot give {world_size} ranks {steps[0]} non-empty batches each with "
                f"every row read once (batch_size {batch_size}): use more rows, fewer ranks or batch_size >= 2"
            )
    shares = []
    for r in range(world_size):
        # The rank's batches among its workers as evenly as they go; each worker's rows in proportion.
        batches = [steps[r] // num_workers + (w < steps[r] % num_workers) for w in range(num_workers)]
        done = [sum(batches[:w]) for w in range(num_workers + 1)]
        cuts = [bounds[r] + (rank_rows[r] * d // steps[r] if steps[r] else 0) for d in done]
        shares.append([Share(pieces(cuts[w], cuts[w + 1]), batches[w]) for w in range(num_workers)])
    return shares


def batch_sizes(rows: int, batches: int) -> list[int]:
    """`rows` cut into `batches` sizes that differ by at most one (the larger first)."""
    return [rows // batches + (b < rows % batches) for b in range(batches)] if batches else []


def read_unit(unit: Unit, split: str) -> list[dict]:
    pf = pq.ParquetFile(unit.path)
    columns = [c for c in READ_COLUMNS if c in pf.schema_arrow.names]
    table = pf.read_row_group(unit.row_group, columns=columns).slice(unit.start, unit.stop - unit.start)
    return [row for row in table.to_pylist() if split == ALL_ROWS or row.get("split", split) == split]


class LabeledStream(IterableDataset):
    """Padded batches of one split for one rank; the DataLoader's workers share the rank's units.

    Pass either `units` (local parquet) or `hf_dataset` (a `datasets` IterableDataset of the split). rank and
    world_size are explicit, so a test can build every rank's stream in one process; `batches(worker,
    num_workers)` is what a worker yields.
    """

    def __init__(
        self,
        split: str,
        tokenizer,
        label_set: str,
        max_length: int,
        batch_size: int,
        units: list[Unit] | None = None,
        hf_dataset=None,
        train: bool = False,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        buffer_batches: int = 64,
        seed: int = 0,
        batches_per_epoch: int | None = None,
        pad_to_multiple_of: int = 1,
        packed: bool = False,
        code_markers: bool = False,
        with_path: bool = False,
    ):
        if pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be 1 or more, got {pad_to_multiple_of}")
        if (units is None) == (hf_dataset is None):
            raise ValueError("give either local units or a datasets IterableDataset")
        self.split = split
        self.tokenizer = tokenizer
        self.encoder = InputEncoder(tokenizer, max_length, code_markers=code_markers, with_path=with_path)
        self.label_set = get_label_set(label_set)
        self.max_length = max_length
        self.batch_size = batch_size
        self.units = units
        self.hf_dataset = hf_dataset
        self.train = train
        self.rank = rank
        self.world_size = world_size
        # Worker 0 of 1 when the DataLoader reads in the main process.
        self.num_workers = max(1, num_workers)
        self.buffer_batches = buffer_batches if train else 8
        self.seed = seed
        self.epoch = 0
        self.batches_per_epoch = batches_per_epoch
        self.pad_to_multiple_of = pad_to_multiple_of
        self.packed = packed
        self.n_units = len(units) if units is not None else hf_dataset.num_shards
        # Local units: every slot's rows and batches, fixed for the run (each epoch shuffles within them).
        self.shares = (
            deal([u.rows for u in units], world_size, self.num_workers, batch_size, equal_steps=train)
            if units is not None
            else None
        )
        if train and units is None and batches_per_epoch is None:
            raise ValueError(
                "streaming a train split through `datasets` needs data.train_batches_per_epoch: the length of "
                "a stream is unknown, and every rank must take the same number of steps"
            )

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle each epoch (the module calls this before the workers start)."""
        self.epoch = epoch

    def slot_units(self, rank: int, worker: int) -> list[int]:
        """The `datasets` shards a slot reads (local units go through `deal`)."""
        slots = self.world_size * self.num_workers
        return list(range(rank * self.num_workers + worker, self.n_units, slots))

    def _target(self, worker: int) -> int | None:
        """How many batches a worker of a `datasets` stream yields in a train epoch (None: one pass)."""
        if not self.train or self.batches_per_epoch is None:
            return None
        share = self.batches_per_epoch // self.num_workers
        return share + (1 if worker < self.batches_per_epoch % self.num_workers else 0)

    def __len__(self) -> int:
        if self.shares is not None:
            return sum(share.batches for share in self.shares[self.rank])
        if self.train:
            return sum(self._target(w) for w in range(self.num_workers))
        raise TypeError("the number of batches of a `datasets` stream is unknown")

    def _row_chunks(self, unit_index: int | Piece):
        """A unit's rows, a chunk at a time (a local piece is one chunk; a `datasets` shard can be large)."""
        if isinstance(unit_index, Piece):
            yield read_unit(self.units[unit_index.unit], self.split)[unit_index.lo : unit_index.hi]
            return
        shard = self.hf_dataset.shard(num_shards=self.n_units, index=unit_index)
        # .iter(), not iter(shard): the latter would split the shard again over this DataLoader's workers.
        for columns in shard.iter(batch_size=1024):
            rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
            yield [row for row in rows if row.get("split", self.split) == self.split]

    def _examples(self, indices: list, rng: random.Random | None):
        for i in indices:
            for rows in self._row_chunks(i):
                if rng is not None:
                    rng.shuffle(rows)
                examples, errors = encode_rows(rows, self.encoder, self.label_set)
                if errors:
                    warnings.warn(
                        f"{len(errors)} labeled rows have no model input and are left out: "
                        f"{sorted(set(errors.values()))[:3]}",
                        stacklevel=2,
                    )
                yield from examples

    def batches(self, worker: int, num_workers: int):
        if num_workers != self.num_workers:
            raise ValueError(f"stream built for {self.num_workers} workers, read by {num_workers}")
        slot = self.rank * self.num_workers + worker
        rng = random.Random(f"{self.seed}-{self.epoch}-{slot}") if self.train else None
        # The order of a buffer's length-sorted batches: the same on every rank (seeded by the worker, not the
        # slot), so that at each step all ranks run batches of about the same length. DDP waits for the slowest
        # rank at every step; with orders drawn per rank, one rank's short batch would wait for another's long
        # one (steps of 64 files of 500 tokens and of 60 tokens take very different times).
        order = random.Random(f"{self.seed}-{self.epoch}-order-{worker}") if self.train else None
        pad_id = self.tokenizer.pad_token_id
        if self.shares is not None:
            # Exactly the batches `deal` planned for this slot, each row once: the pieces in a new order each
            # epoch, then cut into batches of the planned sizes (even, at most batch_size), similar lengths
            # together.
            share = self.shares[self.rank][worker]
            pieces = list(share.pieces)
            if rng is not None:
                rng.shuffle(pieces)
            sizes = batch_sizes(share.rows, share.batches)
            for batch in sized_groups(self._examples(pieces, rng), sizes, self.buffer_batches, order):
                yield make_batch(batch, pad_id, self.packed, self.pad_to_multiple_of, self.max_length)
            return
        yield from self._stream_batches(worker, slot, rng, order, pad_id)

    def _stream_batches(
        self, worker: int, slot: int, rng: random.Random | None, order: random.Random | None, pad_id: int
    ):
        """A `datasets` stream's batches: one pass, or (train) data.train_batches_per_epoch of them."""
        indices = self.slot_units(self.rank, worker)
        target = self._target(worker)
        if target is not None and not indices:
            # Fewer units than slots: borrow one so that this rank still takes its steps.
            indices = [slot % self.n_units]
        produced = 0
        while True:
            if rng is not None:
                rng.shuffle(indices)
            examples = self._examples(indices, rng)
            for batch in length_grouped(examples, self.batch_size, self.buffer_batches, order):
                if target is not None and produced == target:
                    return
                yield make_batch(batch, pad_id, self.packed, self.pad_to_multiple_of, self.max_length)
                produced += 1
            if target is None or produced >= target or produced == 0:
                return

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is None and self.num_workers != 1:
            # Iterated in the main process (a notebook): read every worker's share in turn.
            for w in range(self.num_workers):
                yield from self.batches(w, self.num_workers)
            return
        yield from self.batches(worker, num_workers)


def _is_local(source: str) -> bool:
    return Path(source).exists()


class CuratorDataModule(L.LightningDataModule):
    """Train/val/test streams of labeled shards.

    `root` is a local folder (`<root>/<split>/*.parquet`, or any parquet with a `split` column), a glob of
    parquet files for `datasets` (local or `hf://...`), or a Hub dataset id, both read with
    `datasets.load_dataset(..., streaming=True)`.
    """

    def __init__(
        self,
        root: str,
        tokenizer: str,
        label_set: str = "full",
        max_length: int = 512,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        buffer_batches: int = 64,
        unit_rows: int = 1024,
        train_batches_per_epoch: int | None = None,
        pin_memory: bool = True,
        pad_to_multiple_of: int = 1,
        packed: bool = False,
        code_markers: bool = False,
        with_path: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = None

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def stream(self, split: str, train: bool = False) -> LabeledStream:
        hp = self.hparams
        if self.tokenizer is None:
            self.tokenizer = build_tokenizer(hp.tokenizer, hp.code_markers)
        rank, world_size = self._rank()
        common = dict(
            split=split,
            tokenizer=self.tokenizer,
            label_set=hp.label_set,
            max_length=hp.max_length,
            batch_size=hp.batch_size if train else hp.eval_batch_size or 2 * hp.batch_size,
            train=train,
            rank=rank,
            world_size=world_size,
            num_workers=hp.num_workers,
            buffer_batches=hp.buffer_batches,
            pad_to_multiple_of=hp.pad_to_multiple_of,
            packed=hp.packed,
            code_markers=hp.code_markers,
            with_path=hp.with_path,
            seed=hp.seed,
        )
        if _is_local(hp.root):
            files = labeled_files(hp.root, split)
            units = local_units(files, split, hp.unit_rows)
            if not units:
                raise FileNotFoundError(f"no rows of split {split!r} under {hp.root}")
            # `deal` shares the rows, not the units, among ranks: a small split (the gold set is one unit of 216
            # rows) still gives every rank rows, which Lightning needs (it refuses a rank with no batch).
            return LabeledStream(units=units, **common)
        return LabeledStream(
            hf_dataset=self._hf_split(split),
            batches_per_epoch=hp.train_batches_per_epoch if train else None,
            **common,
        )

    def _hf_split(self, split: str):
        import datasets

        root = self.hparams.root
        if "*" in root or root.endswith(".parquet"):
            # A glob with `{split}` in it picks the split's files; otherwise the `split` column does.
            data_files = root.format(split=split)
            return datasets.load_dataset("parquet", data_files=data_files, split="train", streaming=True)
        return datasets.load_dataset(root, split=split, streaming=True)

    def loader(self, dataset: LabeledStream) -> DataLoader:
        workers = self.hparams.num_workers
        # batch_size=None: the stream yields whole batches (it groups by length itself).
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            # A worker tokenizes a whole buffer of batches before it yields the first. Room for a buffer's
            # batches lets it tokenize the next buffer while the last is trained on; with DataLoader's default
            # of 2, every worker stops at each buffer's end, all at about the same time (they are read in turn),
            # and the GPU waits for a buffer's tokenizing: 20% of a long epoch on one H200
            # (experiments/multi_gpu/loader_stalls.py shows it on a CPU).
            prefetch_factor=dataset.buffer_batches + 2 if workers > 0 else None,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.stream("train", train=True))

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.stream("val"))

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.stream("test"))
