"""The whole ablation, step by step, each step's output on disk so that a re-run resumes.

<out>/plan.json             the settings; a re-run with other settings is refused (use another --out)
<out>/scores/               score.py's output over the pool
<out>/kept/<arm>/           filter.py's output for each classifier arm
<out>/heuristic_labels.parquet
<out>/tokenizer.json        the byte-level BPE every arm shares
<out>/pool_tokens.npz       every pool file in LM tokens
<out>/subsets/<arm>.npy     the arm's equal-token training stream (+ .json: files, tokens per language)
<out>/runs/<arm>/seed<k>/metrics.json   one trained LM's evaluation; its presence means done
<out>/results.md|json|png   the table and the plot
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from curator.ablation import evalsets, lm, report, subsets
from curator.data.corpus import iter_corpus

log = logging.getLogger("ablate")


@dataclass
class Plan:
    corpus: str  # harvest root: <corpus>/corpus (the pool) and <corpus>/heldout
    model: str
    out: str
    classifier_where: dict[str, str]
    heuristic_min_quality: int
    junk_rules_arm: bool
    seeds: list[int]
    preset: str
    train_tokens: int
    subset_tokens: int | None  # None: the smallest arm's kept tokens
    mbpp: str | None
    eval_files_per_language: int | None
    tokenizer_chars: int
    data_seed: int = 0
    stop_after: float | None = None  # seconds; no new run starts that would likely end after this
    score_args: list[str] = field(default_factory=list)


def say(msg: str) -> None:
    log.info(msg)


def check_plan(plan: Plan, out: Path) -> None:
    """Write plan.json, or check that the existing one matches (a resume must not mix settings)."""
    path = out / "plan.json"
    # These settings change no result: a resume may differ in them.
    free = {"out", "score_args", "seeds", "mbpp", "eval_files_per_language", "stop_after"}
    now = {k: v for k, v in asdict(plan).items() if k not in free}
    if path.exists():
        before = {k: v for k, v in json.loads(path.read_text()).items() if k not in free}
        diff = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
        if diff:
            raise SystemExit(
                f"error: {out} was made with other settings ({', '.join(diff)}); use another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(plan), indent=2) + "\n")


def load_pool(pool: Path) -> list[dict]:
    rows = [
        {k: r.get(k) for k in ("id", "content", "language", "max_stars_repo_path", "max_stars_repo_name")}
        for r in iter_corpus(pool)
    ]
    rows = [r for r in rows if isinstance(r["content"], str) and r["content"]]
    if not rows:
        raise SystemExit(f"error: no files under {pool} (expected <language>/*.parquet)")
    return rows


def tokenize_pool(rows, tok: Tokenizer, cache: Path) -> list[np.ndarray]:
    """Every pool file in LM tokens, in pool order, cached."""
    if not cache.exists():
        say(f"tokenizing {len(rows):,} pool files")
        ids = lm.encode(tok, [r["content"] for r in rows])
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        flat = np.concatenate([np.asarray(x, dtype=np.uint16) for x in ids])  # vocabularies stay < 65,536
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, flat=flat, lengths=lengths)
        tmp.replace(cache)
    data = np.load(cache)
    bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
    flat = data["flat"]
    if len(bounds) - 1 != len(rows):
        raise SystemExit(f"error: {cache} does not match the pool ({len(bounds) - 1} vs {len(rows)} files)")
    return [flat[bounds[i] : bounds[i + 1]] for i in range(len(rows))]


def arm_kept(plan: Plan, out: Path, repo: Path, rows: list[dict]) -> dict[str, set[str]]:
    """arm -> the pool ids it may draw from."""
    arms: dict[str, set[str]] = {"random": {r["id"] for r in rows}}
    pool = Path(plan.corpus) / "corpus"
    if plan.classifier_where or plan.junk_rules_arm:
        say(f"scoring the pool with {plan.model}")
        subsets.score_pool(repo, plan.model, pool, out / "scores", plan.score_args)
        wheres = {f"classifier_{k}": v for k, v in plan.classifier_where.items()}
        if plan.junk_rules_arm:
            wheres["junk_rules"] = subsets.ALWAYS
        for arm, where in wheres.items():
            arms[arm] = subsets.filter_kept(repo, out / "scores", out / "kept" / arm, where)
    if plan.heuristic_min_quality:
        labels = subsets.heuristic_labels(rows, out / "heuristic_labels.parquet", subsets.default_workers())
        arms[f"heuristic_q{plan.heuristic_min_quality}"] = subsets.heuristic_kept(
            labels, plan.heuristic_min_quality
        )
    return arms


def make_subsets(plan, out, rows, token_ids, arms, eos) -> dict[str, dict]:
    """arm -> its subset's summary; the token streams are written to subsets/<arm>.npy."""
    ids = [r["id"] for r in rows]
    lang_of = {r["id"]: r["language"] for r in rows}
    avail = {arm: subsets.kept_tokens(ids, token_ids, kept) for arm, kept in arms.items()}
    for arm, n in avail.items():
        say(f"arm {arm}: {len(arms[arm]):,} files kept, {n:,} tokens")
        if n == 0:
            raise SystemExit(f"error: arm {arm} keeps no files; loosen its condition")
    n_tokens = min(avail.values())
    if plan.subset_tokens:
        if plan.subset_tokens > n_tokens:
            raise SystemExit(
                f"error: --subset-tokens {plan.subset_tokens:,} > the smallest arm's {n_tokens:,}"
            )
        n_tokens = plan.subset_tokens
    say(f"every arm's subset: {n_tokens:,} tokens")
    folder = out / "subsets"
    folder.mkdir(exist_ok=True)
    summaries = {}
    for arm, kept in arms.items():
        meta = folder / f"{arm}.json"
        if not meta.exists():
            stream, used = subsets.build_subset(ids, token_ids, kept, n_tokens, eos, plan.data_seed)
            np.save(folder / f"{arm}.npy", stream)
            langs = Counter(lang_of[i] for i in used)
            summary = {
                "arm": arm,
                "tokens": int(len(stream)),
                "files": len(used),
                "files_per_language": langs,
            }
            meta.write_text(json.dumps(summary, indent=2) + "\n")
        summaries[arm] = json.loads(meta.read_text())
    return summaries


