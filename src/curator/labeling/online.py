"""Online labeling: concurrent Chat Completions requests to any OpenAI-compatible server.

`concurrency` workers share one rate limiter (`rps` requests per second). A failed attempt (HTTP error,
timeout, or an answer that fails the checks) is written to the failures and retried after an exponential
backoff, until the file has had `max_retries + 1` attempts. Each label is appended to the store the moment it
arrives, so stopping the run at any point loses only the requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable

import openai
from tqdm.auto import tqdm

from curator.labeling import prompt
from curator.labeling.judge import (
    AuthError,
    Callbacks,
    JudgeConfig,
    Unreachable,
    label_record,
    make_client,
    redact_url,
)
from curator.labeling.store import LabelStore, failure_record

log = logging.getLogger(__name__)


class RateLimiter:
    """Hands out start times at least 1/rps apart, shared by all workers."""

    def __init__(self, rps: float):
        self.interval = 1.0 / rps if rps and rps > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        async with self._lock:
            now = loop.time()
            start = max(now, self._next)
            self._next = start + self.interval
        await asyncio.sleep(start - now)


def backoff_seconds(attempt: int, cfg: JudgeConfig, retry_after: float | None = None) -> float:
    if retry_after is not None:
        return min(retry_after, cfg.backoff_max)
    # Full jitter around the doubling step, so that many workers hit by one 429 do not retry in lockstep.
    step = min(cfg.backoff_max, cfg.backoff_base * 2 ** (attempt - 1))
    return step * (0.5 + random.random() / 2)


def _retry_after(err: openai.APIStatusError) -> float | None:
    try:
        return float(err.response.headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def _status_reason(err: openai.APIStatusError) -> str:
    # The SDK puts the "error" object of a JSON error body in err.body.
    message = err.body.get("message") if isinstance(err.body, dict) else None
    return f"http {err.status_code}: {str(message or err.message)[:300]}"


async def _label_one(row, client, cfg, store, writer, limiter, bar, callbacks, scrub, seen) -> None:
    id_ = row["id"]
    body = prompt.build_request_body(row, cfg.model, cfg.max_chars, cfg.request_extra())
    while True:
        attempt = store.attempts(id_) + 1
        retry_after = None
        await limiter.wait()
        try:
            completion = await client.chat.completions.create(**body)
            seen["answer"] = True
            answer = prompt.parse_completion(completion.model_dump())
        except prompt.BadAnswer as e:
            reason, retryable = str(e), True
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            # Every other request would fail the same way; stop instead of burning attempts. The server's
            # message is left out: some echo part of the key.
            raise AuthError(
                f"the server refused the key (HTTP {e.status_code}); check ${cfg.api_key_env}"
            ) from None
        except openai.APIStatusError as e:
            seen["answer"] = True
            reason = _status_reason(e)
            retryable = e.status_code in (408, 409, 429) or e.status_code >= 500
            retry_after = _retry_after(e) if e.status_code == 429 else None
        except openai.APITimeoutError:
            reason, retryable = "timeout", True
        except openai.APIConnectionError as e:
            cause = type(e.__cause__ or e).__name__
            if not seen["answer"]:
                # Nothing has answered in this run: a wrong --base-url or a server that is down, not a
                # problem of this file. Stop before using up every file's attempts on it.
                raise Unreachable(
                    f"nothing answers at {redact_url(cfg.resolved_base_url())} ({cause}); check --base-url "
                    "and that the server is up"
                ) from None
            reason, retryable = f"connection error: {cause}", True
        else:
            rec = label_record(id_, answer, cfg, "online")
            if writer.add_label(rec):
                bar.update(1)
                if callbacks.on_label:
                    callbacks.on_label(rec)
            return
        writer.add_failure(failure_record(id_, attempt, scrub(reason), "online"))
        log.debug("%s attempt %d failed: %s", id_, attempt, scrub(reason))
        if not retryable or store.failed_attempts(id_) > cfg.max_retries:
            bar.update(1)
            log.warning("%s: giving up after attempt %d: %s", id_, attempt, scrub(reason))
            return
        await asyncio.sleep(backoff_seconds(attempt, cfg, retry_after))


async def _run(rows: Iterable[dict], store: LabelStore, cfg: JudgeConfig, callbacks: Callbacks, total, scrub):
    client = make_client(cfg, async_=True)
    writer = store.open_online_part()
    limiter = RateLimiter(cfg.rps)
    rows_iter = iter(rows)
    bar = tqdm(total=total, desc="label (online)", unit="file", mininterval=1.0)
    seen = {"answer": False}  # has the server answered anything (even an error) in this run?

    async def worker() -> None:
        # One event loop thread: next() on the shared iterator needs no lock.
        for row in rows_iter:
            await _label_one(row, client, cfg, store, writer, limiter, bar, callbacks, scrub, seen)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, cfg.concurrency))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        bar.close()
        await client.close()


def label_online(
    rows: Iterable[dict],
    store: LabelStore,
    cfg: JudgeConfig,
    callbacks: Callbacks | None = None,
    total: int | None = None,
    scrub: Callable[[str], str] = lambda s: s,
) -> None:
    asyncio.run(_run(rows, store, cfg, callbacks or Callbacks(), total, scrub))
