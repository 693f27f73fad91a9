"""The rules' documentation, rendered from the rules themselves, so it cannot drift from them.

`python -m curator.labeling.heuristic.doc > docs/heuristic_labeler.md` writes it; a test checks that the
committed page equals what this renders.
"""

from __future__ import annotations

from curator.labeling.heuristic.content_type import CONTENT_TYPE_RULES
from curator.labeling.heuristic.labeler import MAX_CHARS, TIME_LIMIT_S
from curator.labeling.heuristic.quality import (
    CONTENT_TYPE_QUALITY,
    QUALITY_CAPS,
    QUALITY_RULES,
    SKIPPED_RULES,
)
from curator.labeling.heuristic.structured import COMMON_SIGNALS, STRUCTURED_SIGNALS, structured_level
from curator.labels import QUALITY


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _signals(signals, kind: str) -> str:
    names = []
    for what, _, weight, k in signals:
        if k == kind:
            names.append(what if weight == 1 else f"{what} (x{weight:g})")
    return "; ".join(names) or "-"


def render() -> str:
    out = [
        "# The heuristic labeler's rules",
        "",
        "<!-- Rendered from the rules by `python -m curator.labeling.heuristic.doc > docs/heuristic_labeler.md`;"
        " do not edit by hand. -->",
        "",
        "`curator.labeling.heuristic` gives all three labels from explicit rules and names every rule that fired"
        " in the row's `label_reasons`. Run it over a corpus with"
        " `python label.py CORPUS --out OUT --labeler heuristic` (or"
        " `python -m curator.labeling.heuristic --corpus CORPUS --out OUT`).",
        "",
        "How a file is labeled (`label_file`): facts are computed once (`facts.compute_facts`: the path's parts;"
        " the code with strings blanked and comments removed by a small lexer per language family; comment"
        " text and lines; for Python the `ast` tree or the syntax error); then the content type, the quality"
        " and the structured-data level, in that order, each from the rules below.",
        "",
        "## content_type",
        "",
        "The first rule that fires, in this order, gives the content type.",
        "",
        "| content_type | rule | fires on |",
        "|---|---|---|",
    ]
    for name, rule in CONTENT_TYPE_RULES:
        out.append(f"| {name} | `{rule.__name__}` | {_cell(rule.doc)} |")
    out.append("| other | fallback | nothing above fired (empty or comment-only files) |")
    out += [
        "",
        "## quality",
        "",
        f"Start from 3, add the delta of every rule that fires, apply the lowest cap of the rules that fired,"
        f" clip to {QUALITY.lo}..{QUALITY.hi}.",
        "",
        "| rule | delta | fires on | not applied to |",
        "|---|---|---|---|",
    ]
    for rule in QUALITY_RULES:
        delta = rule.delta + (f" (cap {QUALITY_CAPS[rule]})" if rule in QUALITY_CAPS else "")
        skipped = ", ".join(ct for ct, rules in SKIPPED_RULES.items() if rule in rules) or "-"
        out.append(f"| `{rule.__name__}` | {delta} | {_cell(rule.doc)} | {skipped} |")
    for content_type, delta in CONTENT_TYPE_QUALITY.items():
        out.append(
            f"| content type | {delta:+d} | a {content_type} file: little hand-written code to learn from | - |"
        )
    out += [
        "",
        "## structured_data",
        "",
        "Named signals of definitions (`def`: a schema or data model) and uses (`use`: reading, writing,"
        " sending or serving structured data) are counted in the code without comments (for SQL, without"
        " strings either) and weighted (a weight other than 1 is shown as xN).",
        f"`structured_level`: {_cell(structured_level.doc)}.",
        "",
        "| language | definitions | uses |",
        "|---|---|---|",
    ]
    for language, signals in STRUCTURED_SIGNALS.items():
        every = signals + (COMMON_SIGNALS if language != "sql" else [])
        out.append(f"| {language} | {_cell(_signals(every, 'def'))} | {_cell(_signals(every, 'use'))} |")
    out += [
        "",
        "## Bounds",
        "",
        f"A file over {MAX_CHARS:,} characters is analysed on its head (cut at a line end where there is one),"
        " and the reasons say so. A file gets no label, but a line with the reason in `<out>/errors.jsonl`,"
        f" when its content is null, when it holds NUL bytes (binary data), or when its labeling takes over"
        f" {TIME_LIMIT_S:g} s (`--time-limit` of `python -m curator.labeling.heuristic`).",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
