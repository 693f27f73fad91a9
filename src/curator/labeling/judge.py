"""The LLM judge's configuration, its client and key handling, and what both labeling modes share.

Both modes send the same Chat Completions body (see `prompt.build_request_body`) through the official `openai`
SDK; `batch`, `online` and `export` build on this module, and `llm` runs them.
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

log = logging.getLogger(__name__)


@dataclass
class JudgeConfig:
    model: str = "gpt-5-nano"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else api.openai.com
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never from a flag or a file
    max_chars: int = prompt.DEFAULT_MAX_CHARS
    max_retries: int = 3  # retries of one file after a failed attempt; it gets max_retries + 1 attempts
    # True: a file whose attempts were used up by earlier runs gets max_retries + 1 more in this run.
    retry_failed: bool = False
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


class JudgeError(RuntimeError):
    """A run cannot go on; the message is one line for the user, and holds no key."""


class MissingKeyError(JudgeError):
    pass


class AuthError(JudgeError):
    pass


class Unreachable(JudgeError):
    pass


class AllFailed(JudgeError):
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
