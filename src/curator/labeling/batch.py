"""Batch labeling through the OpenAI Batch API.

A round writes the files to label as JSONL request files within the API's limits, uploads each, creates a
batch per file, polls until every batch ends, downloads its output and error files and turns them into labels
and failures; failures with attempts left go into the next round.

Money is spent once a batch exists, so the manifest (`<work>/batches.json`, rewritten atomically after every
step) records each request file's state: prepared -> uploaded (input file id) -> submitted (batch id) ->
collected. A run that stops anywhere resumes from it: it never resubmits files that are in a batch, collects
batches created by an earlier run, and finds a batch created just before a crash by its input file id.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import openai
from tqdm.auto import tqdm

from curator.labeling import prompt
from curator.labeling.judge import (
    AuthError,
    Callbacks,
    JudgeConfig,
    JudgeError,
    Unreachable,
    label_record,
    make_client,
    redact_url,
)
from curator.labeling.store import LabelStore, failure_record, write_text_atomic

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "expired", "cancelled", "failed")
EXPIRED_CODE = "batch_expired"  # the error code of a request its batch did not run in the window


class Manifest:
    def __init__(self, work_dir: Path):
        self.path = work_dir / "batches.json"
        self.entries: list[dict] = json.loads(self.path.read_text())["batches"] if self.path.exists() else []

    def save(self) -> None:
        write_text_atomic(json.dumps({"batches": self.entries}, indent=1), self.path)

    def active(self) -> list[dict]:
        return [e for e in self.entries if e["state"] != "collected"]


def _request_ids(path: Path) -> list[str]:
    ids = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                ids.append(json.loads(line)["custom_id"])
    return ids


def in_flight_ids(work_dir: Path) -> set[str]:
    """Ids in request files that are uploaded or in a batch and not yet collected."""
    ids: set[str] = set()
    for e in Manifest(work_dir).active():
        path = work_dir / e["request_file"]
        if e["state"] != "prepared" and path.exists():
            ids.update(_request_ids(path))
    return ids


def request_line(row: dict, cfg: JudgeConfig) -> bytes:
    body = prompt.build_request_body(row, cfg.model, cfg.max_chars, cfg.request_extra())
    line = {"custom_id": row["id"], "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")


def chunk_requests(rows: Iterable[dict], cfg: JudgeConfig) -> Iterable[list[bytes]]:
    """Request lines grouped into files of at most batch_max_requests lines and batch_max_bytes bytes."""
    chunk: list[bytes] = []
    size = 0
    for row in rows:
        line = request_line(row, cfg)
        if len(line) > cfg.batch_max_bytes:
            raise ValueError(f"one request ({row['id']}) is larger than batch_max_bytes; lower max_chars")
        if chunk and (len(chunk) >= cfg.batch_max_requests or size + len(line) > cfg.batch_max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield chunk


class BatchRunner:
    def __init__(self, store: LabelStore, cfg: JudgeConfig, work_dir: Path, callbacks: Callbacks, scrub):
        self.store = store
        self.cfg = cfg
        self.work_dir = work_dir
        self.callbacks = callbacks
        self.scrub = scrub
        self.manifest = Manifest(work_dir)
        # The SDK retries its own control calls (upload, create, poll) on 429/5xx with backoff.
        self.client = make_client(cfg, sdk_retries=max(2, cfg.max_retries))

    # -- submit ---------------------------------------------------------------------------------------------
    def submit(self, rows: Iterable[dict]) -> int:
        n = 0
        for lines in chunk_requests(rows, self.cfg):
            name = f"b{len(self.manifest.entries):05d}-{time.strftime('%Y%m%d-%H%M%S')}"
            path = self.work_dir / "requests" / f"{name}.jsonl"
            write_text_atomic(b"".join(lines), path)
            entry = {
                "name": name,
                "request_file": str(path.relative_to(self.work_dir)),
                "requests": len(lines),
                "state": "prepared",
                "created": time.time(),
            }
            self.manifest.entries.append(entry)
            self.manifest.save()
            self._upload(entry)
            self._create(entry)
            n += len(lines)
        return n

    def _upload(self, entry: dict) -> None:
        path = self.work_dir / entry["request_file"]
        with open(path, "rb") as fh:
            uploaded = self.client.files.create(file=(path.name, fh), purpose="batch")
        entry.update(state="uploaded", input_file_id=uploaded.id, uploaded=time.time())
        self.manifest.save()

    def _create(self, entry: dict) -> None:
        b = self.client.batches.create(
            input_file_id=entry["input_file_id"],
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"curator_part": entry["name"]},
        )
        self.mark_submitted(entry, b)

    def mark_submitted(self, entry: dict, b) -> None:
        entry.update(state="submitted", batch_id=b.id, status=b.status)
        self.manifest.save()
        log.info("submitted %s: batch %s, %d requests", entry["name"], b.id, entry["requests"])
        if self.callbacks.on_batch_submitted:
            self.callbacks.on_batch_submitted(dict(entry))

    def resume(self) -> None:
        """Bring entries left half-done by an earlier run to a known state."""
        for entry in list(self.manifest.active()):
            if entry["state"] == "prepared":
                # Never uploaded, so nothing was paid: forget it; its files are planned again.
                (self.work_dir / entry["request_file"]).unlink(missing_ok=True)
                self.manifest.entries.remove(entry)
                self.manifest.save()
            elif entry["state"] == "uploaded":
                found = self._find_batch(entry["input_file_id"], since=entry.get("uploaded", 0) - 3600)
                if found is not None:
                    log.info("found batch %s created before the last run stopped", found.id)
                    self.mark_submitted(entry, found)
                else:
                    self._create(entry)

    def _find_batch(self, input_file_id: str, since: float):
        # A crash between batches.create and the manifest write leaves a batch the manifest does not know;
        # its input file id finds it. The list is newest first, so stop at batches older than the upload.
        for b in self.client.batches.list(limit=100):
            if b.input_file_id == input_file_id:
                return b
            if b.created_at < since:
                break
        return None

    # -- wait and collect -----------------------------------------------------------------------------------
    def poll(self, entries: list[dict]) -> list[dict]:
        """Check each batch once and collect those that ended; returns those still running."""
        running = []
        for entry in entries:
            b = self.client.batches.retrieve(entry["batch_id"])
            entry["status"] = b.status
            counts = b.request_counts
            entry["done"] = (counts.completed + counts.failed) if counts else 0
            if b.status in TERMINAL:
                self.collect(entry, b)
                entry["done"] = entry["requests"]
            else:
                running.append(entry)
        self.manifest.save()
        return running

    def submitted(self) -> list[dict]:
        return [e for e in self.manifest.active() if e["state"] == "submitted"]

    def wait_and_collect(self) -> None:
        active = self.submitted()
        tracked = list(active)
        bar = tqdm(
            total=sum(e["requests"] for e in tracked), desc="label (batch)", unit="file", mininterval=1.0
        )
        try:
            while active:
                active = self.poll(active)
                bar.n = sum(e.get("done", 0) for e in tracked)
                bar.set_postfix_str(", ".join(f"{e['batch_id']}: {e['status']}" for e in active)[:120])
                bar.refresh()
                if active:
                    time.sleep(self.cfg.poll_interval)
        finally:
            bar.close()

    def _download(self, file_id: str | None, name: str) -> Path | None:
        if not file_id:
            return None
        path = self.work_dir / "downloads" / name
        if not path.exists():  # downloaded before a crash: no need to fetch it again
            # Scrubbed like everything written: a server may echo the key in an error message.
            write_text_atomic(self.scrub(self.client.files.content(file_id).read().decode("utf-8")), path)
        return path

    def collect(self, entry: dict, b) -> None:
        source = f"batch:{b.id}"
        if not self.store.has_part(entry["name"]):
            results, failures, answered = [], [], set()
            for kind, file_id in (("output", b.output_file_id), ("errors", b.error_file_id)):
                path = self._download(file_id, f"{entry['name']}-{kind}.jsonl")
                if path is None:
                    continue
                for line in path.read_text(encoding="utf-8").splitlines():
                    if not line.strip():
                        continue
                    id_, answer, reason = parse_output_line(json.loads(line))
                    if id_ is None or id_ in answered:
                        continue
                    answered.add(id_)
                    if answer is not None:
                        results.append(label_record(id_, answer, self.cfg, source))
                    else:
                        # A request the batch never ran (expired) is no attempt: it must not use one up.
                        attempt = None if EXPIRED_CODE in reason else self.store.attempts(id_) + 1
                        failures.append(failure_record(id_, attempt, self.scrub(reason), source))
            request_file = self.work_dir / entry["request_file"]
            if request_file.exists():
                why = _batch_failure_reason(b)
                # An expired or cancelled batch leaves the requests it did not run unanswered: no attempt.
                # A failed batch (its input was rejected) is an attempt, or it would be resubmitted forever.
                ran = b.status == "failed"
                for id_ in _request_ids(request_file):
                    if id_ not in answered:
                        attempt = self.store.attempts(id_) + 1 if ran else None
                        failures.append(failure_record(id_, attempt, why, source))
            self.store.write_batch_part(entry["name"], results, failures)
            log.info("collected %s (%s): %d labels, %d failures", b.id, b.status, len(results), len(failures))
        entry.update(state="collected", status=b.status, collected=time.time())
        self.manifest.save()
        # The request file is only needed to know which ids a batch held; the corpus can rebuild it.
        (self.work_dir / entry["request_file"]).unlink(missing_ok=True)
        if self.callbacks.on_batch_collected:
            self.callbacks.on_batch_collected(dict(entry))


def _batch_failure_reason(b) -> str:
    if b.status == "failed" and b.errors and b.errors.data:
        first = b.errors.data[0]
        return f"batch failed: {first.code}: {first.message}"
    return f"batch {b.status}: no answer for this request"


def parse_output_line(obj: dict) -> tuple[str | None, dict | None, str | None]:
    """(id, labels, None) for a good answer, (id, None, reason) for any other line of an output/error file."""
    id_ = obj.get("custom_id")
    id_ = None if id_ is None else str(id_)
    if obj.get("error"):
        err = obj["error"]
        return id_, None, f"batch error: {err.get('code')}: {err.get('message')}"
    response = obj.get("response") or {}
    status = response.get("status_code")
    body = response.get("body") or {}
    if status != 200:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        return id_, None, f"http {status}: {str(message)[:300]}"
    try:
        return id_, prompt.parse_completion(body), None
    except prompt.BadAnswer as e:
        return id_, None, str(e)


def label_batch(
    candidates: Callable[[], Iterable[dict]],
    store: LabelStore,
    cfg: JudgeConfig,
    work_dir: Path,
    callbacks: Callbacks | None = None,
    scrub: Callable[[str], str] = lambda s: s,
) -> bool:
    """Run rounds until nothing is left to send; True when finished, False when batches are still running
    (only with cfg.wait False: then batches that ended are collected and what is left is submitted)."""
    try:
        return _label_batch(candidates, store, cfg, work_dir, callbacks or Callbacks(), scrub)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        # The server's message is left out: some echo the key back.
        raise AuthError(
            f"the server refused the key (HTTP {e.status_code}); check ${cfg.api_key_env}"
        ) from None
    except openai.APIConnectionError as e:
        raise Unreachable(
            f"nothing answers at {redact_url(cfg.resolved_base_url()) or 'api.openai.com'} "
            f"({type(e.__cause__ or e).__name__}); check --base-url and the network"
        ) from None
    except openai.APIStatusError as e:
        message = e.body.get("message") if isinstance(e.body, dict) else None
        raise JudgeError(
            f"the Batch API answered HTTP {e.status_code}: {scrub(str(message or e.message))[:300]}"
        ) from None


def _label_batch(candidates, store, cfg, work_dir, callbacks, scrub) -> bool:
    runner = BatchRunner(store, cfg, work_dir, callbacks, scrub)
    runner.resume()
    for round_ in range(cfg.max_rounds):
        if not cfg.wait:
            runner.poll(runner.submitted())  # collect what ended since the last run, without waiting
        in_flight = in_flight_ids(work_dir)
        sent = runner.submit(r for r in candidates() if r["id"] not in in_flight)
        if sent:
            log.info("round %d: submitted %d requests", round_, sent)
        if not runner.manifest.active():
            return True
        if not cfg.wait:
            return False
        runner.wait_and_collect()
    left = sum(1 for _ in candidates())
    if left:
        log.warning(
            "stopped after %d rounds with %d files still unlabeled; run again to continue",
            cfg.max_rounds,
            left,
        )
    return True
