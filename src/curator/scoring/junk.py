"""Junk rules: named conditions over a file's signals (curator.data.signals) that drop it whatever the model says.

The classifier reads the head of a file; it cannot see that the rest is one 5 MB line, a data blob or nothing at
all, and it scores an empty file like any other. StarCoder's and The Stack's preprocessing dropped such files
with cheap rules before any model; `filter.py` applies these by default, before the user's expression, and
reports how many rows each rule dropped (`--no-junk-rules` turns them off).

Each rule is an expression of the filter's own language (curator.scoring.expressions) over the signal columns,
true for junk, so that a rule reads exactly as a user would write it in `--where`. The thresholds and what each
one rejects of the 2,503 real files of data/sample are in experiments/junk_rules/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from curator.data.signals import SIGNAL_COLUMNS, SIGNAL_FIELDS
from curator.scoring.expressions import Expression


@dataclass(frozen=True)
class Rule:
    name: str
    junk_if: str  # an expression over the signal columns, true for junk
    why: str


RULES = (
    Rule("blank", "blank", "empty or whitespace only: nothing to learn"),
    Rule(
        "too_many_lines",
        "num_lines > 100000",
        "StarCoder2: files of more than 100,000 lines are data or generated code",
    ),
    Rule(
        "long_line",
        "max_line_length > 1000",
        "Codex, The Stack, StarCoder: a line over 1000 characters is minified code or embedded data",
    ),
    Rule(
        "long_mean_line",
        "mean_line_length > 100",
        "Codex, The Stack, StarCoder: lines of over 100 characters on average are minified or generated",
    ),
    Rule(
        "low_alnum",
        "alnum_share < 0.25",
        "The Stack, StarCoder: under a quarter letters and digits is symbol soup, binary or ASCII art",
    ),
    Rule(
        "low_alpha",
        "alpha_share < 0.25",
        "StarCoder2: under a quarter letters is a numeric table or a hex dump",
    ),
    Rule(
        "non_ascii",
        "non_ascii_share > 0.5",
        "mostly non-ASCII text is not source code in these languages (random Unicode, mojibake, prose)",
    ),
    Rule(
        "encoded_data",
        "encoded_share > 0.5",
        "StarCoder2: more than half the file is base64, hex bytes or \\u escapes",
    ),
    Rule(
        "encoded_blob",
        "encoded_longest > 1024",
        "StarCoder2: one base64 / hex / \\u run longer than 1024 characters is an embedded blob",
    ),
    Rule(
        "generated",
        "generated_marker",
        "StarCoder2: an 'auto-generated' / 'do not edit' / '@generated' marker in the first 5 lines",
    ),
    Rule(
        "comment_only",
        "comment_share >= 1",
        "every non-blank line is a comment: no code to learn (SantaCoder's comment-ratio filter, at its extreme)",
    ),
    Rule(
        "repetitive",
        "compression_ratio < 0.05",
        "zlib shrinks the file 20 times: extreme repetition (the seed's check, at half its 0.10 threshold, "
        "which rejects 18 real sample files)",
    ),
)
RULE_NAMES = tuple(r.name for r in RULES)
RULE_EXPRESSIONS = {r.name: Expression(r.junk_if, ()) for r in RULES}
_BOOL_COLUMNS = [f.name for f in SIGNAL_FIELDS if pa.types.is_boolean(f.type)]


@dataclass
class JunkResult:
    junk: np.ndarray  # True where a row fails at least one rule
    counts: dict[str, int]  # rows failing each rule (a row may fail several)
    unchecked: int  # rows without an error whose signal columns are missing or null: the rules skipped them


def has_signals(columns) -> bool:
    return all(c in columns for c in SIGNAL_COLUMNS)


def apply_rules(df: pd.DataFrame, ok: np.ndarray) -> JunkResult:
    """Evaluate every rule on the rows marked ok (no error) that have signals; others are never junk here."""
    junk = np.zeros(len(df), dtype=bool)
    counts = dict.fromkeys(RULE_NAMES, 0)
    if not has_signals(df.columns):
        return JunkResult(junk, counts, int(ok.sum()))
    checked = ok & df[SIGNAL_COLUMNS].notna().all(axis=1).to_numpy()
    rows = df.loc[checked, SIGNAL_COLUMNS]
    # Parquet bool columns that held a null come back as object; the checked rows have none.
    rows = rows.astype(dict.fromkeys(_BOOL_COLUMNS, bool))
    for name, expr in RULE_EXPRESSIONS.items():
        fails = expr(rows)
        counts[name] = int(fails.sum())
        junk[np.flatnonzero(checked)[fails]] = True
    return JunkResult(junk, counts, int((ok & ~checked).sum()))


def describe_rules() -> str:
    """The rules as a Markdown table (docs, --help)."""
    lines = ["| rule | junk if | why |", "|---|---|---|"]
    lines += [f"| `{r.name}` | `{r.junk_if}` | {r.why} |" for r in RULES]
    return "\n".join(lines)
