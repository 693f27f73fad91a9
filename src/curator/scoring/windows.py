"""Long files scored as several windows: how their scores combine, and what they cost.

`score.py --max-windows N` turns a file longer than the model's window into up to N model inputs
(`curator.data.inputs.InputEncoder.windows`): its head, then its next tokens a slice at a time, each slice after
the same special tokens and path line as the head. Every window is scored alone; the file's row gets

- `quality`, `structured_data`: the token-weighted mean of the windows' regression outputs;
- `content_type_probs`: the token-weighted mean of the windows' class probabilities (still sums to 1), and
  `content_type` its most probable class;

where a window's weight is the tokens of the file new to it (the head: its tokens less the special tokens; a
later window: its slice of the file, without the repeated path line). A file scored in one window keeps that
window's scores exactly. The cost is the windows' tokens: `estimate_cost` measures it on a sample of the rows
to score before the run, and the run's summary counts what went through the model.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from curator.data.inputs import InputEncoder
from curator.scoring.sources import HF_PREFIX, iter_rows


def combine(scores: np.ndarray, weights) -> np.ndarray:
    """One file's scores from its windows' (windows x (quality, structured_data, class probabilities)): the
    weighted mean of every column, in float64. One window: its scores unchanged."""
    scores = np.asarray(scores)
    if len(scores) == 1:
        return scores[0]
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    return (w[:, None] * scores.astype(np.float64)).sum(0) / w.sum()


@dataclass
class CostEstimate:
    """Tokens through the model per file, on a sample of the rows to score, with the head only and with the
    windows; multiply by the rows to score for the run."""

    files: int  # files sampled (readable ones)
    rows: int  # rows to score in the run
    max_windows: int
    head_tokens: float  # a file's tokens through the model with the head only (special tokens counted)
    window_tokens: float  # the same with up to max_windows windows
    windows: float  # windows a file
    longer_than_head: float  # share of files with tokens beyond the head
    longer_than_windows: float  # share of files with tokens beyond the last window

    @property
    def ratio(self) -> float:
        return self.window_tokens / max(self.head_tokens, 1e-9)

    def describe(self) -> str:
        return (
            f"cost: about {self.rows * self.head_tokens:,.0f} tokens through the model with the head only, "
            f"{self.rows * self.window_tokens:,.0f} with --max-windows {self.max_windows} "
            f"({self.ratio:.2f}x, {self.windows:.2f} windows a file); {self.longer_than_head:.0%} of files are "
            f"longer than one window, {self.longer_than_windows:.0%} longer than {self.max_windows} "
            f"(from {self.files} files sampled of {self.rows:,} to score)"
        )


def estimate_cost(
    parts: list, encoder: InputEncoder, max_windows: int, sample: int = 512
) -> CostEstimate | None:
    """Tokenize up to `sample` rows, taken from the starts of up to 16 parts spread over the plan, both ways.

    Parts streamed from the Hub are not sampled (a part would re-stream its shard); None when nothing could be
    sampled.
    """
    local = [p for p in parts if not p.shard.uri.startswith(HF_PREFIX)]
    if not local:
        return None
    picks = local[:: max(1, len(local) // 16)][:16]
    per_part = math.ceil(sample / len(picks))
    head = window = windows = longer = beyond = files = 0
    for part in picks:
        try:
            rows = list(itertools.islice(iter_rows(part.shard, part.start, part.stop), per_part))
        except Exception:  # the run reports an unreadable part; the estimate does without it
            continue
        inputs = encoder.windows(
            [r.get("content") for r in rows], [r.get("max_stars_repo_path") for r in rows], max_windows
        )
        for wins in inputs:
            if wins[0].error is not None:
                continue
            files += 1
            head += len(wins[0].ids)
            window += sum(len(w.ids) for w in wins)
            windows += len(wins)
            longer += len(wins) > 1 or wins[0].truncated
            beyond += wins[0].truncated
    if not files:
        return None
    return CostEstimate(
        files=files,
        rows=sum(p.num_rows for p in parts),
        max_windows=max_windows,
        head_tokens=head / files,
        window_tokens=window / files,
        windows=windows / files,
        longer_than_head=longer / files,
        longer_than_windows=beyond / files,
    )
