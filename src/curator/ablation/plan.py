"""The settings of one ablation, kept in `<out>/plan.json`, and the check that a re-run does not mix settings.

A setting left out of a re-run is read from plan.json (so `--stage train --out OUT` needs nothing else); a
setting given that differs from the recorded one, where it would change a result, is refused. The corpus and
the classifier are compared by content (a fingerprint of their files), never by path, so the train stage may run
on another machine with the corpus elsewhere, or without it. The classifier may be given late: a prepare stage
run without `--model` records none, and a later one with `--model` fills it in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class Plan:
    classifier_where: dict[str, str]  # arm name -> filter.py expression
    heuristic_min_quality: int  # 0: no heuristic arm
    junk_rules_arm: bool
    preset: str  # the LM (lm.PRESETS); its vocabulary is the tokenizer's
    subset_tokens: int | None  # None: the smallest arm's kept tokens
    tokenizer_chars: int
    train_tokens: int
    seeds: list[int]
    data_seed: int = 0
    corpus: str | None = None  # as given, for the reader; compared by corpus_fingerprint
    corpus_fingerprint: str | None = None
    model: str | None = None  # as given; compared by model_fingerprint
    model_fingerprint: str | None = None
    mbpp: str | None = None
    eval_files_per_language: int | None = None
    score_args: list[str] = field(default_factory=list)

    def arms(self) -> list[str]:
        out = ["random"] + [f"classifier_{k}" for k in self.classifier_where]
        if self.junk_rules_arm:
            out.append("junk_rules")
        if self.heuristic_min_quality:
            out.append(f"heuristic_q{self.heuristic_min_quality}")
        return out

    def needs_model(self) -> bool:
        return bool(self.classifier_where) or self.junk_rules_arm


DEFAULTS = {
    "classifier_where": {"q2.5": "quality >= 2.5", "q3": "quality >= 3"},
    "heuristic_min_quality": 3,
    "junk_rules_arm": False,
    "preset": "small",
    "subset_tokens": None,
    "tokenizer_chars": 50_000_000,
    "train_tokens": 30_000_000,
    "seeds": [0, 1],
}

# Settings behind the prepare stage's first outputs (scores, heuristic labels, tokenizer): always checked.
PREPARE_KEYS = ("corpus_fingerprint", "model_fingerprint", "preset", "tokenizer_chars", "data_seed")
# Settings that choose the arms' files: checked once the classifier arms are filtered (cache/kept) or the
# subsets chosen, so that the thresholds may still change after the slow CPU steps.
SUBSET_KEYS = ("classifier_where", "heuristic_min_quality", "junk_rules_arm", "subset_tokens")
# Settings of the LM runs: checked once a run has finished.
TRAIN_KEYS = ("train_tokens",)
# Compared only where both sides know them: recorded late (the model) or not given (the train stage's corpus).
LATE_KEYS = ("corpus_fingerprint", "model_fingerprint")


def fingerprint(path: Path, parts: tuple[str, ...] = ()) -> str:
    """A hash of the files under `path` (or of `path`'s bytes), by relative name and content; `parts` limits it
    to those subfolders. Hidden files and folders are left out."""
    h = hashlib.sha256()
    roots = [path / p for p in parts] if parts else [path]
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            rel = p.relative_to(path).as_posix() if p != path else ""
            if any(s.startswith(".") for s in Path(rel).parts):
                continue
            h.update(rel.encode() + b"\0")
            with open(p, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:20]


def model_fingerprint(model: str) -> str:
    """A local model (a .ckpt or an export folder) by content; a Hub id by its name and revision."""
    path = Path(model)
    return fingerprint(path) if path.exists() else f"hub:{model}"


def settle(given: dict, out: Path) -> Plan:
    """The plan for this run: given settings over recorded ones over defaults; SystemExit on a conflict."""
    paths = Paths(out)
    path = out / "plan.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    names = {f.name for f in fields(Plan)}
    values = {**DEFAULTS, **{k: v for k, v in recorded.items() if k in names}}
    values.update({k: v for k, v in given.items() if v is not None})
    checked = PREPARE_KEYS
    if (paths.cache / "kept").exists() or paths.manifest.exists() or paths.runs_done():
        checked += SUBSET_KEYS
    if paths.runs_done():
        checked += TRAIN_KEYS
    diff = sorted(
        k
        for k in checked
        if k in recorded
        and not (k in LATE_KEYS and recorded[k] is None)
        and as_json(recorded[k]) != as_json(values.get(k))
    )
    if diff:
        raise SystemExit(f"error: {out} was made with other settings ({', '.join(diff)}); use another --out")
    return Plan(**values)


def as_json(v):
    return json.loads(json.dumps(v))  # what plan.json would hold: tuples as lists, and so on


def save(plan: Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "plan.json.tmp"
    tmp.write_text(json.dumps(asdict(plan), indent=2) + "\n")
    tmp.replace(out / "plan.json")


def recorded(out: Path) -> dict:
    path = out / "plan.json"
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass(frozen=True)
class Paths:
    """Where each stage leaves what in `--out`.

    plan.json, subsets/<arm>.json, runs/, results.*   small: the settings, the subsets' summaries and the results
    prepared/   what the train stage needs and nothing else (tokenizer, file lists, the files' text, the
                evaluation sets): carried to the GPU machine with plan.json; git-ignored
    cache/      the prepare stage's intermediates (scores, filter outputs, heuristic labels, token counts) and
                the train stage's token streams; git-ignored, never carried
    """

    out: Path

    @property
    def prepared(self) -> Path:
        return self.out / "prepared"

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    @property
    def manifest(self) -> Path:
        return self.prepared / "manifest.json"

    @property
    def tokenizer(self) -> Path:
        return self.prepared / "tokenizer.json"

    @property
    def train_files(self) -> Path:
        return self.prepared / "train_files.parquet"

    @property
    def eval_dir(self) -> Path:
        return self.prepared / "eval"

    def subset_ids(self, arm: str) -> Path:
        return self.prepared / "subsets" / f"{arm}.txt"

    def subset_summary(self, arm: str) -> Path:
        return self.out / "subsets" / f"{arm}.json"

    def stream(self, arm: str) -> Path:
        return self.cache / "streams" / f"{arm}.npy"

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.out / "runs" / arm / f"seed{seed}"

    def runs_done(self) -> bool:
        return any((self.out / "runs").glob("*/seed*/metrics.json"))
