"""LLM labeling end to end: the real `openai` SDK against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fake_openai_server import FakeOpenAI, fake_labels

from curator import labels
from curator.data import shards
from curator.labeling import batch, cost, prompt
from curator.labeling.judge import AllFailed, Callbacks, JudgeConfig
from curator.labeling.llm import label_corpus_llm

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-curator-test-7d1f0c9e4b2a86"
MODEL = "judge-test"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    srv = FakeOpenAI(KEY).start()
    yield srv
    srv.stop()


def config(srv: FakeOpenAI, **kw) -> JudgeConfig:
    base = dict(
        model=MODEL,
        base_url=srv.base_url,
        rps=0,
        concurrency=4,
        backoff_base=0.001,
        backoff_max=0.01,
        poll_interval=0.01,
        max_retries=2,
        batch_max_requests=5,
        timeout=10,
    )
    return JudgeConfig(**{**base, **kw})


def make_corpus(
    root: Path, n: int = 8, faults: dict[int, str] | None = None, languages=("python", "go")
) -> Path:
    faults = faults or {}
    for lang in languages:
        rows = [
            {
                "id": f"{lang}-{i}",
                "content": faults.get(i, "") + f"// {lang} file {i}\n" + f"call_{i}()\n" * (5 + i),
                "max_stars_repo_path": f"src/mod{i}.x",
                "max_stars_repo_name": f"org/repo{i % 5}",
                "max_stars_count": i,
            }
            for i in range(n)
        ]
        (root / lang).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / lang / "part-00000.parquet")
    return root


def corpus_rows(root: Path) -> dict[str, dict]:
    from curator.data.corpus import iter_corpus

    return {str(r["id"]): r for r in iter_corpus(root)}


def read_labeled(out: Path) -> list[dict]:
    rows = []
    for split in shards.SPLITS:
        for f in sorted((out / split).glob("*.parquet")):
            table = pq.read_table(f)
            shards.check_labeled_table(table, str(f))
            rows += table.to_pylist()
    return rows


def result_ids(out: Path) -> list[str]:
    return [
        json.loads(x)["id"]
        for f in (out / "work" / "results").glob("*.jsonl")
        for x in f.read_text().splitlines()
    ]


def failures(out: Path) -> list[dict]:
    return [
        json.loads(x) for f in (out / "work" / "failures").glob("*.jsonl") for x in f.read_text().splitlines()
    ]


def assert_labels_right(out: Path, corpus: Path, max_chars: int = prompt.DEFAULT_MAX_CHARS) -> list[dict]:
    """Every labeled row carries the fake judge's answer for its own content, and follows the contract."""
    rows = read_labeled(out)
    src = corpus_rows(corpus)
    for r in rows:
        want = fake_labels(prompt.user_message(src[r["id"]], max_chars))
        assert {k: r[k] for k in want} == want, r["id"]
        assert r["labeler"] == MODEL and r["content"] == src[r["id"]]["content"]
        assert r["split"] == shards.split_for_repo(r["repo"])
        assert f"{r['split']}/{r['language']}.parquet"
    assert len({r["id"] for r in rows}) == len(rows)
    return rows


# -- prompt, schema, answers ---------------------------------------------------------------------------------
def test_prompt_and_schema_come_from_the_rubric():
    fmt = prompt.response_format()
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"])
    assert schema["properties"]["quality"]["enum"] == labels.QUALITY.level_values
    assert schema["properties"]["structured_data"]["enum"] == labels.STRUCTURED_DATA.level_values
    assert schema["properties"]["content_type"]["enum"] == list(labels.CONTENT_TYPES)
    assert labels.rubric_markdown() in prompt.SYSTEM_PROMPT

    row = {"content": "a" * 50, "language": "go", "max_stars_repo_path": "x.go"}
    assert "cut" not in prompt.user_message(row, 100) and "a" * 50 in prompt.user_message(row, 100)
    cut = prompt.user_message(row, 20)
    assert (
        "a" * 20 in cut and "a" * 21 not in cut and "only the first 20" in cut and "[... cut here ...]" in cut
    )
    body = prompt.build_request_body(row, "m", 20, {"temperature": None, "reasoning_effort": "low"})
    assert body["reasoning_effort"] == "low" and "temperature" not in body


