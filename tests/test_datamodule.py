"""The streaming DataModule: every file read once per split across ranks and workers, equal train steps per
rank, batches padded to their longest file, labels indexed through the label set."""

from __future__ import annotations

import random
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from curator.data.batching import LabeledExample, sized_groups
from curator.data.datamodule import CuratorDataModule, LabeledStream, batch_sizes, deal, local_units
from curator.data.inputs import build_tokenizer
from curator.data.shards import labeled_files
from curator.labels import get_label_set


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("minilm")


def _ids(root, split):
    return sorted(pq.read_table(labeled_files(root, split), columns=["id"]).column("id").to_pylist())


def _stream(
    root, tokenizer, split, rank, world_size, num_workers, train=False, batch_size=4, max_length=32, **kwargs
):
    # Small units (a few rows) so that four slots all get several.
    units = local_units(labeled_files(root, split), split, unit_rows=7)
    return LabeledStream(
        split=split,
        tokenizer=tokenizer,
        label_set="full",
        max_length=max_length,
        batch_size=batch_size,
        units=units,
        train=train,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        **kwargs,
    )


def test_two_ranks_two_workers_read_every_file_exactly_once(labeled_root, tokenizer):
    seen = []
    for rank in range(2):
        stream = _stream(labeled_root, tokenizer, "test", rank, world_size=2, num_workers=2)
        n_batches = 0
        for worker in range(2):
            for batch in stream.batches(worker, num_workers=2):
                seen += batch["id"]
                n_batches += 1
        assert n_batches == len(stream)
    assert sorted(seen) == _ids(labeled_root, "test")


@pytest.mark.parametrize("world_size,num_workers", [(1, 1), (1, 3), (2, 1), (2, 2), (3, 2)])
def test_train_reads_every_file_exactly_once_in_equal_steps_per_rank(
    labeled_root, tokenizer, world_size, num_workers
):
    # 144 train rows in units of at most 7, batches of at most 5: no rank's rows fill whole batches.
    seen, steps = [], []
    for rank in range(world_size):
        stream = _stream(
            labeled_root, tokenizer, "train", rank, world_size, num_workers, train=True, batch_size=5
        )
        batches = [b for worker in range(num_workers) for b in stream.batches(worker, num_workers)]
        assert len(batches) == len(stream)
        assert all(1 <= len(b["id"]) <= 5 for b in batches)
        steps.append(len(batches))
        seen += [i for b in batches for i in b["id"]]
    assert len(set(steps)) == 1
    assert sorted(seen) == _ids(labeled_root, "train")


def _covered(shares):
    """Every (unit, row) the shares read, with repeats."""
    return sorted(
        (p.unit, row) for rank in shares for s in rank for p in s.pieces for row in range(p.lo, p.hi)
    )