class OutOfTime(Exception):
    pass


def run(plan: Plan, repo: Path) -> dict:
    started = time.time()
    out = Path(plan.out)
    check_plan(plan, out)
    cfg = lm.PRESETS[plan.preset]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    say(f"device {device}; LM preset {plan.preset}: {cfg}")

    rows = load_pool(Path(plan.corpus) / "corpus")
    say(f"pool: {len(rows):,} files in {len({r['language'] for r in rows})} languages")
    arms = arm_kept(plan, out, repo, rows)

    tok_path = out / "tokenizer.json"
    if not tok_path.exists():
        texts = lm.sample_texts([r["content"] for r in rows], plan.tokenizer_chars, plan.data_seed)
        say(f"training the tokenizer ({cfg.vocab_size:,} tokens) on {len(texts):,} pool files")
        lm.save_tokenizer(lm.train_tokenizer(texts, cfg.vocab_size), tok_path)
    tok = Tokenizer.from_file(str(tok_path))
    eos = tok.token_to_id(lm.EOS)
    token_ids = tokenize_pool(rows, tok, out / "pool_tokens.npz")
    summaries = make_subsets(plan, out, rows, token_ids, arms, eos)

    sets = evalsets.load_all(
        Path(plan.corpus) / "heldout", Path(plan.mbpp) if plan.mbpp else None, plan.eval_files_per_language
    )
    say("evaluation sets: " + ", ".join(f"{k} ({len(v)})" for k, v in sets.items()))
    prepared = {name: lm.prepare_eval(tok, items, cfg.seq_len) for name, items in sets.items()}

    runs, last_seconds = [], 0.0
    todo = [(arm, seed) for arm in arms for seed in plan.seeds]
    for n, (arm, seed) in enumerate(todo, 1):
        run_dir = out / "runs" / arm / f"seed{seed}"
        done = run_dir / "metrics.json"
        if done.exists():
            say(f"[{n}/{len(todo)}] {arm} seed {seed}: done before, skipped")
            runs.append(json.loads(done.read_text()))
            continue
        if plan.stop_after and time.time() - started + last_seconds > plan.stop_after:
            raise OutOfTime(
                f"stopping before {arm} seed {seed} (--stop-after {plan.stop_after:.0f} s); re-run to go on"
            )
        say(f"[{n}/{len(todo)}] {arm} seed {seed}: training on {summaries[arm]['tokens']:,} tokens")
        stream = np.load(out / "subsets" / f"{arm}.npy")
        t0 = time.time()
        model, info = lm.train(
            cfg,
            stream,
            plan.train_tokens,
            seed,
            device,
            lambda msg, a=arm, s=seed: say(f"  {a} seed {s}: {msg}"),
        )
        results = {name: lm.evaluate(model, p, cfg, device) for name, p in prepared.items()}
        metrics = {
            "arm": arm,
            "seed": seed,
            "subset_tokens": summaries[arm]["tokens"],
            "train": info,
            "eval": results,
            "seconds": round(time.time() - t0, 1),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "metrics.tmp"
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        tmp.replace(done)
        he = results["humaneval"]["bits_per_byte"]
        say(f"[{n}/{len(todo)}] {arm} seed {seed}: {info['train_seconds']} s, HumanEval {he:.4f} bits/byte")
        runs.append(metrics)
        last_seconds = time.time() - t0
        del model
    note = None if plan.mbpp else "MBPP: n/a (no package installable here ships it; pass --mbpp mbpp.jsonl)."
    agg = report.write(runs, out, note)
    say(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
    print(report.markdown(agg, note))
    return agg
