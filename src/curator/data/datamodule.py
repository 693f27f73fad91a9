"""Streaming labeled shards into batches for Lightning.

The data is split into units, each read by exactly one (rank, dataloader worker) slot: unit i goes to slot
i % (world_size * num_workers), with slot = rank * num_workers + worker. Local parquet units are (file, row
group, row slice); through `datasets` a unit is one shard of the streaming dataset. Each slot tokenizes its
units, groups files of similar length and pads each batch to its longest file.

Training steps must be equal on every rank (DDP all-reduces every step), so for the train split each worker
slot yields as many batches as the same slot on the busiest rank, going round its own units again to fill up:
no file is lost, a few repeat. Validation and test read every file exactly once.
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

from curator.data.batching import CONTENT_TYPE, encode_rows, length_grouped, make_batch
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
        if train and units is None and batches_per_epoch is None:
            raise ValueError(
                "streaming a train split through `datasets` needs data.train_batches_per_epoch: the length of "
                "a stream is unknown, and every rank must take the same number of steps"
            )

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle each epoch (the module calls this before the workers start)."""
        self.epoch = epoch

    def slot_units(self, rank: int, worker: int) -> list[int]:
        slots = self.world_size * self.num_workers
        return list(range(rank * self.num_workers + worker, self.n_units, slots))

    def _slot_batches(self, rank: int, worker: int) -> int:
        if self.units is None:
            raise TypeError("the number of batches of a `datasets` stream is unknown")
        rows = sum(self.units[i].rows for i in self.slot_units(rank, worker))
        return math.ceil(rows / self.batch_size)

    def _target(self, worker: int) -> int | None:
        """How many batches this worker yields in a train epoch (None: one pass, whatever it holds)."""
        if not self.train:
            return None
        if self.batches_per_epoch is not None:
            share = self.batches_per_epoch // self.num_workers
            return share + (1 if worker < self.batches_per_epoch % self.num_workers else 0)
        return max(self._slot_batches(r, worker) for r in range(self.world_size))

    def __len__(self) -> int:
        if self.train:
            return sum(self._target(w) for w in range(self.num_workers))
        return sum(self._slot_batches(self.rank, w) for w in range(self.num_workers))

    def _row_chunks(self, unit_index: int):
        """A unit's rows, a chunk at a time (a local unit is one chunk; a `datasets` shard can be large)."""
        if self.units is not None:
            yield read_unit(self.units[unit_index], self.split)
            return
        shard = self.hf_dataset.shard(num_shards=self.n_units, index=unit_index)
        # .iter(), not iter(shard): the latter would split the shard again over this DataLoader's workers.
        for columns in shard.iter(batch_size=1024):
            rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
            yield [row for row in rows if row.get("split", self.split) == self.split]

    def _examples(self, indices: list[int], rng: random.Random | None):
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
        indices = self.slot_units(self.rank, worker)
        target = self._target(worker)
        slot = self.rank * self.num_workers + worker
        rng = random.Random(f"{self.seed}-{self.epoch}-{slot}") if self.train else None
        if target is not None and not indices:
            # Fewer units than slots: borrow one so that this rank still takes its steps.
            indices = [slot % self.n_units]
        pad_id = self.tokenizer.pad_token_id
        produced = 0
        while True:
            if rng is not None:
                rng.shuffle(indices)
            examples = self._examples(indices, rng)
            for batch in length_grouped(examples, self.batch_size, self.buffer_batches, rng):
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
            slots = world_size * max(1, hp.num_workers)
            if len(units) < slots:
                # A small split (the gold set is one file of 216 rows) in smaller units, so that every rank and
                # worker gets some: Lightning refuses a rank whose loader has no batch.
                rows = sum(u.rows for u in units)
                units = local_units(files, split, max(1, min(hp.unit_rows, rows // slots)))
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
        # batch_size=None: the stream yields whole batches (it groups by length itself).
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.stream("train", train=True))

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.stream("val"))

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.stream("test"))
