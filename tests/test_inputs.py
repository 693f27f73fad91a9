"""One input path: training batches, error analysis and scoring give the model the same tokens for a file, and
`num_tokens` / `truncated` mean the same everywhere (curator.data.inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.data.batching import encode_rows
from curator.data.datamodule import LabeledStream, local_units
from curator.data.inputs import (
    INDENT_MARKER,
    NEWLINE_MARKER,
    InputEncoder,
    build_tokenizer,
    load_tokenizer,
    mark_code,
)
from curator.data.shards import labeled_files
from curator.hub import resolve_model_path
from curator.labels import get_label_set
from curator.scoring.batching import Part, part_items
from curator.scoring.sources import Shard

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("minilm")


@pytest.fixture(scope="module")
def sample_rows():
    rows = []
    for f in sorted(SAMPLE.glob("*/*.parquet")):
        t = pq.read_table(f, columns=["id", "content"]).to_pylist()[::5]
        rows += [{**r, "language": f.parent.name} for r in t]
    # Long files: far past the head that is tokenized, a head of blanks, a file of one repeated character.
    big = "\n".join(r["content"] for r in rows[:40])
    rows += [
        {"id": "long", "content": big, "language": "python"},
        {"id": "blank-head", "content": " " * 5000 + "def f(x):\n    return x\n", "language": "python"},
        {"id": "equals", "content": "=" * 9000, "language": "python"},
    ]
    for r in rows:
        r.update(quality=3, structured_data=1, content_type="library", repo="r", path=f"{r['id']}.py")
        r["labeler"] = "test"
    return rows


def _by_scoring(rows, encoder, tmp_path, packed):
    tmp_path.mkdir(parents=True)
    shard_file = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "content": [r["content"] for r in rows],
                             "max_stars_repo_path": [r["path"] for r in rows]}), shard_file)  # fmt: skip
    part = Part(Shard("python", "corpus", str(shard_file)), 0, len(rows), "unused")
    got = {}
    for item in part_items(0, part, encoder, window=64, tokens_per_batch=4096, packed=packed):
        if hasattr(item, "input_ids"):
            for j, row in enumerate(item.rows):
                if packed:
                    ids = item.input_ids[item.cu_seqlens[j] : item.cu_seqlens[j + 1]].tolist()
                else:
                    ids = item.input_ids[j][item.attention_mask[j].bool()].tolist()
                got[row.id] = (ids, row.num_tokens, row.truncated)
    return got


def _by_training(rows, tokenizer, max_length, tmp_path, code_markers, with_path):
    folder = tmp_path / "labeled" / "train"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{**r, "split": "train"} for r in rows]), folder / "python.parquet")
    units = local_units(labeled_files(tmp_path / "labeled", "train"), "train", unit_rows=50)
    stream = LabeledStream(
        "val", tokenizer, "full", max_length, 8, units=units, code_markers=code_markers, with_path=with_path
    )
    stream.split = "train"  # one pass over the rows, as for evaluation
    got = {}
    for batch in stream:
        for j, file_id in enumerate(batch["id"]):
            got[file_id] = batch["input_ids"][j][batch["attention_mask"][j].bool()].tolist()
    return got


@pytest.mark.parametrize(
    "max_length,code_markers,with_path", [(64, False, False), (512, False, False), (128, True, True)]
)
def test_every_stage_gives_a_file_the_same_model_input(
    tmp_path, tokenizer, sample_rows, max_length, code_markers, with_path
):
    encoder = InputEncoder(tokenizer, max_length, code_markers=code_markers, with_path=with_path)
    analysis, errors = encode_rows(sample_rows, encoder, get_label_set("full"))
    assert not errors and len(analysis) == len(sample_rows)
    want = {e.id: (e.input_ids, e.num_tokens, e.truncated) for e in analysis}
    assert _by_scoring(sample_rows, encoder, tmp_path / "padded", packed=False) == want
    assert _by_scoring(sample_rows, encoder, tmp_path / "packed", packed=True) == want
    training = _by_training(sample_rows, tokenizer, max_length, tmp_path, code_markers, with_path)
    assert training == {k: v[0] for k, v in want.items()}
    assert want["long"][2] and want["equals"][2] and len(want["blank-head"][0]) > 2


def test_num_tokens_counts_the_whole_files_content_tokens(tokenizer, sample_rows):
    encoder = InputEncoder(tokenizer, 64)
    short = [r for r in sample_rows if len(r["content"]) < encoder.max_chars][:50]
    for r, x in zip(short, encoder.encode([r["content"] for r in short]), strict=True):
        whole = tokenizer(r["content"], add_special_tokens=False)["input_ids"]
        assert x.num_tokens == len(whole) and not x.estimated
        assert x.truncated == (len(whole) > 62)
        assert x.ids == tokenizer(r["content"], truncation=True, max_length=64)["input_ids"]
    (long,) = [r for r in sample_rows if r["id"] == "long"]
    (x,) = encoder.encode([long["content"]])
    assert x.estimated and x.truncated and x.num_tokens > 10 * 64


def test_the_path_goes_first_when_asked(tokenizer):
    encoder = InputEncoder(tokenizer, 64, with_path=True)
    (x,) = encoder.encode(["x = 1"], ["tests/test_a.py"])
    assert tokenizer.decode(x.ids[1:-1]) == "tests / test _ a. py x = 1"
    with pytest.raises(ValueError, match="pass the paths"):
        encoder.encode(["x = 1"])


def test_bad_content_is_an_error_not_an_exception(tokenizer):
    got = InputEncoder(tokenizer, 64).encode([None, b"\x00\x01", b"\xff\xfe", 12, "ok"])
    assert [x.error is not None for x in got] == [True, True, True, True, False]
    assert got[0].ids is None and "NUL" in got[1].error and got[4].ids[0] == tokenizer.cls_token_id


def test_code_markers_keep_newlines_and_indentation_as_tokens_of_the_vocabulary(tokenizer):
    code = "def f(x):\n    if x:\n\n\n\n        return 1\n\treturn 2\n"
    marked = mark_code(code)
    assert marked.count(NEWLINE_MARKER) == 5  # four line ends, and one for the run of blank lines
    assert marked.count(INDENT_MARKER) == 4  # 4 spaces: 1, 8 spaces: 2, a tab: 1
    size = len(tokenizer)
    plain = InputEncoder(tokenizer, 64).encode([code])[0].ids
    with_markers = InputEncoder(build_tokenizer("minilm", code_markers=True), 64, code_markers=True)
    ids = with_markers.encode([code])[0].ids
    newline, indent = (tokenizer.convert_tokens_to_ids(m) for m in (NEWLINE_MARKER, INDENT_MARKER))
    # The markers reuse the vocabulary's unused slots: no new embeddings, and the uncased text is unchanged.
    assert len(with_markers.tokenizer) == size and max(ids) < size
    assert ids.count(newline) == 5 and ids.count(indent) == 4
    assert [i for i in ids if i not in (newline, indent)] == plain


def test_code_markers_need_a_vocabulary_with_unused_slots():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]")
    with pytest.raises(ValueError, match="code_markers needs a vocabulary"):
        InputEncoder(tok, 16, code_markers=True)


def _roberta_tokenizer_folder(texts: list[str], folder: Path) -> Path:
    """A byte-level BPE saved as RoBERTa's tokenizer is (UniXcoder's kind), trained on the sample."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=2000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    (folder / "bpe").mkdir(parents=True)
    bpe.save_model(str(folder / "bpe"))
    RobertaTokenizerFast.from_pretrained(str(folder / "bpe")).save_pretrained(str(folder / "roberta"))
    return folder / "roberta"


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_load_tokenizer_gives_what_autotokenizer_gives(kind, sample_rows, tmp_path):
    # score.py loads the tokenizer without transformers' auto classes (seconds of start-up): same class, same ids.
    from transformers import AutoTokenizer

    texts = [r["content"][:3000] for r in sample_rows]
    folder = resolve_model_path("minilm") if kind == "bert" else _roberta_tokenizer_folder(texts, tmp_path)
    auto, ours = AutoTokenizer.from_pretrained(str(folder)), load_tokenizer(folder)
    assert type(ours) is type(auto)
    assert ours(texts)["input_ids"] == auto(texts)["input_ids"]
    assert ours.cls_token_id == auto.cls_token_id and ours.pad_token_id == auto.pad_token_id