@pytest.mark.parametrize(
    "content, reason",
    [
        ('{"quality": 3, "structured_data": ', "malformed JSON"),
        ("[1, 2, 3]", "not an object"),
        ('{"quality": 3, "content_type": "test"}', "missing fields"),
        ('{"quality": 6, "structured_data": 1, "content_type": "test"}', "quality must be in 1-5"),
        ('{"quality": 3, "structured_data": -1, "content_type": "test"}', "structured_data must be in 0-3"),
        ('{"quality": 3.5, "structured_data": 1, "content_type": "test"}', "must be an integer"),
        ('{"quality": true, "structured_data": 1, "content_type": "test"}', "must be an integer"),
        ('{"quality": 3, "structured_data": 1, "content_type": "poem"}', "content_type must be one of"),
        ("", "empty answer"),
    ],
)
def test_bad_answers_are_rejected(content, reason):
    with pytest.raises(prompt.BadAnswer, match=reason):
        prompt.parse_answer(content)


def test_refusal_and_cut_answers_are_rejected():
    ok = '{"quality": 4, "structured_data": 0, "content_type": "library"}'
    assert prompt.parse_completion({"choices": [{"message": {"content": ok}, "finish_reason": "stop"}]}) == {
        "quality": 4,
        "structured_data": 0,
        "content_type": "library",
    }
    with pytest.raises(prompt.BadAnswer, match="refusal"):
        prompt.parse_completion({"choices": [{"message": {"content": None, "refusal": "no"}}]})
    with pytest.raises(prompt.BadAnswer, match="token limit"):
        prompt.parse_completion({"choices": [{"message": {"content": ok[:10]}, "finish_reason": "length"}]})


def test_estimate_and_confirmation():
    rows = [{"content": "x" * 35_000, "language": "go"}] * 10
    online = cost.estimate(rows, 8_000, cost.Prices(), batch=False)
    batched = cost.estimate(rows, 8_000, cost.Prices(), batch=True)
    assert online.requests == 10 and batched.cost_usd == pytest.approx(online.cost_usd / 2)
    # The cut bounds the input: 8,000 chars of content ~ 2,300 tokens, plus the rubric.
    assert 10 * 2_300 < online.input_tokens < 10 * 4_500
    assert cost.estimate(rows, 16_000, cost.Prices(), batch=False).input_tokens > online.input_tokens

    class Tty(io.StringIO):
        def isatty(self):
            return True

    cost.confirm(online, yes=True, stdin=io.StringIO())
    with pytest.raises(cost.NotConfirmed, match="not a terminal; pass --yes"):
        cost.confirm(online, yes=False, stdin=io.StringIO())
    cost.confirm(online, yes=False, input_fn=lambda _: "y", stdin=Tty())
    with pytest.raises(cost.NotConfirmed, match="nothing was sent"):
        cost.confirm(online, yes=False, input_fn=lambda _: "n", stdin=Tty())


