"""The resumable store of judge answers: what is labeled, what failed and how often.

Layout under the work folder:
    results/<part>.jsonl    one line per accepted label: id, quality, structured_data, content_type, labeler
    failures/<part>.jsonl   one line per failed attempt: id, attempt, reason, source; `attempt` is null for a
                            request that was never run (its batch expired or was cancelled): no attempt
Online labeling appends to a part of its own, a line at a time, flushed as each answer arrives; a crash can
leave at most a torn last line, which readers skip. Batch results are written whole under a temporary name
and renamed into place, so a batch part is either all there or not there. Nothing is ever rewritten, so a
label that was paid for is never lost, and readers keep the first label of an id, so a repeat is harmless.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from curator.files import write_atomic

log = logging.getLogger(__name__)


def _read_jsonl(path: Path) -> Iterable[dict]:
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                # Only an append cut short by a crash can leave a broken line; its id is simply not done.
                log.warning("%s:%d: skipping a torn line", path, line_no)


def write_text_atomic(text: str | bytes, path: Path) -> None:
    """Write to a temporary name beside the target, then rename: a reader never sees half a file."""
    if isinstance(text, bytes):
        write_atomic(path, lambda tmp: tmp.write_bytes(text))
    else:
        write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_jsonl_atomic(records: Iterable[dict], path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    write_atomic(path, write)


class AppendLog:
    """An append-only JSONL part: each record is one write of one line, flushed to the OS at once."""

    def __init__(self, path: Path, fsync_every: int = 100):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")
        self._fsync_every = fsync_every
        self._since_sync = 0

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()  # survives a crash of this process; fsync below bounds what a power cut can take
        self._since_sync += 1
        if self._since_sync >= self._fsync_every:
            os.fsync(self._fh.fileno())
            self._since_sync = 0

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


class LabelStore:
    def __init__(self, work_dir: str | Path):
        self.work_dir = Path(work_dir)
        self.results_dir = self.work_dir / "results"
        self.failures_dir = self.work_dir / "failures"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        self.labels: dict[str, dict] = {}
        self.failures: Counter[str] = Counter()  # id -> failed attempts so far
        self.forgiven: Counter[str] = Counter()  # id -> failed attempts that no longer count (--retry-failed)
        self.reasons: Counter[str] = Counter()  # reason kind -> count, for the summary
        self.reload()

    def reload(self) -> None:
        self.labels.clear()
        self.failures.clear()
        self.reasons.clear()
        for path in sorted(self.results_dir.glob("*.jsonl")):
            for rec in _read_jsonl(path):
                self.labels.setdefault(str(rec["id"]), rec)
        for path in sorted(self.failures_dir.glob("*.jsonl")):
            self.record_failure_counts(_read_jsonl(path))

    def is_done(self, id_: str) -> bool:
        return id_ in self.labels

    def attempts(self, id_: str) -> int:
        """Attempts made so far: every failure is one, and a label ends the attempts."""
        return self.failures[id_] + (1 if id_ in self.labels else 0)

    def failed_attempts(self, id_: str) -> int:
        """Failed attempts that count against --max-retries."""
        return self.failures[id_] - self.forgiven[id_]

    def forgive_failures(self) -> None:
        """Let every file that failed before have --max-retries + 1 attempts again (--retry-failed)."""
        self.forgiven = Counter(self.failures)

    def open_online_part(self) -> OnlineWriter:
        part = f"online-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        return OnlineWriter(self, part)

    def record_failure_counts(self, failures: Iterable[dict]) -> None:
        for rec in failures:
            if rec.get("attempt", 1) is not None:  # an expired request was never run: not an attempt
                self.failures[str(rec["id"])] += 1
            self.reasons[reason_kind(rec.get("reason", ""))] += 1

    def write_batch_part(self, part: str, results: list[dict], failures: list[dict]) -> None:
        """Write one collected batch: failures first, then results; the results part marks it collected."""
        write_jsonl_atomic(failures, self.failures_dir / f"{part}.jsonl")
        write_jsonl_atomic(results, self.results_dir / f"{part}.jsonl")
        for rec in results:
            self.labels.setdefault(str(rec["id"]), rec)
        self.record_failure_counts(failures)

    def has_part(self, part: str) -> bool:
        return (self.results_dir / f"{part}.jsonl").exists()


class OnlineWriter:
    """Appends an online run's answers as they arrive."""

    def __init__(self, store: LabelStore, part: str):
        self.store = store
        self.results = AppendLog(store.results_dir / f"{part}.jsonl")
        self.failures = AppendLog(store.failures_dir / f"{part}.jsonl")

    def add_label(self, rec: dict) -> bool:
        """Record a label; False if the id already had one (then nothing is written)."""
        if rec["id"] in self.store.labels:
            return False
        self.results.write(rec)
        self.store.labels[rec["id"]] = rec
        return True

    def add_failure(self, rec: dict) -> None:
        self.failures.write(rec)
        self.store.record_failure_counts([rec])

    def close(self) -> None:
        self.results.close()
        self.failures.close()


def reason_kind(reason: str) -> str:
    """The kind of a failure reason ("malformed JSON: ..." -> "malformed JSON"), for counting."""
    return reason.split(":", 1)[0].strip() or "unknown"


def failure_record(id_: str, attempt: int | None, reason: str, source: str) -> dict:
    return {"id": id_, "attempt": attempt, "reason": reason, "source": source, "time": round(time.time(), 3)}