def _tokenizer_saved_after_truncating(folder: Path) -> Path:
    """MiniLM's tokenizer saved after a use with truncation and padding at 128 tokens, as a trained model's
    tokenizer.json can be: both are in the file."""
    tokenizer = load_tokenizer(resolve_model_path("minilm"))
    tokenizer.backend_tokenizer.enable_truncation(128)
    tokenizer.backend_tokenizer.enable_padding(length=128)
    tokenizer.save_pretrained(str(folder / "truncating"))
    saved = json.loads((folder / "truncating" / "tokenizer.json").read_text())
    assert saved["truncation"]["max_length"] == 128 and saved["padding"]
    return folder / "truncating"


@pytest.mark.parametrize("kind", ["bert", "roberta", "saved_truncating"])
def test_the_tokenizer_file_gives_the_ids_transformers_gives(kind, sample_rows, tmp_path):
    # Scoring reads the tokenizer from its tokenizer.json without transformers (TokenizerFile): every input
    # must be what transformers' class gives, with and without special tokens and code markers, also where the
    # file carries a truncation and padding of its last use, which must not apply.
    from curator.data.inputs import TokenizerFile

    texts = [r["content"][:3000] for r in sample_rows]
    folder = {
        "bert": lambda: resolve_model_path("minilm"),
        "roberta": lambda: _roberta_tokenizer_folder(texts, tmp_path),
        "saved_truncating": lambda: _tokenizer_saved_after_truncating(tmp_path),
    }[kind]()
    hf, ours = load_tokenizer(folder), load_tokenizer(folder, light=True)
    assert isinstance(ours, TokenizerFile) and not isinstance(hf, TokenizerFile)
    for special in (True, False):
        assert (
            ours(texts, add_special_tokens=special)["input_ids"]
            == hf(texts, add_special_tokens=special)["input_ids"]
        )
    assert ours("a b")["input_ids"] == hf("a b")["input_ids"]
    assert max(len(ids) for ids in ours(texts)["input_ids"]) > 512  # nothing truncated
    assert (ours.pad_token_id, ours.unk_token_id, len(ours)) == (hf.pad_token_id, hf.unk_token_id, len(hf))
    assert ours.convert_tokens_to_ids("no-such-token-anywhere") == hf.convert_tokens_to_ids(
        "no-such-token-anywhere"
    )

    paths = [r["path"] for r in sample_rows]
    markers = [False, True] if kind != "roberta" else [False]  # markers need a WordPiece vocabulary
    for code_markers in markers:
        for max_length in (64, 512):
            a = InputEncoder(load_tokenizer(folder), max_length, code_markers=code_markers, with_path=True)
            b = InputEncoder(
                load_tokenizer(folder, light=True), max_length, code_markers=code_markers, with_path=True
            )
            wa = a.windows([r["content"] for r in sample_rows], paths, 3)
            wb = b.windows([r["content"] for r in sample_rows], paths, 3)
            assert [[(w.ids, w.num_tokens, w.truncated, w.weight) for w in f] for f in wa] == [
                [(w.ids, w.num_tokens, w.truncated, w.weight) for w in f] for f in wb
            ]
