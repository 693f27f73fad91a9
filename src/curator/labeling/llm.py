"""LLM labeling of a corpus: the run from corpus to labeled shards, in batch or online mode.

`batch` goes through the Batch API (half price, up to 24 h), `online` sends concurrent requests to any
OpenAI-compatible server (OpenAI, vLLM, TGI, llama.cpp). Answers land in a `LabelStore` under `<out>/work/`,
so a re-run picks up where the last one stopped; the labeled shards and the summary are rebuilt from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from curator.labeling import batch, cost, export, online
from curator.labeling.judge import AllFailed, Callbacks, JudgeConfig, KeyRedactor, api_key, iter_rows
from curator.labeling.store import LabelStore

log = logging.getLogger(__name__)


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
    or None for a dry run. Raises AllFailed when files were sent and none got a label."""
    if mode not in ("batch", "online"):
        raise ValueError(f"mode must be 'batch' or 'online', got {mode!r}")
    out_dir = Path(out_dir)
    store = LabelStore(out_dir / "work")
    if cfg.retry_failed:
        store.forgive_failures()
    callbacks = callbacks or Callbacks()
    in_flight = batch.in_flight_ids(out_dir / "work")
    if in_flight:
        log.info(
            "%d files are in batches already submitted; they are collected, not sent again", len(in_flight)
        )

    def candidates() -> Iterator[dict]:
        # Not labeled yet and attempts left (--retry-failed gives exhausted files a fresh set).
        for row in iter_rows(corpus_root, languages, limit):
            if not store.is_done(row["id"]) and store.failed_attempts(row["id"]) <= cfg.max_retries:
                yield row

    def todo() -> Iterator[dict]:
        return (row for row in candidates() if row["id"] not in in_flight)

    est = cost.estimate(todo(), cfg.max_chars, cfg.prices, batch=(mode == "batch"))
    labeled = len(store.labels)
    exhausted = sum(1 for id_, n in store.failures.items() if id_ not in store.labels and n > cfg.max_retries)
    print(f"Already labeled: {labeled:,}. To send: {est.describe()}.")
    if exhausted and not cfg.retry_failed:
        print(f"Left out: {exhausted:,} files whose attempts are used up (--retry-failed tries them again).")
    if dry_run:
        return None
    if est.requests:
        confirm_fn(est, yes)

    redactor = KeyRedactor(api_key(cfg))
    handlers = [h for name in ("", "openai", "httpx", "httpx2") for h in logging.getLogger(name).handlers]
    for h in handlers:
        h.addFilter(redactor)
    finished = True
    try:
        if mode == "online":
            online.label_online(todo(), store, cfg, callbacks, total=est.requests, scrub=redactor.scrub)
        else:
            finished = batch.label_batch(
                candidates, store, cfg, out_dir / "work", callbacks, scrub=redactor.scrub
            )
    finally:
        for h in handlers:
            h.removeFilter(redactor)
    summary = export.export_labeled(
        corpus_root, store, out_dir, languages=languages, limit=limit, judge=cfg.loggable()
    )
    if not finished:
        print(
            "Batches are still running; run the same command again (with or without --no-wait) to collect them."
        )
        return summary
    sent = est.requests + len(in_flight)
    if sent and len(store.labels) == labeled:
        reasons = ", ".join(f"{r} ({n})" for r, n in store.reasons.most_common(3))
        raise AllFailed(
            f"none of the {sent:,} files sent got a label (failures so far: {reasons}); see "
            f"{out_dir / 'summary.md'}, fix the cause, then run again with --retry-failed"
        )
    return summary
