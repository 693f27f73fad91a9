"""One file's labels (`label_file`), and the bounds that keep any file cheap to label.

The rules are linear-ish in the text, but their constant is large (~45 bytes of working memory and ~1 s per
million characters), so a 100 MB file would take minutes and gigabytes. Files over `MAX_CHARS` are analysed
on their head, and `label_bounded` gives up on a file after `TIME_LIMIT_S` seconds (a guard against a
regex that backtracks badly on some odd input) or on content that is not text.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from curator.labeling.heuristic.content_type import content_type_of
from curator.labeling.heuristic.facts import compute_facts
from curator.labeling.heuristic.quality import quality_of
from curator.labeling.heuristic.structured import structured_level

LABELER_NAME = "heuristic"
# The shipped sample's largest file is 98K characters; no real source file of interest is near 1M.
MAX_CHARS = 1_000_000
TIME_LIMIT_S = 30.0


@dataclass
class HeuristicLabel:
    quality: int
    structured_data: int
    content_type: str
    reasons: list[str] = field(default_factory=list)


def capped(content: str, max_chars: int = MAX_CHARS) -> tuple[str, str | None]:
    """The text the rules analyse, and a reason when it is only the head of the file."""
    if len(content) <= max_chars:
        return content, None
    head = content[:max_chars]
    cut = head.rfind("\n")
    if cut >= max_chars // 2:  # whole lines, unless the file is a few huge lines (minified)
        head = head[: cut + 1]
    return head, f"size cap: analysed the first {len(head):,} of {len(content):,} characters"


def label_file(content: str, path: str, language: str, max_chars: int = MAX_CHARS) -> HeuristicLabel:
    """All three labels for one file, with the rules that fired."""
    text, cap_reason = capped(content or "", max_chars)
    f = compute_facts(text, path or "", language or "")
    content_type, ct_reason = content_type_of(f)
    quality, q_reasons = quality_of(f, content_type)
    structured_data, sd_reasons = structured_level(f, content_type)
    reasons = [ct_reason, *q_reasons, *sd_reasons]
    return HeuristicLabel(
        quality, structured_data, content_type, [cap_reason, *reasons] if cap_reason else reasons
    )


class NotLabeled(Exception):
    """A file the labeler gives no label, with the reason."""


class _OutOfTime(BaseException):
    # A BaseException, so that no `except Exception` inside a rule can swallow it.
    pass


@contextmanager
def time_limit(seconds: float | None):
    """Raise _OutOfTime after `seconds`. SIGALRM interrupts even a regex running in C (`re` checks for
    signals); it exists only on Unix and in the main thread, so elsewhere there is no limit."""
    if (
        not seconds
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def on_alarm(signum, frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def label_bounded(
    content: str | None,
    path: str,
    language: str,
    max_chars: int = MAX_CHARS,
    time_limit_s: float | None = TIME_LIMIT_S,
) -> HeuristicLabel:
    """`label_file` within the bounds; NotLabeled for no text, binary content, or running out of time."""
    if content is None:
        raise NotLabeled("no content (null)")
    if "\x00" in content:
        raise NotLabeled("NUL bytes: binary data, not source text")
    try:
        with time_limit(time_limit_s):
            return label_file(content, path, language, max_chars)
    except _OutOfTime:
        raise NotLabeled(f"gave up after the time limit of {time_limit_s:g} s per file") from None
