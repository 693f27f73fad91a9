"""label.py as a user runs it: a subprocess with real arguments, on real files of the shipped sample, against
the fake OpenAI-compatible server on 127.0.0.1 (tests/fake_openai_server.py) for the LLM modes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_openai_server import FakeOpenAI, fake_labels

from curator.data import shards
from curator.labeling import prompt

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-curator-cli-3b9e51c07a44d2"
WRONG_KEY = "sk-wrong-key-9f2c6d1e8a7b30"


@pytest.fixture
def server():
    srv = FakeOpenAI(KEY).start()
    yield srv
    srv.stop()


@pytest.fixture
def corpus(tmp_path) -> Path:
    """The first 4 files of three languages of data/sample, in the corpus layout."""
    root = tmp_path / "corpus"
    for lang in ("go", "python", "sql"):
        (root / lang).mkdir(parents=True)
        table = pq.read_table(ROOT / "data" / "sample" / lang / "part-00000.parquet").slice(0, 4)
        pq.write_table(table, root / lang / "part-00000.parquet")
    return root


def corpus_rows(root: Path) -> dict[str, dict]:
    return {
        str(r["id"]): {**r, "language": f.parent.name}
        for f in sorted(root.glob("*/*.parquet"))
        for r in pq.read_table(f).to_pylist()
    }


def label(*args, key: str | None = KEY, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    if key:
        env["OPENAI_API_KEY"] = key
    return subprocess.run(
        [sys.executable, str(ROOT / "label.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def one_line_error(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], proc.stderr


def read_labeled(out: Path) -> list[dict]:
    rows = []
    for f in sorted(out.glob("*/*.parquet")):
        table = pq.read_table(f)
        shards.check_labeled_table(table, str(f))
        assert f.parent.name in shards.SPLITS
        rows += table.to_pylist()
    return rows


def assert_judged(out: Path, corpus: Path, model: str, max_chars: int = prompt.DEFAULT_MAX_CHARS) -> None:
    """Every file has exactly one row, holding the fake judge's answer for its own content."""
    rows = read_labeled(out)
    src = corpus_rows(corpus)
    assert sorted(r["id"] for r in rows) == sorted(src)
    for r in rows:
        assert {k: r[k] for k in prompt.LABEL_FIELDS} == fake_labels(
            prompt.user_message(src[r["id"]], max_chars)
        )
        assert r["labeler"] == model and r["split"] == shards.split_for_repo(r["repo"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the documented commands -----------------------------------------------------------------------------------
def test_help_shows_each_default_once_and_the_new_flags():
    proc = label("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "default: None" not in text
    assert text.count("(default: $OPENAI_BASE_URL, else api.openai.com)") == 1
    assert "--retry-failed" in text and "--no-wait" in text


def test_dry_run_says_how_it_prices_and_counts(server, corpus, tmp_path):
    proc = label(corpus, "--out", tmp_path / "out", "--dry-run")  # the default model, gpt-5-nano
    assert proc.returncode == 0, proc.stderr
    assert "To send: 12 requests" in proc.stdout and "list price of gpt-5-nano" in proc.stdout
    try:
        import tiktoken  # noqa: F401

        assert "tokens counted with tiktoken" in proc.stdout or "tiktoken could not load" in proc.stdout
    except ImportError:
        assert "tokens estimated at 3.5 characters each: tiktoken is not installed" in proc.stdout
    proc = label(corpus, "--out", tmp_path / "out", "--dry-run", "--model", "Qwen/Qwen2.5-Coder-32B-Instruct")
    assert "cost unknown unknown model 'Qwen/Qwen2.5-Coder-32B-Instruct': no price" in proc.stdout
    proc = label(corpus, "--out", tmp_path / "out", "--dry-run", "--price-input", "1", "--price-output", "2")
    assert "prices given by --price-input/--price-output" in proc.stdout
    assert server.chat_requests == 0 and not server.batches


def test_batch_mode_as_documented(server, corpus, tmp_path):
    out = tmp_path / "out"
    args = (corpus, "--out", out, "--mode", "batch", "--model", "gpt-5-nano", "--base-url", server.base_url)
    proc = label(*args, "--yes", "--poll-interval", "0.05")
    assert proc.returncode == 0, proc.stderr
    assert_judged(out, corpus, "gpt-5-nano")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["labeled"] == 12 and summary["judge"]["model"] == "gpt-5-nano"
    assert KEY not in proc.stdout + proc.stderr


def test_online_mode_as_documented(server, corpus, tmp_path):
    out = tmp_path / "out"
    model = "Qwen/Qwen2.5-Coder-32B-Instruct"
    proc = label(
        corpus, "--out", out, "--mode", "online", "--model", model,
        "--base-url", server.base_url, "--concurrency", "64", "--rps", "0", "--yes",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_judged(out, corpus, model)
    assert server.chat_requests == 12


def test_without_yes_nothing_is_sent_and_a_config_file_gives_options(server, corpus, tmp_path):
    out = tmp_path / "out"
    proc = label(corpus, "--out", out, "--mode", "online", "--base-url", server.base_url, "--model", "m")
    one_line_error(proc, 2, "pass --yes")
    assert server.chat_requests == 0
    config = tmp_path / "label.yaml"
    config.write_text("yes: true\nmode: online\nmax_chars: 50\nlanguages: [go, sql]\nlimit: 3\n")
    proc = label(corpus, "--out", out, "--base-url", server.base_url, "--model", "m", "--config", config)
    assert proc.returncode == 0, proc.stderr
    rows = read_labeled(out)
    assert len(rows) == 6 and {r["language"] for r in rows} == {"go", "sql"} and server.chat_requests == 6


def test_heuristic_labeler_as_documented(corpus, tmp_path):
    out = tmp_path / "out"
    proc = label(corpus, "--out", out, "--labeler", "heuristic", key=None)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "shards under" in proc.stdout
    rows = {r["id"]: r for r in read_labeled(out)}
    assert sorted(rows) == sorted(corpus_rows(corpus))
    # The same labels as the shipped heuristic labels of these files.
    shipped = {
        r["id"]: r
        for f in shards.labeled_files(ROOT / "data" / "labeled" / "heuristic")
        for r in pq.read_table(f).to_pylist()
        if r["id"] in rows
    }
    for id_, r in rows.items():
        for k in ("quality", "structured_data", "content_type", "label_reasons", "split", "labeler"):
            assert r[k] == shipped[id_][k], (id_, k)


# -- bad input, faults, interruption ----------------------------------------------------------------------------
@pytest.mark.parametrize("labeler", ["llm", "heuristic"])
def test_missing_corpus_is_one_line_and_writes_nothing(tmp_path, labeler):
    out = tmp_path / "out"
    proc = label(tmp_path / "no-such-corpus", "--out", out, "--labeler", labeler, "--dry-run")
    one_line_error(proc, 2, "no-such-corpus")
    assert not out.exists()


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_nothing_listening_is_one_line(corpus, tmp_path, mode):
    url = f"http://127.0.0.1:{free_port()}/v1"
    proc = label(
        corpus, "--out", tmp_path / "out", "--mode", mode, "--base-url", url, "--yes", "--model", "m"
    )
    one_line_error(proc, 1, f"nothing answers at {url}")


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_a_refused_key_is_never_printed(server, corpus, tmp_path, mode):
    server.echo_key = True  # the 401 repeats the key it was given
    out = tmp_path / "out"
    args = (corpus, "--out", out, "--mode", mode, "--base-url", server.base_url, "--yes", "--model", "m")
    proc = label(*args, "--log-level", "DEBUG", key=WRONG_KEY)
    assert WRONG_KEY not in proc.stdout + proc.stderr
    one_line_error(proc, 1, "the server refused the key (HTTP 401)")
    for path in out.rglob("*"):
        assert not path.is_file() or WRONG_KEY.encode() not in path.read_bytes(), path


def test_no_wait_reruns_collect_and_finish(server, corpus, tmp_path):
    out = tmp_path / "out"
    args = (corpus, "--out", out, "--mode", "batch", "--base-url", server.base_url, "--model", "m", "--yes")
    server.polls_to_finish = 1  # a batch has ended by the time it is first polled
    proc = label(*args, "--no-wait", "--batch-max-requests", "5")
    assert proc.returncode == 0 and "run the same command again" in proc.stdout
    assert len(server.batches) == 3 and not read_labeled(out)
    for _ in range(3):
        proc = label(*args, "--no-wait", "--batch-max-requests", "5")
        assert proc.returncode == 0, proc.stderr
        if "run the same command again" not in proc.stdout:
            break
    assert_judged(out, corpus, "m")
    assert set(server.batched_ids.values()) == {1}  # collected, never sent twice


def test_a_run_where_every_file_failed_fails_and_retry_failed_retries(server, corpus, tmp_path):
    out = tmp_path / "out"
    args = (corpus, "--out", out, "--mode", "online", "--base-url", server.base_url, "--model", "m", "--yes")
    args += ("--max-retries", "1", "--backoff-base", "0.01", "--backoff-max", "0.01")
    server.fail_all = True
    proc = label(*args)
    one_line_error(proc, 1, "none of the 12 files sent got a label")
    assert "--retry-failed" in proc.stderr and server.chat_requests == 24  # 2 attempts each
    server.fail_all = False
    proc = label(*args)  # their attempts are used up: left out, and said so
    assert proc.returncode == 0 and server.chat_requests == 24
    assert "Left out: 12 files whose attempts are used up (--retry-failed" in proc.stdout
    proc = label(*args, "--retry-failed")
    assert proc.returncode == 0, proc.stderr
    assert_judged(out, corpus, "m")
    assert server.chat_requests == 36


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(server, corpus, tmp_path):
    server.delay = 0.2
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "label.py"), corpus, "--out", out, "--mode", "online"]
    cmd += ["--base-url", server.base_url, "--model", "m", "--yes", "--concurrency", "2", "--rps", "0"]
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    proc = subprocess.Popen(
        list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    results = out / "work" / "results"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(len(f.read_text().splitlines()) for f in results.glob("*.jsonl")) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    assert "interrupted" in stderr and "Run the same command again to resume" in stderr
    done = [json.loads(x)["id"] for f in results.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert 3 <= len(done) < 12

    server.delay = 0
    again = label(*cmd[2:])
    assert again.returncode == 0, again.stderr
    ids = [json.loads(x)["id"] for f in results.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 12  # nothing lost, nothing twice
    assert_judged(out, corpus, "m")
