import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers_model import (
    corpus_rows,
    load_script,
    make_checkpoint,
    make_corpus,
    score_cmd,
    script_env,
    write_shard,
)

from curator.data.inputs import padded_width
from curator.scoring.batching import PAD_MULTIPLE, RowInfo, budget_batches, make_model_batch, packed_batches
from curator.scoring.outputs import SCORE_COLUMNS, content_types_of
from curator.scoring.runner import score_corpus
from curator.tasks.trained import load_trained


def Row(index, id, path, ids):
    return RowInfo(index, id, path, ids=ids)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def trained(ckpt):
    return load_trained(ckpt)


def score(trained, corpus, out, **kw):
    kw = {"num_workers": 0, "device": "cpu", "progress": False, **kw}
    return score_corpus(trained, corpus, out, **kw)


def input_ids(corpus):
    ids = {}
    for f in sorted(corpus.rglob("*.parquet")):
        ids[f.relative_to(corpus).as_posix()] = pq.read_table(f, columns=["id"])["id"].to_pylist()
    return ids


def output_ids(out):
    return {
        f.relative_to(out).as_posix(): pq.read_table(f, columns=["id"])["id"].to_pylist()
        for f in sorted(out.glob("*/*.parquet"))
    }


def test_a_row_for_every_input_row_in_input_order(trained, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", shards=2, rows=50)
    write_shard(corpus, "sql", "extra", corpus_rows("sql", 9, 23), fmt="jsonl")
    # Small windows, budgets and parts: rows are reordered by length across many batches and parts.
    summary = score(trained, corpus, tmp_path / "out", window=16, tokens_per_batch=512, rows_per_part=20)
    assert summary.rows_scored == 2 * 2 * 50 + 23 and not summary.failed
    got = output_ids(tmp_path / "out")
    assert got.pop("sql/extra.parquet") == [f"sql-9-{i}" for i in range(23)]
    assert got == input_ids(corpus)
    assert not list((tmp_path / "out").rglob("*.parts"))  # parts were merged and removed

    table = pq.read_table(tmp_path / "out" / "python" / "train-00001.parquet")
    assert (
        table.column_names[: len(SCORE_COLUMNS)] == SCORE_COLUMNS and "max_line_length" in table.column_names
    )
    assert content_types_of(table.schema) == list(trained.label_set.classes)
    meta = json.loads((tmp_path / "out" / "scores_meta.json").read_text())
    assert meta["content_types"] == list(trained.label_set.classes) and meta["max_length"] == 64
    df = table.to_pandas()
    probs = np.stack(df["content_type_probs"].to_numpy())
    assert probs.shape == (50, 9)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert list(df["content_type"]) == [trained.label_set.classes[k] for k in probs.argmax(1)]
    assert df["error"].isna().all() and (df["language"] == "python").all()
    assert df["path"].tolist() == [f"src/file_{i}.txt" for i in range(50)]
    assert (df["truncated"] == (df["num_tokens"] > 62)).all()  # 64 minus [CLS] and [SEP]


def test_batched_scores_equal_one_file_at_a_time(trained, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=1, rows=24)
    score(trained, corpus, tmp_path / "out", window=24, tokens_per_batch=256)
    df = pq.read_table(tmp_path / "out" / "python" / "train-00000.parquet").to_pandas()
    rows = corpus_rows("python", 0, 24)
    for i in (0, 5, 11, 23):
        enc = trained.tokenizer([rows[i]["content"]], truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            out = trained.model(enc["input_ids"], enc["attention_mask"])
        assert df["quality"][i] == pytest.approx(out["quality"].item(), abs=1e-4)
        assert df["structured_data"][i] == pytest.approx(out["structured_data"].item(), abs=1e-4)
        np.testing.assert_allclose(df["content_type_probs"][i], out["content_type"].softmax(-1)[0], atol=1e-4)
        assert df["num_tokens"][i] == len(
            trained.tokenizer(rows[i]["content"], add_special_tokens=False)["input_ids"]
        )


def test_packed_forward_gives_the_padded_scores(ckpt, tmp_path):
    # The GPU's default path (unpadded, Flash Attention's variable-length kernel there) through its CPU
    # fallback: the same rows, the same scores as the padded forward.
    corpus = make_corpus(tmp_path / "corpus", languages=("go", "sql"), shards=1, rows=30)
    score(load_trained(ckpt), corpus, tmp_path / "padded", window=30, tokens_per_batch=512, packed=False)
    score(load_trained(ckpt), corpus, tmp_path / "packed", window=30, tokens_per_batch=512, packed=True)
    for lang in ("go", "sql"):
        a = pq.read_table(tmp_path / "padded" / lang / "train-00000.parquet").to_pandas()
        b = pq.read_table(tmp_path / "packed" / lang / "train-00000.parquet").to_pandas()
        assert a["id"].tolist() == b["id"].tolist()
        np.testing.assert_allclose(a["quality"], b["quality"], atol=1e-4)
        np.testing.assert_allclose(a["structured_data"], b["structured_data"], atol=1e-4)
        np.testing.assert_allclose(
            np.stack(a["content_type_probs"]), np.stack(b["content_type_probs"]), atol=1e-4
        )


def test_a_compiler_that_fails_costs_speed_not_the_run(ckpt, tmp_path, monkeypatch, caplog):
    corpus = make_corpus(tmp_path / "corpus", languages=("go",), shards=1, rows=20)
    score(load_trained(ckpt), corpus, tmp_path / "eager", window=20, tokens_per_batch=512, packed=True)
    calls = []

    def broken_compile(function, **kw):
        assert kw == {"dynamic": True}

        def broken(*args, **kwargs):
            calls.append("compiled")
            raise RuntimeError("no compiler for this build")

        return broken

    monkeypatch.setattr(torch, "compile", broken_compile)
    caplog.set_level("WARNING")
    out = tmp_path / "compiled"
    score(load_trained(ckpt), corpus, out, window=20, tokens_per_batch=512, packed=True, compile=True)
    assert calls == ["compiled"]  # tried once, then the eager encoder for every batch
    assert "torch.compile failed" in caplog.text
    a = pq.read_table(tmp_path / "eager" / "go" / "train-00000.parquet")
    assert a.equals(pq.read_table(out / "go" / "train-00000.parquet"))


def test_a_fused_kernel_that_fails_costs_speed_not_the_run(ckpt, tmp_path, monkeypatch, caplog):
    # On a GPU machine where Triton cannot build its kernel (no C compiler for its launcher, say), the first
    # call fails in the warm-up: the run goes on with PyTorch's add and LayerNorm, and says so.
    from curator.models import add_norm

    corpus = make_corpus(tmp_path / "corpus", languages=("go",), shards=1, rows=20)
    score(load_trained(ckpt), corpus, tmp_path / "unfused", window=20, tokens_per_batch=512, packed=True)
    calls = []

    def broken(*args):
        calls.append("fused")
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(add_norm, "available", lambda device: True)
    monkeypatch.setattr(add_norm, "add_layer_norm", broken)
    caplog.set_level("WARNING")
    out = tmp_path / "fused"
    summary = score(load_trained(ckpt), corpus, out, window=20, tokens_per_batch=512, packed=True)
    assert calls == ["fused"]  # tried once, in the warm-up, then never again
    assert "the fused add-and-LayerNorm kernel failed" in caplog.text
    assert "fused" not in summary.forward
    a = pq.read_table(tmp_path / "unfused" / "go" / "train-00000.parquet")
    assert a.equals(pq.read_table(out / "go" / "train-00000.parquet"))


def eager_then_compiled(ckpt, corpus, tmp_path, **kw):
    """Scores the corpus's go shard eager, then with a fresh compiler: both score tables (same ids, same
    order), the compiled run's summary, and how many graphs it compiled."""
    from torch._dynamo.utils import counters

    kw = {"window": 20, "tokens_per_batch": 512, **kw}
    score(load_trained(ckpt), corpus, tmp_path / "eager", **kw)
    torch._dynamo.reset()
    counters.clear()
    summary = score(load_trained(ckpt), corpus, tmp_path / "compiled", compile=True, **kw)
    eager, compiled = (
        pq.read_table(tmp_path / run / "go" / "train-00000.parquet").to_pandas()
        for run in ("eager", "compiled")
    )
    assert eager["id"].tolist() == compiled["id"].tolist()
    return eager, compiled, summary, counters["stats"]["unique_graphs"]


@pytest.mark.slow
def test_compiled_scoring_matches_eager_and_compiles_one_layer_for_all(tmp_path):
    """The real compiler (Inductor's CPU backend here): the same scores as eager, and the layers share one
    compiled graph, so a deeper encoder does not compile longer."""
    deep = make_checkpoint(tmp_path / "deep.ckpt", layers=6)
    corpus = make_corpus(tmp_path / "corpus", languages=("go",), shards=1, rows=40)
    a, b, _, graphs = eager_then_compiled(deep, corpus, tmp_path, packed=True)
    # Embeddings, a layer, the last (first-token) layer, each in a variant for batches of one file, and on a
    # CPU attention outside the compiler: 8 graphs for 6 layers, where compiling the whole stack makes 2 a layer.
    assert graphs <= 8, graphs
    np.testing.assert_allclose(a["quality"], b["quality"], atol=1e-4)
    np.testing.assert_allclose(
        np.stack(a["content_type_probs"]), np.stack(b["content_type_probs"]), atol=1e-4
    )


def test_long_files_are_cut_by_characters_but_the_model_sees_what_training_does(trained, tmp_path):
    lines = "value = compute(alpha, beta)\n" * 100
    padded = " " * 2000 + lines  # a head of 6 x 64 characters holds no token at all
    write_shard(
        tmp_path / "corpus",
        "python",
        "long",
        [{"id": "lines", "content": lines}, {"id": "padded", "content": padded}],
    )
    score(trained, tmp_path / "corpus", tmp_path / "out")
    got = pq.read_table(tmp_path / "out" / "python" / "long.parquet").to_pylist()
    for row, text in zip(got, (lines, padded), strict=True):
        exact = len(trained.tokenizer(text, add_special_tokens=False)["input_ids"])
        assert row["truncated"] and row["num_tokens_estimated"]
        # Extrapolated from the head's density: close for uniform text, rough where the head is mostly blank.
        if text is lines:
            assert abs(row["num_tokens"] - exact) <= 0.05 * exact
        assert row["num_tokens"] > 62
        enc = trained.tokenizer([text], truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            out = trained.model(enc["input_ids"], enc["attention_mask"])
        assert row["quality"] == pytest.approx(out["quality"].item(), abs=1e-4)


def test_worker_processes_give_the_same_scores(trained, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", shards=2, rows=30)
    score(trained, corpus, tmp_path / "a", window=8, tokens_per_batch=512, rows_per_part=10)
    score(trained, corpus, tmp_path / "b", window=8, tokens_per_batch=512, rows_per_part=10, num_workers=2)
    for name in output_ids(tmp_path / "a"):
        a, b = (pq.read_table(tmp_path / d / name) for d in ("a", "b"))
        assert a.equals(b), name


def test_token_budget_batches():
    rnd = random.Random(0)
    rows = [Row(i, str(i), None, ids=[1] * rnd.randint(2, 512)) for i in range(500)]
    budget = 4096
    batches = list(budget_batches(rows, budget, max_length=512))
    assert sorted(r.index for b in batches for r in b) == list(range(500))
    for b in batches:
        lengths = [len(r.ids) for r in b]
        assert lengths == sorted(lengths, reverse=True)
        assert len(b) * padded_width(lengths[0], PAD_MULTIPLE, 512) <= budget
        batch = make_model_batch(0, b, packed=False, pad_id=0, max_length=512)
        assert batch.input_ids.shape[1] % 8 == 0 and batch.attention_mask.sum().item() == sum(lengths)
    # A file longer than the whole budget still goes through, alone.
    assert [len(b) for b in budget_batches([Row(0, "0", None, ids=[1] * 500)], 100, 512)] == [1]


def test_packed_batches_hold_every_row_within_the_budget():
    rnd = random.Random(1)
    rows = [
        Row(i, str(i), None, ids=[rnd.randrange(5, 999) for _ in range(rnd.randint(2, 512))])
        for i in range(300)
    ]
    rows.append(Row(300, "300", None, ids=[7] * 600))  # longer than the budget: alone in its batch
    batches = list(packed_batches(rows, 500))
    assert sorted(r.index for b in batches for r in b) == list(range(301))
    for b in batches:
        assert len(b) == 1 or sum(len(r.ids) for r in b) <= 500
        want = [r.ids for r in b]
        batch = make_model_batch(0, b, packed=True, pad_id=0, max_length=512)
        ids, cu = batch.input_ids, batch.cu_seqlens
        assert cu.dtype == ids.dtype == torch.int32 and cu[0] == 0 and cu[-1] == len(ids)
        for j, w in enumerate(want):
            assert ids[cu[j] : cu[j + 1]].tolist() == w


def test_a_batch_that_does_not_fit_is_halved_by_files():
    def rows():
        return [Row(i, str(i), None, ids=list(range(1, 2 + i))) for i in range(5)]

    packed = make_model_batch(0, rows(), packed=True, pad_id=0, max_length=64)
    a, b = packed.halves()
    assert [r.index for r in a.rows] == [0, 1] and [r.index for r in b.rows] == [2, 3, 4]
    for half, part in ((a, rows()[:2]), (b, rows()[2:])):
        want = make_model_batch(0, part, packed=True, pad_id=0, max_length=64)
        assert torch.equal(half.input_ids, want.input_ids) and torch.equal(half.cu_seqlens, want.cu_seqlens)
    padded = make_model_batch(0, rows(), packed=False, pad_id=0, max_length=64)
    a, b = padded.halves()
    assert [r.index for r in a.rows] == [0, 1]
    assert torch.equal(b.input_ids, padded.input_ids[2:]) and torch.equal(
        a.attention_mask, padded.attention_mask[:2]
    )


def test_bad_inputs_are_scored_or_carry_an_error(trained, tmp_path):
    corpus = tmp_path / "corpus"
    huge = "x = 1\n" * (100 * 2**20 // 6)  # 100 MB
    text_rows = [("ok", "print(1)\n"), ("empty", ""), ("null", None), ("nul", "abc\x00def"), ("huge", huge)]
    write_shard(corpus, "python", "text", [{"id": i, "content": c} for i, c in text_rows])
    del huge
    binary_rows = [
        ("utf8", "é = 1\n".encode()),
        ("latin1", b"caf\xe9 = 1\n"),
        ("nulbytes", b"\x7fELF\x00\x01"),
        ("none", None),
    ]
    schema = pa.schema([("id", pa.string()), ("content", pa.binary())])
    write_shard(corpus, "python", "binary", [{"id": i, "content": c} for i, c in binary_rows], schema=schema)
    (corpus / "go").mkdir()
    (corpus / "go" / "lines.jsonl").write_bytes(
        b'{"id": "a", "content": "package main\\n"}\n'
        b"{not json\n"
        b"\n"  # blank lines are not rows
        b'{"id": "c", "content": "caf\xe9"}\n'
        b"[1, 2]\n"
        b'{"content": 5}\n'
    )
    summary = score(trained, corpus, tmp_path / "out")
    assert not summary.failed

    def by_id(name):
        rows = pq.read_table(tmp_path / "out" / name).to_pylist()
        return {r["id"]: r for r in rows}, rows

    text, rows = by_id("python/text.parquet")
    assert [r["id"] for r in rows] == [i for i, _ in text_rows]
    assert text["ok"]["error"] is None and text["empty"]["error"] is None and text["empty"]["num_tokens"] == 0
    assert text["null"]["error"] == "null content" and text["null"]["quality"] is None
    assert text["null"]["content_type"] is None and text["null"]["content_type_probs"] is None
    assert "NUL" in text["nul"]["error"]
    big = text["huge"]
    assert big["error"] is None and big["truncated"] and big["num_tokens_estimated"]
    assert big["num_tokens"] > 10_000_000  # extrapolated from the head: about 5 tokens a line

    binary, _ = by_id("python/binary.parquet")
    assert binary["utf8"]["error"] is None and binary["utf8"]["quality"] is not None
    assert "UTF-8" in binary["latin1"]["error"]
    assert "NUL" in binary["nulbytes"]["error"]
    assert binary["none"]["error"] == "null content"

    _, go = by_id("go/lines.parquet")
    ids, errors = [r["id"] for r in go], [r["error"] for r in go]
    assert len(go) == 5 and ids[0] == "a" and errors[0] is None
    assert "line 2" in errors[1] and ids[1] == "go/lines#1"  # a stable id from the row's position
    assert "line 4" in errors[2]  # invalid UTF-8 inside a JSONL file
    assert "line 5" in errors[3] and "not text" in errors[4]


def test_unreadable_shard_is_reported_and_the_rest_is_scored(trained, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=1, rows=10)
    (corpus / "python" / "broken.parquet").write_bytes(b"this is not parquet")
    summary = score(trained, corpus, tmp_path / "out")
    assert len(summary.failed) == 1 and "broken.parquet" in summary.failed[0]
    assert (tmp_path / "out" / "python" / "train-00000.parquet").exists()


def test_rerun_skips_done_shards_and_refuses_another_model(trained, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", shards=2, rows=10)
    score(trained, corpus, tmp_path / "out")
    again = score(trained, corpus, tmp_path / "out")
    assert again.shards_done_before == 4 and again.rows_scored == 0
    other = make_checkpoint(tmp_path / "other.ckpt", seed=1)
    with pytest.raises(ValueError, match="another model"):
        score(load_trained(other), corpus, tmp_path / "out")


def test_score_help():
    with pytest.raises(SystemExit) as e:
        load_script("score").parse_args(["--help"])
    assert e.value.code == 0


@pytest.mark.slow
def test_resume_after_sigkill(ckpt, tmp_path):
    # Long enough files that the run takes seconds, so that it can be killed in the middle.
    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=6, rows=800, repeat=8)
    out = tmp_path / "out"
    cmd = score_cmd(ckpt, corpus, out, "--rows-per-part", "400", "--window", "256")
    proc = subprocess.Popen(cmd, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list(out.glob("python/*.parquet")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stderr = proc.stderr.read().decode()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{stderr}"
    done = {p: p.stat().st_mtime_ns for p in out.glob("python/*.parquet")}
    done_parts = {p: p.stat().st_mtime_ns for p in out.glob("python/*.parts/*.parquet")}
    assert 1 <= len(done) < 6

    rerun = subprocess.run(cmd, env=script_env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} done before" in rerun.stderr
    assert output_ids(out) == input_ids(corpus)  # every id exactly once, in input order
    for p, mtime in done.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was rewritten"
    # Parts finished before the kill were kept (their shard's file was merged from them, not recomputed).
    assert not [p for p in done_parts if p.exists() and p.stat().st_mtime_ns != done_parts[p]]
    assert not list(out.rglob("*.parts")) and not list(out.rglob(".*tmp-*"))


@pytest.mark.slow
def test_a_kill_inside_a_part_keeps_what_was_written(ckpt, tmp_path):
    # One shard, one part (the default 50,000 rows): only the time bound can save work before the part ends.
    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=1, rows=1200, repeat=8)
    out = tmp_path / "out"
    cmd = score_cmd(ckpt, corpus, out, "--window", "64", "--write-every", "0")
    proc = subprocess.Popen(cmd, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(list(out.glob("python/*.parts/rows-*.parquet"))) < 2 and proc.poll() is None:
        assert time.time() < deadline, "no part file was written"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    written = {p: p.stat().st_mtime_ns for p in out.glob("python/*.parts/rows-*.parquet")}
    rows_written = sum(pq.ParquetFile(p).metadata.num_rows for p in written)
    assert 64 <= rows_written < 1200
    rerun = subprocess.run(cmd, env=script_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    # The re-run scored only the rows no part file held, and the shard's file holds every row once, in order.
    assert f"({1200 - rows_written} rows) to score" in rerun.stderr
    assert output_ids(out) == input_ids(corpus)
    assert not list(out.rglob("*.parts")) and not list(out.rglob(".*tmp-*"))
    # The same scores as a run that was never killed.
    again = tmp_path / "again"
    subprocess.run(
        score_cmd(ckpt, corpus, again), env=script_env(), check=True, capture_output=True, timeout=300
    )
    a, b = (pq.read_table(d / "python" / "train-00000.parquet") for d in (out, again))
    assert a.column("id").equals(b.column("id"))
    assert np.allclose(a.column("quality").to_numpy(), b.column("quality").to_numpy(), atol=1e-5)


@pytest.mark.slow
def test_two_ranks_split_the_shards(ckpt, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", shards=3, rows=40)
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            score_cmd(ckpt, corpus, out),
            env={**script_env(), "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    logs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "rank 0/2: 3 shards" in logs[0] and "rank 1/2: 3 shards" in logs[1]
    got = output_ids(out)
    assert got == input_ids(corpus)
    every_id = [i for ids in got.values() for i in ids]
    assert len(every_id) == len(set(every_id)) == 2 * 3 * 40


def test_workers_do_not_deadlock_when_tokenizer_parallelism_is_on(ckpt, tmp_path):
    # A fast tokenizer's thread pool, used before the DataLoader forks its workers, deadlocks them when
    # TOKENIZERS_PARALLELISM=true is set; scoring must finish anyway.
    corpus = make_corpus(tmp_path / "corpus", shards=2, rows=40)
    script = (
        "import sys; from curator.tasks.trained import load_trained; from curator.scoring.runner import score_corpus\n"
        "t = load_trained(sys.argv[1])\n"
        "t.tokenizer(['def f(x):\\n    return x * 2\\n' * 200] * 256)\n"
        "s = score_corpus(t, sys.argv[2], sys.argv[3], num_workers=2, device='cpu', progress=False)\n"
        "print(s.rows_scored)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(ckpt), str(corpus), str(tmp_path / "out")],
        env={**script_env(), "TOKENIZERS_PARALLELISM": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == str(2 * 2 * 40)


def test_a_bare_cuda_device_names_the_ranks_gpu(monkeypatch):
    """`--device cuda` (no index) must become this rank's GPU: making the device current needs an index, and a
    bare "cuda" once stopped score_corpus before it scored anything. A GPU the machine does not have is a clear
    error, not CUDA's "invalid device ordinal" later."""
    from curator.scoring.runner import pick_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # what a machine with 2 GPUs answers
    assert pick_device("cuda", 0) == torch.device("cuda", 0)
    assert pick_device("cuda", 3) == torch.device("cuda", 1)
    assert pick_device("cuda:1", 0) == torch.device("cuda", 1)
    assert pick_device("cpu", 3) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"cuda:2 asked for, but this machine shows 2 GPU\(s\)"):
        pick_device("cuda:2", 0)
    monkeypatch.undo()
    if not torch.cuda.is_available():
        assert pick_device("auto", 0) == torch.device("cpu")
        with pytest.raises(ValueError, match=r"shows 0 GPU"):
            pick_device("cuda", 0)


def test_exact_gelu_flag_is_accepted_and_changes_nothing_on_a_cpu(ckpt, tmp_path):
    # --exact-gelu as typed. On a CPU the forward is the padded one, whose GELU is the exact one anyway, so the
    # scores equal the default run's (test_packed checks the GELU-in-the-matmul forward against the padded one).
    corpus = make_corpus(tmp_path / "corpus", shards=1, rows=12)
    tables = {}
    for name, extra in (("default", []), ("exact", ["--exact-gelu"])):
        r = subprocess.run(
            score_cmd(ckpt, corpus, tmp_path / name, *extra),
            env=script_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert "forward: padded" in r.stderr
        tables[name] = pq.read_table(sorted((tmp_path / name).rglob("*.parquet"))).to_pandas()
    assert tables["default"]["id"].tolist() == tables["exact"]["id"].tolist()
    np.testing.assert_array_equal(tables["default"]["quality"], tables["exact"]["quality"])


def test_a_write_that_fails_stops_the_run_and_keeps_the_parts_before_it(trained, tmp_path, monkeypatch):
    # Part files are written on a thread of their own; a failure there (a full disk) must still end the run
    # with its error, and what was written before stays for the next run to resume from.
    import curator.scoring.runner as runner

    corpus = make_corpus(tmp_path / "corpus", shards=1, rows=60)
    real, calls = runner.write_parquet_atomic, []

    def write_then_fail(table, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(table, path)

    monkeypatch.setattr(runner, "write_parquet_atomic", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        score(trained, corpus, tmp_path / "out", window=16, tokens_per_batch=512, rows_per_part=20)
    assert [p.name for p in (tmp_path / "out").rglob("rows-*.parquet")] == [calls[0].name]
    monkeypatch.setattr(runner, "write_parquet_atomic", real)
    summary = score(trained, corpus, tmp_path / "out", window=16, tokens_per_batch=512, rows_per_part=20)
    total = sum(len(ids) for ids in input_ids(corpus).values())
    assert summary.rows_scored == total - 20  # the first part's 20 rows were kept
    assert output_ids(tmp_path / "out") == input_ids(corpus)


def test_the_writer_keeps_order_and_at_most_max_queued_parts_waiting():
    from curator.scoring.runner import _Writer

    writer, done = _Writer(max_queued=2), []

    def slow_write(i):
        time.sleep(0.05)
        done.append(i)

    for i in range(6):
        writer.submit(slow_write, i)
        assert len(writer._futures) <= 2
    writer.close()
    writer.shutdown()
    assert done == list(range(6))


def test_workers_take_the_next_part_so_that_a_long_part_does_not_hold_up_the_rest(tmp_path):
    # With parts dealt in advance (worker w: parts w, w+2, ...), the worker holding the long first part would
    # also hold parts 2 and 4, which would come after it; taken in turn, the other worker scores all of them.
    from torch.utils.data import DataLoader

    from curator.data.inputs import InputEncoder, build_tokenizer
    from curator.scoring.batching import Part, PartDone, ScoreDataset, keep_as_is
    from curator.scoring.sources import Shard

    parts = []
    for k, rows in enumerate([3000, 5, 5, 5, 5, 5]):
        shard_file = write_shard(
            tmp_path / "corpus", "python", f"train-{k:05d}", corpus_rows("python", k, rows)
        )
        parts.append(Part(Shard("python", f"train-{k:05d}", str(shard_file)), 0, rows, "unused"))
    encoder = InputEncoder(build_tokenizer("minilm"), 128)
    dataset = ScoreDataset(parts, encoder, window=64, tokens_per_batch=4096, packed=True)
    loader = DataLoader(dataset, batch_size=None, collate_fn=keep_as_is, num_workers=2, in_order=False)
    done = [item.part for item in loader if isinstance(item, PartDone)]
    assert sorted(done) == list(range(len(parts)))  # every part once
    assert done[-1] == 0, done