@pytest.mark.parametrize("unit_rows", [[7, 7, 7, 4], [1024] * 5 + [17], [3], [1, 1], [5, 0, 2], [200] * 40])
@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_workers", [1, 2, 4])
@pytest.mark.parametrize("batch_size", [2, 3, 64])
def test_deal_gives_every_row_once_and_every_rank_the_same_steps(
    unit_rows, world_size, num_workers, batch_size
):
    everything = sorted((u, row) for u, n in enumerate(unit_rows) for row in range(n))
    for train in (True, False):
        if train and sum(unit_rows) < world_size:
            with pytest.raises(ValueError, match="cannot give"):
                deal(unit_rows, world_size, num_workers, batch_size, equal_steps=True)
            continue
        shares = deal(unit_rows, world_size, num_workers, batch_size, equal_steps=train)
        assert len(shares) == world_size and all(len(rank) == num_workers for rank in shares)
        assert _covered(shares) == everything
        steps = [sum(s.batches for s in rank) for rank in shares]
        rows = [sum(s.rows for s in rank) for rank in shares]
        assert max(rows) - min(rows) <= 1
        if train:
            assert len(set(steps)) == 1 and steps[0] == -(-max(rows) // batch_size)
        else:
            assert steps == [-(-n // batch_size) for n in rows]
        for s in (s for rank in shares for s in rank):
            sizes = batch_sizes(s.rows, s.batches)
            assert sum(sizes) == s.rows and len(sizes) == s.batches
            assert (
                all(1 <= n <= batch_size for n in sizes)
                and max(sizes, default=0) - min(sizes, default=0) <= 1
            )


def test_deal_fewer_rows_than_slots_and_batch_size_one():
    # 3 rows, 2 ranks of 4 workers: rank 0 one row, rank 1 two, one step each; idle workers read nothing.
    shares = deal([3], 2, 4, 64, equal_steps=True)
    assert [[s.batches for s in rank] for rank in shares] == [[1, 0, 0, 0], [1, 0, 0, 0]]
    assert [[s.rows for s in rank] for rank in shares] == [[1, 0, 0, 0], [2, 0, 0, 0]]
    # A batch of one file each cannot give 2 ranks equal steps from 3 rows without a repeat: refused.
    with pytest.raises(ValueError, match="batch_size >= 2"):
        deal([3], 2, 1, 1, equal_steps=True)
    assert [rank[0].batches for rank in deal([4], 2, 1, 1, equal_steps=True)] == [2, 2]


def test_a_slot_reads_its_own_units_but_for_a_piece_at_either_end():
    # Units dealt round robin (unit i to slot i % 4) stay with their slot; only the rows that even out the
    # ranks and the workers' batches move, at the ends of each slot's run of units.
    shares = deal([96] * 8, 2, 2, 16, equal_steps=True)
    assert [[p.unit for p in s.pieces] for rank in shares for s in rank] == [[0, 4], [1, 5], [2, 6], [3, 7]]
    shares = deal([100] * 7 + [30], 2, 2, 16, equal_steps=True)
    for slot, s in enumerate(s for rank in shares for s in rank):
        whole = [p.unit for p in s.pieces if p.hi - p.lo == 100]
        assert all(u % 4 == slot for u in whole) and len(s.pieces) - len(whole) <= 2


def _examples(n):
    return [LabeledExample(i, str(i), None, [1] * (1 + i % 9), 1, False, 1, 0, 0) for i in range(n)]


def test_sized_groups_cuts_exactly_the_planned_batches_by_length():
    sizes = batch_sizes(50, 7)
    batches = list(sized_groups(_examples(50), sizes, 3, random.Random(0)))
    assert sorted(len(b) for b in batches) == sorted(sizes) and len(batches) == 7
    assert sorted(e.id for b in batches for e in b) == sorted(str(i) for i in range(50))
    # Within a buffer (of 3 batches: 22 files of 1-9 tokens), files of similar length share a batch; the last
    # buffer holds the one batch left.
    spread = [max(len(e.input_ids) for e in b) - min(len(e.input_ids) for e in b) for b in batches]
    assert max(spread[:6]) <= 4 and spread[6] == 8


def test_sized_groups_keeps_the_batch_count_when_rows_are_left_out():
    # Rows without model input make the stream shorter than planned: the last buffer's batches get smaller.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = list(sized_groups(_examples(40), batch_sizes(43, 9), 3, None))
    assert len(batches) == 9 and sum(map(len, batches)) == 40 and min(map(len, batches)) >= 1
    # Fewer files than batches: files repeat, with a warning, rather than a rank taking fewer steps.
    with pytest.warns(UserWarning, match="repeat"):
        batches = list(sized_groups(_examples(3), batch_sizes(12, 6), 2, None))
    assert len(batches) == 6 and all(batches)


def test_train_order_changes_with_the_epoch(labeled_root, tokenizer):
    stream = _stream(labeled_root, tokenizer, "train", 0, world_size=1, num_workers=1, train=True)
    first = [i for b in stream for i in b["id"]]
    stream.set_epoch(1)
    second = [i for b in stream for i in b["id"]]
    assert sorted(first) == sorted(second) and first != second


def test_batches_pad_to_their_longest_file_and_group_lengths(labeled_root, tokenizer):
    stream = _stream(
        labeled_root, tokenizer, "train", 0, world_size=1, num_workers=1, train=True, batch_size=8
    )
    for batch in stream:
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == lengths.max() <= 32
        assert batch["input_ids"].shape[0] == len(batch["id"]) == batch["quality"].shape[0]


def test_widths_round_up_to_a_multiple_but_not_past_max_length(labeled_root, tokenizer):
    stream = _stream(
        labeled_root, tokenizer, "train", 0, 1, 1, True, 8, max_length=200, pad_to_multiple_of=64
    )
    widths = set()
    for batch in stream:
        longest = int(batch["attention_mask"].sum(1).max())
        width = batch["input_ids"].shape[1]
        # 200 tokens at most: a longest file of 193-200 tokens pads to 200, not to 256.
        assert width == min(-(-longest // 64) * 64, 200)
        assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()
        widths.add(width)
    assert widths <= {64, 128, 192, 200} and len(widths) > 1


def test_packed_batches_carry_the_files_unpadded(labeled_root, tokenizer):
    stream = _stream(labeled_root, tokenizer, "train", 0, 1, 1, True, 8, max_length=64, packed=True)
    for batch in stream:
        mask = batch["attention_mask"].bool()
        assert torch.equal(batch["packed_input_ids"].long(), batch["input_ids"][mask])
        lengths = batch["cu_seqlens"][1:] - batch["cu_seqlens"][:-1]
        assert torch.equal(lengths, mask.sum(1).int()) and batch["cu_seqlens"][0] == 0


def test_split_column_without_split_folders_and_coarse_label_indices(tmp_path, labeled_root):
    # All splits in one file: the `split` column decides.
    table = pa.concat_tables(pq.read_table(p) for p in sorted(labeled_root.rglob("*.parquet")))
    pq.write_table(table, tmp_path / "all.parquet", row_group_size=25)
    dm = CuratorDataModule(
        str(tmp_path), "minilm", label_set="coarse", max_length=32, batch_size=8, num_workers=0
    )
    batches = list(dm.val_dataloader())
    assert sorted(i for b in batches for i in b["id"]) == _ids(labeled_root, "val")

    coarse = get_label_set("coarse")
    truth = dict(zip(table.column("id").to_pylist(), table.column("content_type").to_pylist(), strict=True))
    for b in batches:
        for i, index in zip(b["id"], b["content_type"].tolist(), strict=True):
            assert index == coarse.index(truth[i])


def test_streaming_through_datasets_reads_the_same_files(labeled_root):
    pytest.importorskip("datasets")
    dm = CuratorDataModule(f"{labeled_root}/{{split}}/*.parquet", "minilm", max_length=32, num_workers=0)
    ids = sorted(i for b in dm.test_dataloader() for i in b["id"])
    assert ids == _ids(labeled_root, "test")


def test_tokenizing_heads_gives_the_model_input_of_whole_files(tokenizer):
    from pathlib import Path

    from curator.data.batching import encode_rows
    from curator.data.inputs import InputEncoder

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    texts = []
    for f in sorted(sample.glob("*/*.parquet")):
        texts += pq.read_table(f, columns=["content"]).column("content").to_pylist()[::4]
    # Heads that hold too few tokens are tokenized again whole: blanks, and a file of one repeated character.
    texts += [" " * 5000 + "def f(x):\n    return x\n", "=" * 9000]
    rows = [
        {"id": str(i), "content": t, "quality": 3, "structured_data": 0, "content_type": "library"}
        for i, t in enumerate(texts)
    ]
    for max_length in (64, 512):
        whole = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        examples, errors = encode_rows(rows, InputEncoder(tokenizer, max_length), get_label_set("full"))
        assert not errors and [e.input_ids for e in examples] == whole


def test_ranks_step_through_batches_of_about_the_same_length(labeled_root, tokenizer):
    # DDP waits for the slowest rank at every step: step i of every rank should hold files of about the same
    # length. Each rank reads other files, so lengths are not equal, but the order of the length-sorted batches
    # is shared by the ranks, so their per-step lengths rise and fall together.
    lengths = []
    for rank in range(2):
        stream = _stream(
            labeled_root, tokenizer, "train", rank, 2, 1, train=True, batch_size=4, max_length=256
        )
        lengths.append([float(b["attention_mask"].sum(1).float().mean()) for b in stream.batches(0, 1)])
    assert len(lengths[0]) == len(lengths[1]) >= 10
    assert torch.corrcoef(torch.tensor(lengths))[0, 1] > 0.9