# -- online mode ---------------------------------------------------------------------------------------------
def test_online_with_faults(server, tmp_path):
    faults = {
        1: "FAULT_MALFORMED_ONCE",
        2: "FAULT_429_ONCE",
        3: "FAULT_500_ONCE",
        4: "FAULT_UNKNOWN_ONCE",
        5: "FAULT_REFUSAL_ONCE",
        6: "FAULT_RANGE_ALWAYS",
    }
    corpus = make_corpus(tmp_path / "corpus", n=9, faults=faults)
    out = tmp_path / "out"
    summary = label_corpus_llm(corpus, out, config(server, max_chars=60), mode="online", yes=True)

    rows = assert_labels_right(out, corpus, max_chars=60)
    ids = {r["id"] for r in rows}
    assert ids == {f"{lang}-{i}" for lang in ("python", "go") for i in range(9) if i != 6}
    fails = failures(out)
    kinds = Counter(f["reason"].split(":")[0] for f in fails)
    assert kinds == {"malformed JSON": 2, "http 429": 2, "http 500": 2, "invalid labels": 2 + 6, "refusal": 2}
    # The always-wrong file had max_retries + 1 attempts, numbered, and never became a label.
    attempts = sorted(f["attempt"] for f in fails if f["id"] == "go-6")
    assert attempts == [1, 2, 3]
    assert summary["totals"] == {"files": 18, "labeled": 16, "failed": 2, "unsent": 0}
    assert summary["failed_attempts"] == len(fails)
    assert json.loads((out / "summary.json").read_text())["languages"]["go"]["labeled"] == 8
    assert "| go |" in (out / "summary.md").read_text()

    # A re-run sends nothing new: labeled files are skipped, exhausted ones stay out.
    before = server.chat_requests
    label_corpus_llm(corpus, out, config(server, max_chars=60), mode="online", yes=True)
    assert server.chat_requests == before
    # Raising the retry count gives the exhausted file more attempts, and still no label: a run in which
    # every file sent failed is an error.
    with pytest.raises(AllFailed, match="none of the 2 files sent got a label"):
        label_corpus_llm(corpus, out, config(server, max_chars=60, max_retries=3), mode="online", yes=True)
    assert server.chat_requests == before + 2
    assert sorted(f["attempt"] for f in failures(out) if f["id"] == "go-6") == [1, 2, 3, 4]
    # --retry-failed gives it max_retries + 1 more.
    with pytest.raises(AllFailed):
        label_corpus_llm(
            corpus, out, config(server, max_chars=60, retry_failed=True), mode="online", yes=True
        )
    assert server.chat_requests == before + 2 + 2 * 3
    assert sorted(f["attempt"] for f in failures(out) if f["id"] == "go-6") == [1, 2, 3, 4, 5, 6, 7]


def test_online_crash_and_resume(server, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=10)
    out = tmp_path / "out"
    seen = []

    def crash(rec):
        seen.append(rec["id"])
        if len(seen) == 6:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        label_corpus_llm(
            corpus,
            out,
            config(server, concurrency=2),
            mode="online",
            yes=True,
            callbacks=Callbacks(on_label=crash),
        )
    assert sorted(result_ids(out)) == sorted(seen)  # every label that arrived is on disk
    calls_before = sum(server.calls.values())

    label_corpus_llm(corpus, out, config(server), mode="online", yes=True)
    ids = result_ids(out)
    assert len(ids) == len(set(ids)) == 20  # nothing lost, nothing twice
    assert_labels_right(out, corpus)
    # Files labeled before the crash were not asked again (at most the two in flight were).
    assert sum(server.calls.values()) - calls_before <= 20 - len(seen) + 2
    assert max(server.calls.values()) <= 2


# -- batch mode ----------------------------------------------------------------------------------------------
def test_batch_with_error_file_expiry_and_bad_answers(server, tmp_path):
    faults = {1: "FAULT_500_ONCE", 2: "FAULT_MALFORMED_ONCE", 3: "FAULT_RANGE_ALWAYS", 4: "FAULT_429_ONCE"}
    corpus = make_corpus(tmp_path / "corpus", n=9, faults=faults)
    out = tmp_path / "out"
    server.expire_next = 1  # the first batch expires part-way
    summary = label_corpus_llm(corpus, out, config(server), mode="batch", yes=True)

    rows = assert_labels_right(out, corpus)
    assert {r["id"] for r in rows} == {f"{lang}-{i}" for lang in ("python", "go") for i in range(9) if i != 3}
    manifest = json.loads((out / "work" / "batches.json").read_text())["batches"]
    assert all(e["state"] == "collected" for e in manifest)
    assert manifest[0]["status"] == "expired" and {e["status"] for e in manifest[1:]} == {"completed"}
    assert all(e["requests"] <= 5 for e in manifest)  # the per-file request limit holds
    assert len(manifest) >= math.ceil(18 / 5) + 1  # a first round, then resubmissions
    reasons = Counter(f["reason"].split(":")[0] for f in failures(out))
    assert (
        reasons["batch error"] >= 1 and reasons["batch expired"] >= 1
    )  # expired: in the error file, or absent
    assert reasons["http 500"] == 2 and reasons["http 429"] == 2 and reasons["malformed JSON"] == 2
    # The always-wrong files had max_retries + 1 attempts each, run by the server; a request of theirs that
    # expired unrun (go-3, in the expired part of the first batch) is recorded but is no attempt.
    src = corpus_rows(corpus)
    for id_ in ("go-3", "python-3"):
        assert sorted(f["attempt"] for f in failures(out) if f["id"] == id_ and f["attempt"]) == [1, 2, 3]
        assert server.calls[hashlib.sha256(prompt.user_message(src[id_]).encode()).hexdigest()] == 3
    assert [f["attempt"] for f in failures(out) if f["id"] == "go-3" and "expired" in f["reason"]] == [None]
    assert 4 <= reasons["invalid labels"] <= 6
    assert summary["totals"]["labeled"] == 16 and summary["totals"]["failed"] == 2
    assert not list((out / "work" / "requests").glob("*.jsonl"))  # request files go once collected

    # Idempotent: a re-run creates no batch.
    n_batches = len(server.batches)
    label_corpus_llm(corpus, out, config(server), mode="batch", yes=True)
    assert len(server.batches) == n_batches


