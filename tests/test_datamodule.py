"""The streaming DataModule: every file read once per split across ranks and workers, equal train steps per
rank, batches padded to their longest file, labels indexed through the label set."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from curator.data.datamodule import CuratorDataModule, LabeledStream, local_units
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


def test_train_steps_are_equal_across_ranks_and_no_file_is_lost(labeled_root, tokenizer):
    seen, steps = set(), []
    for rank in range(2):
        stream = _stream(labeled_root, tokenizer, "train", rank, world_size=2, num_workers=2, train=True)
        batches = [b for worker in range(2) for b in stream.batches(worker, num_workers=2)]
        assert len(batches) == len(stream)
        steps.append(len(batches))
        seen |= {i for b in batches for i in b["id"]}
    assert steps[0] == steps[1]
    assert sorted(seen) == _ids(labeled_root, "train")


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
