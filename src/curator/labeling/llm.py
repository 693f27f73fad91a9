"""LLM labeling of a corpus: configuration, the client, and the run from corpus to labeled shards.

Both modes send the same Chat Completions body (see `prompt.build_request_body`) through the official `openai`
SDK: `batch` through the Batch API (half price, up to 24 h), `online` as concurrent requests to any
OpenAI-compatible server (OpenAI, vLLM, TGI, llama.cpp). Answers land in a `LabelStore` under `<out>/work/`,
so a re-run picks up where the last one stopped; the labeled shards and the summary are rebuilt from it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from curator.data import corpus
from curator.labeling import cost, prompt
from curator.labeling.store import LabelStore

log = logging.getLogger(__name__)


@dataclass
class JudgeConfig:
    model: str = "gpt-5-nano"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else api.openai.com
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never from a flag or a file
    max_chars: int = prompt.DEFAULT_MAX_CHARS
    max_retries: int = 3  # retries of one file after a failed attempt; it gets max_retries + 1 attempts
    timeout: float = 120.0
    # Optional request parameters, sent only when set (some models reject e.g. a temperature).
    temperature: float | None = None
    reasoning_effort: str | None = None
    max_completion_tokens: int | None = None
    # Online mode.
    concurrency: int = 16
    rps: float = 10.0  # requests per second across all workers; 0 for no limit
    backoff_base: float = 1.0  # first retry waits ~this many seconds, doubling each time
    backoff_max: float = 60.0
    # Batch mode. The Batch API takes at most 50,000 requests and 200 MB per input file.
    batch_max_requests: int = 50_000
    batch_max_bytes: int = 190 * 1024 * 1024  # a margin under 200 MB
    poll_interval: float = 30.0
    wait: bool = True  # False: submit and return; a later run collects
    max_rounds: int = 10  # rounds of submit -> wait -> collect -> resubmit failures
    prices: cost.Prices = field(default_factory=cost.Prices)

    def request_extra(self) -> dict:
        return {
            "temperature": self.temperature,
            "reasoning_effort": self.reasoning_effort,
            "max_completion_tokens": self.max_completion_tokens,
        }

    def loggable(self) -> dict:
        """The configuration as it may be written to disk or logs: no key, no credentials in the URL."""
        d = asdict(self)
        d["base_url"] = redact_url(self.resolved_base_url())
        return d

    def resolved_base_url(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None


def redact_url(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        parts = parts._replace(netloc=f"***@{parts.hostname}" + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts._replace(query=""))


class MissingKeyError(RuntimeError):
    pass


def api_key(cfg: JudgeConfig) -> str:
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    if cfg.resolved_base_url():
        return "EMPTY"  # local servers (vLLM, llama.cpp) started without --api-key accept any key
    raise MissingKeyError(
        f"no API key: set ${cfg.api_key_env}, or give --base-url for a server that needs none"
    )


class KeyRedactor(logging.Filter):
    """Scrubs the key from log records, in case a server echoes it back in an error message."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key and self.key != "EMPTY" else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.key and self.key != "EMPTY":
            record.msg = self.scrub(record.getMessage())
            record.args = None
        return True


def make_client(cfg: JudgeConfig, async_: bool = False, sdk_retries: int = 0):
    """An SDK client for the configured server. Online mode retries itself (each attempt is recorded), so
    the SDK's own retries are off there; batch mode lets the SDK retry its few control calls."""
    from openai import AsyncOpenAI, OpenAI

    cls = AsyncOpenAI if async_ else OpenAI
    return cls(
        api_key=api_key(cfg), base_url=cfg.resolved_base_url(), timeout=cfg.timeout, max_retries=sdk_retries
    )


@dataclass
class Callbacks:
    """Hooks into a run, for progress reporting and for tests that stop a run at a chosen point."""

    on_label: Callable[[dict], None] | None = None
    on_batch_submitted: Callable[[dict], None] | None = None
    on_batch_collected: Callable[[dict], None] | None = None


def iter_rows(
    corpus_root: str | Path, languages: list[str] | None = None, limit: int | None = None
) -> Iterator[dict]:
    """Corpus rows with string ids, first copy of each id only, at most `limit` per language."""
    seen: set[str] = set()
    per_language: dict[str, int] = {}
    for row in corpus.iter_corpus(corpus_root, languages):
        row["id"] = str(row["id"])
        lang = row["language"]
        if row["id"] in seen or (limit is not None and per_language.get(lang, 0) >= limit):
            continue
        seen.add(row["id"])
        per_language[lang] = per_language.get(lang, 0) + 1
        yield row


def label_record(id_: str, answer: dict, cfg: JudgeConfig, source: str) -> dict:
    return {"id": id_, **answer, "labeler": cfg.model, "source": source}


def label_corpus_llm(
    corpus_root: str | Path,
    out_dir: str | Path,
    cfg: JudgeConfig,
    mode: str = "batch",
    yes: bool = False,
    dry_run: bool = False,
    languages: list[str] | None = None,
    limit: int | None = None,
    callbacks: Callbacks | None = None,
    confirm_fn: Callable[[cost.Estimate, bool], None] = cost.confirm,
) -> dict | None:
    """Label what is not labeled yet, then write the labeled shards and the summary. Returns the summary,
    or None for a dry run or a run that only submitted batches."""
    from curator.labeling import batch, export, online  # here, not at the top: they import this module

    if mode not in ("batch", "online"):
        raise ValueError(f"mode must be 'batch' or 'online', got {mode!r}")
    out_dir = Path(out_dir)
    store = LabelStore(out_dir / "work")
    callbacks = callbacks or Callbacks()
    in_flight = batch.in_flight_ids(out_dir / "work")
    if in_flight:
        log.info(
            "%d files are in batches already submitted; they are collected, not sent again", len(in_flight)
        )

    def candidates() -> Iterator[dict]:
        # Not labeled yet and attempts left; a re-run with a higher --max-retries tries the given-up ones.
        for row in iter_rows(corpus_root, languages, limit):
            if not store.is_done(row["id"]) and store.failures[row["id"]] <= cfg.max_retries:
                yield row

    def todo() -> Iterator[dict]:
        return (row for row in candidates() if row["id"] not in in_flight)

    est = cost.estimate(todo(), cfg.max_chars, cfg.prices, batch=(mode == "batch"))
    labeled = len(store.labels)
    print(f"Already labeled: {labeled:,}. To send: {est.describe()}.")
    if dry_run:
        return None
    if est.requests:
        confirm_fn(est, yes)

    redactor = KeyRedactor(api_key(cfg))
    handlers = [h for name in ("", "openai", "httpx", "httpx2") for h in logging.getLogger(name).handlers]
    for h in handlers:
        h.addFilter(redactor)
    try:
        if mode == "online":
            online.label_online(todo(), store, cfg, callbacks, total=est.requests, scrub=redactor.scrub)
        else:
            finished = batch.label_batch(
                candidates, store, cfg, out_dir / "work", callbacks, scrub=redactor.scrub
            )
            if not finished:
                print("Batches submitted; run the same command again to collect them.")
                return None
    finally:
        for h in handlers:
            h.removeFilter(redactor)
    return export.export_labeled(corpus_root, store, out_dir, languages=languages, limit=limit)