def test_batch_crash_after_submit_resumes_without_resubmitting(server, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=10)
    out = tmp_path / "out"

    def crash(entry):
        raise KeyboardInterrupt("simulated crash after the first paid batch")

    with pytest.raises(KeyboardInterrupt):
        label_corpus_llm(
            corpus, out, config(server), mode="batch", yes=True, callbacks=Callbacks(on_batch_submitted=crash)
        )
    assert len(server.batches) == 1
    first = json.loads((out / "work" / "batches.json").read_text())["batches"][0]
    assert first["state"] == "submitted" and first["batch_id"] in server.batches

    label_corpus_llm(corpus, out, config(server), mode="batch", yes=True)
    assert len(server.batches) == 4 and set(server.batched_ids.values()) == {1}  # no file sent twice
    assert sorted(result_ids(out)) == sorted(corpus_rows(corpus))
    assert_labels_right(out, corpus)


def test_batch_crash_between_create_and_manifest_finds_the_batch(server, tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus", n=5, languages=("go",))
    out = tmp_path / "out"
    real = batch.BatchRunner.mark_submitted
    state = {"crashed": False}

    def crash_once(self, entry, b):
        if not state["crashed"]:
            state["crashed"] = True
            raise KeyboardInterrupt("crash right after batches.create")
        real(self, entry, b)

    monkeypatch.setattr(batch.BatchRunner, "mark_submitted", crash_once)
    with pytest.raises(KeyboardInterrupt):
        label_corpus_llm(corpus, out, config(server), mode="batch", yes=True)
    assert json.loads((out / "work" / "batches.json").read_text())["batches"][0]["state"] == "uploaded"

    label_corpus_llm(corpus, out, config(server), mode="batch", yes=True)
    assert len(server.batches) == 1  # found by its input file id, not created again
    assert len(result_ids(out)) == 5


def test_batch_no_wait_then_collect(server, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=4)
    out = tmp_path / "out"
    summary = label_corpus_llm(corpus, out, config(server, wait=False), mode="batch", yes=True)
    assert summary["totals"]["labeled"] == 0
    assert len(server.batches) == 2 and not result_ids(out)
    # The next run estimates nothing to send and collects the running batches.
    summary = label_corpus_llm(
        corpus,
        out,
        config(server),
        mode="batch",
        yes=True,
        confirm_fn=lambda est, yes: pytest.fail("nothing new should need confirming"),
    )
    assert len(server.batches) == 2 and summary["totals"]["labeled"] == 8


# -- the key -------------------------------------------------------------------------------------------------
def test_api_key_never_reaches_disk_or_logs(server, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    corpus = make_corpus(tmp_path / "corpus", n=4, faults={1: "FAULT_ECHO_KEY_ONCE"})
    for mode in ("online", "batch"):
        label_corpus_llm(corpus, tmp_path / mode, config(server), mode=mode, yes=True)
        assert len(result_ids(tmp_path / mode)) == 8
    # The server did echo it, so the scrubbing was put to the test.
    assert any("upstream rejected credentials ***" in f["reason"] for f in failures(tmp_path / "online"))
    captured = capsys.readouterr()
    assert KEY not in caplog.text and KEY not in captured.out and KEY not in captured.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
