"""From the store to training data: labeled shards per the contract, and a summary of the labels."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa

from curator import labels
from curator.data import shards
from curator.labeling.judge import iter_rows
from curator.labeling.store import write_text_atomic

log = logging.getLogger(__name__)

_SCHEMA = shards.LABELED_SCHEMA


def export_labeled(
    corpus_root, store, out_dir, languages=None, limit=None, judge: dict | None = None
) -> dict:
    """Write `<out>/<split>/<language>.parquet` for every labeled file, then the summary (with `judge`, the
    judge's configuration as it may be written: `JudgeConfig.loggable()`); returns it.

    Rebuilt from the store each time, so the shards always hold exactly the labels there are.
    """
    out_dir = Path(out_dir)
    store.reload()
    by_language: dict[str, list[dict]] = {}
    counts: dict[str, Counter] = {}
    for row in iter_rows(corpus_root, languages, limit):
        lang = row["language"]
        c = counts.setdefault(lang, Counter())
        c["files"] += 1
        rec = store.labels.get(row["id"])
        if rec is None:
            if store.failures[row["id"]]:
                c["failed"] += 1
            else:
                c["unsent"] += 1
            continue
        repo = row.get("max_stars_repo_name") or ""
        by_language.setdefault(lang, []).append(
            {
                "id": row["id"],
                "language": lang,
                "repo": repo,
                "path": row.get("max_stars_repo_path") or "",
                "content": row["content"],
                "quality": rec["quality"],
                "structured_data": rec["structured_data"],
                "content_type": rec["content_type"],
                "labeler": rec["labeler"],
                "split": shards.split_for_repo(repo),
            }
        )
    for lang, rows in by_language.items():
        for split in shards.SPLITS:
            part = [r for r in rows if r["split"] == split]
            path = out_dir / split / f"{lang}.parquet"
            if part:
                table = pa.Table.from_pylist(part, schema=_SCHEMA)
                shards.check_labeled_table(table, str(path))
                shards.write_parquet_atomic(table, path)
            elif path.exists():
                path.unlink()
    summary = summarize(by_language, counts, store)
    if judge is not None:
        summary["judge"] = judge
    write_summary(summary, out_dir)
    print(summary_markdown(summary))
    return summary


def summarize(by_language: dict[str, list[dict]], counts: dict[str, Counter], store) -> dict:
    per_language = {}
    for lang in sorted(counts):
        rows = by_language.get(lang, [])
        per_language[lang] = {
            "files": counts[lang]["files"],
            "labeled": len(rows),
            "failed": counts[lang]["failed"],
            "unsent": counts[lang]["unsent"],
            "splits": {s: sum(r["split"] == s for r in rows) for s in shards.SPLITS},
            labels.QUALITY.name: _dist(rows, labels.QUALITY.name, labels.QUALITY.level_values),
            labels.STRUCTURED_DATA.name: _dist(
                rows, labels.STRUCTURED_DATA.name, labels.STRUCTURED_DATA.level_values
            ),
            "content_type": _dist(rows, "content_type", list(labels.CONTENT_TYPES)),
        }
    totals = {k: sum(v[k] for v in per_language.values()) for k in ("files", "labeled", "failed", "unsent")}
    return {
        "totals": totals,
        "failed_attempts": sum(store.failures.values()),
        "failure_reasons": dict(store.reasons.most_common()),
        "languages": per_language,
    }


def _dist(rows: list[dict], key: str, values: list) -> dict:
    c = Counter(r[key] for r in rows)
    return {str(v): c.get(v, 0) for v in values}


def summary_markdown(summary: dict) -> str:
    langs = summary["languages"]
    t = summary["totals"]
    out = [
        "# Labeling summary",
        "",
        f"{t['labeled']:,} of {t['files']:,} files labeled; {t['failed']:,} failed (no label yet), "
        f"{t['unsent']:,} not sent; {summary['failed_attempts']:,} failed attempts in all.",
        "",
        "| language | files | labeled | failed | unsent | train | val | test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lang, s in langs.items():
        sp = s["splits"]
        out.append(
            f"| {lang} | {s['files']} | {s['labeled']} | {s['failed']} | {s['unsent']} | "
            f"{sp['train']} | {sp['val']} | {sp['test']} |"
        )
    for key in (labels.QUALITY.name, labels.STRUCTURED_DATA.name, "content_type"):
        values = next(iter(langs.values()))[key].keys() if langs else []
        out += [
            "",
            f"## {key}",
            "",
            "| language | " + " | ".join(values) + " |",
            "|---|" + "---|" * len(values),
        ]
        for lang, s in langs.items():
            out.append(f"| {lang} | " + " | ".join(str(s[key][v]) for v in values) + " |")
    if summary["failure_reasons"]:
        out += ["", "## failed attempts by reason", "", "| reason | attempts |", "|---|---|"]
        out += [f"| {reason} | {n} |" for reason, n in summary["failure_reasons"].items()]
    return "\n".join(out) + "\n"


def write_summary(summary: dict, out_dir: Path) -> None:
    write_text_atomic(json.dumps(summary, indent=2), out_dir / "summary.json")
    write_text_atomic(summary_markdown(summary), out_dir / "summary.md")
