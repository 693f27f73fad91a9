"""The rubric: the one source of truth for label names, level edges and their definitions.

The LLM labeler's prompt, the heuristic labeler, the gold set, the model heads, the metrics and the docs all
read these definitions; nothing else spells out a label name or a level range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANGUAGES: tuple[str, ...] = ("python", "javascript", "typescript", "java", "go", "rust", "sql", "shell")


@dataclass(frozen=True)
class OrdinalHead:
    """A head scored on an integer scale and trained as regression."""

    name: str
    lo: int
    hi: int
    question: str
    levels: dict[int, str]

    @property
    def level_values(self) -> list[int]:
        return list(range(self.lo, self.hi + 1))

    def to_levels(self, values):
        """Round half up and clip into [lo, hi]: how a regression output becomes a level.

        np.round rounds half to even (2.5 -> 2, 3.5 -> 4); a level edge must not depend on parity.
        """
        return np.clip(np.floor(np.asarray(values, dtype=np.float64) + 0.5), self.lo, self.hi).astype(
            np.int64
        )


QUALITY = OrdinalHead(
    name="quality",
    lo=1,
    hi=5,
    question="How good is this file as code to learn from?",
    levels={
        1: "Broken or gibberish: does not parse or run, truncated mid-construct, garbled, minified or obfuscated "
        "beyond reading, or mostly noise (binary dumps, encoding debris, boilerplate with no content).",
        2: "Functional but poor: probably works, but hard to learn from: no structure, copy-pasted blocks, "
        "magic numbers, misleading or meaningless names, dead or commented-out code, no error handling.",
        3: "Decent: ordinary working code with reasonable names and structure; some rough edges, "
        "sparse comments, or little that is instructive beyond the routine.",
        4: "Good: clear, idiomatic and well organised; meaningful names, sensible decomposition, error handling "
        "where it matters, comments or docstrings that explain intent.",
        5: "Excellent: exemplary code worth imitating: idiomatic and well-tested design, precise documentation, "
        "careful handling of edge cases, and teaches something about the language or the problem.",
    },
)

STRUCTURED_DATA = OrdinalHead(
    name="structured_data",
    lo=0,
    hi=3,
    question="How much is this file about structured data: APIs, schemas, serialization, data formats?",
    levels={
        0: "None: no structured-data work (pure algorithms, UI logic, control flow, text processing).",
        1: "Minor: incidental use, such as reading one JSON config value or a single small struct or record type.",
        2: "Significant: a substantial part of the file defines or handles structured data: request/response "
        "handling, (de)serialization, data models, queries, schema-shaped literals.",
        3: "Primary focus: the file exists for structured data: an API client or server definition, a schema "
        "(SQL DDL, JSON Schema, protobuf-like types, ORM models), a serializer or parser of a data format.",
    },
)

# Order matters: it is the class index of the content_type head for the full label set.
CONTENT_TYPES: dict[str, str] = {
    "library": "Reusable code meant to be imported by other code: modules, packages, classes and functions "
    "with an API.",
    "application": "Code of a runnable program or service: entry points, request handlers, UI, business logic "
    "wired together.",
    "test": "Tests: unit, integration or end-to-end tests, fixtures and test helpers.",
    "config": "Configuration and build files: settings, manifests, build scripts and CI definitions.",
    "tutorial": "Teaching material: examples, demos, exercises and heavily explained code written to show "
    "how something is done.",
    "data": "Mostly data expressed as code: large literals, tables, fixtures, seed data, lookup tables, "
    "SQL inserts.",
    "generated": "Produced by a tool rather than written by a person: protobuf/ORM/parser output, "
    "transpiled or minified bundles, files marked 'auto-generated, do not edit'.",
    "script": "A short standalone script for a one-off or operational task: automation, glue, data munging, "
    "install or deploy steps.",
    "other": "Anything that fits none of the above.",
}


@dataclass(frozen=True)
class LabelSet:
    """A set of content-type classes the classifier predicts, and how the full classes map onto it."""

    name: str
    classes: tuple[str, ...]
    mapping: dict[str, str]  # full content type -> class of this set

    def index(self, full_content_type: str) -> int:
        """Class index for a label written with the full (9-class) names."""
        return self.classes.index(self.mapping[full_content_type])


LABEL_SETS: dict[str, LabelSet] = {
    "full": LabelSet("full", tuple(CONTENT_TYPES), {c: c for c in CONTENT_TYPES}),
    # Five classes for a curation decision that only asks "is this hand-written program code, and of what
    # kind": library, application, script and tutorial code all teach a model to write programs; config and
    # data files are both declarative content; tests, generated code and the rest stay apart because
    # filters treat them differently.
    "coarse": LabelSet(
        "coarse",
        ("code", "test", "config_or_data", "generated", "other"),
        {
            "library": "code",
            "application": "code",
            "script": "code",
            "tutorial": "code",
            "test": "test",
            "config": "config_or_data",
            "data": "config_or_data",
            "generated": "generated",
            "other": "other",
        },
    ),
}

ORDINAL_HEADS: dict[str, OrdinalHead] = {QUALITY.name: QUALITY, STRUCTURED_DATA.name: STRUCTURED_DATA}


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}; known: {sorted(LABEL_SETS)}") from None


def validate_labels(quality, structured_data, content_type) -> list[str]:
    """Reasons why a (quality, structured_data, content_type) triple is not a valid label; empty if valid."""
    problems = []
    for head, value in ((QUALITY, quality), (STRUCTURED_DATA, structured_data)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            problems.append(f"{head.name} must be an integer, got {value!r}")
        elif not head.lo <= value <= head.hi:
            problems.append(f"{head.name} must be in {head.lo}-{head.hi}, got {value}")
    if content_type not in CONTENT_TYPES:
        problems.append(f"content_type must be one of {list(CONTENT_TYPES)}, got {content_type!r}")
    return problems


def rubric_markdown() -> str:
    """The rubric as Markdown: the text an LLM judge reads and the docs show."""
    lines = ["# Rubric", ""]
    for head in (QUALITY, STRUCTURED_DATA):
        lines += [f"## {head.name} ({head.lo}-{head.hi})", "", head.question, ""]
        lines += [f"- **{level}**: {text}" for level, text in head.levels.items()]
        lines.append("")
    lines += ["## content_type (one of)", "", "What kind of file is this?", ""]
    lines += [f"- **{name}**: {text}" for name, text in CONTENT_TYPES.items()]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m curator.labels > docs/rubric.md
    print(
        "<!-- Written by: python -m curator.labels > docs/rubric.md  (from src/curator/labels.py; edit there) -->"
    )
    print(rubric_markdown(), end="")
