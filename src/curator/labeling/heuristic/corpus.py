"""Label a StarCoderData-layout corpus with the heuristic labeler and write labeled shards.

Layout written: `<out_dir>/<split>/<language>.parquet`, columns `shards.LABELED_COLUMNS` plus `label_reasons`
(the rules that fired), `labeler = "heuristic"`, the split from `shards.split_for_repo(repo)`. A file that gets
no label (null or binary content, over the time limit) is a line of `<out_dir>/errors.jsonl` with the reason;
it is not a parquet file, so that readers of the shards (which take every *.parquet) never see it.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from curator.data import shards
from curator.data.corpus import iter_corpus
from curator.labeling.heuristic.labeler import (
    LABELER_NAME,
    MAX_CHARS,
    TIME_LIMIT_S,
    NotLabeled,
    label_bounded,
)
from curator.labeling.store import write_jsonl_atomic
from curator.labels import CONTENT_TYPES, QUALITY, STRUCTURED_DATA, validate_labels

log = logging.getLogger(__name__)

SCHEMA = shards.LABELED_SCHEMA.append(pa.field("label_reasons", pa.list_(pa.string())))


def label_row(
    row: dict,
    split_fractions: dict[str, float] = shards.DEFAULT_SPLIT_FRACTIONS,
    max_chars: int = MAX_CHARS,
    time_limit_s: float | None = TIME_LIMIT_S,
) -> dict:
    """One corpus row (with `language`) as one labeled-shard row; NotLabeled where the labeler gives up."""
    repo = row.get("max_stars_repo_name") or ""
    path = row.get("max_stars_repo_path") or ""
    try:
        label = label_bounded(row["content"], path, row["language"], max_chars, time_limit_s)
    except NotLabeled:
        raise
    except Exception as e:  # a rule bug must name the file it failed on
        raise RuntimeError(f"heuristic labeler failed on {repo}/{path} (id {row.get('id')})") from e
    problems = validate_labels(label.quality, label.structured_data, label.content_type)
    if problems:
        raise ValueError(f"invalid heuristic label for {repo}/{path}: {problems}")
    return {
        "id": str(row["id"]),
        "language": row["language"],
        "repo": repo,
        "path": path,
        "content": row["content"],
        "quality": label.quality,
        "structured_data": label.structured_data,
        "content_type": label.content_type,
        "labeler": LABELER_NAME,
        "split": shards.split_for_repo(repo, split_fractions),
        "label_reasons": label.reasons,
    }


def _write_language(rows: list[dict], language: str, out_dir: Path) -> list[Path]:
    by_split = defaultdict(list)
    for r in rows:
        by_split[r["split"]].append(r)
    written = []
    for split in shards.SPLITS:
        if by_split[split]:
            path = out_dir / split / f"{language}.parquet"
            table = pa.Table.from_pylist(by_split[split], schema=SCHEMA)
            shards.check_labeled_table(table, str(path))
            shards.write_parquet_atomic(table, path)
            written.append(path)
    return written


def label_corpus_heuristic(
    corpus_root: str | Path,
    out_dir: str | Path,
    split_fractions: dict[str, float] = shards.DEFAULT_SPLIT_FRACTIONS,
    languages: list[str] | None = None,
    limit: int | None = None,
    max_chars: int = MAX_CHARS,
    time_limit_s: float | None = TIME_LIMIT_S,
) -> dict:
    """Label every row of a corpus (at most `limit` per language); write `<out_dir>/<split>/<language>.parquet`
    and `<out_dir>/errors.jsonl`; return a summary.

    Rows are held one language at a time (iter_corpus yields languages in order), which is fine for samples
    of tens of thousands of files; a whole-corpus run should score with the trained model instead.
    """
    out_dir = Path(out_dir)
    summary = {"rows": 0, "errors": [], "seconds": 0.0, "files": [], "stats": defaultdict(Counter)}
    start = time.perf_counter()
    rows: list[dict] = []
    current = None
    bar = tqdm(iter_corpus(corpus_root, languages), desc="heuristic labels", unit="file", mininterval=1.0)
    for row in bar:
        if row["language"] != current and rows:
            summary["files"] += _write_language(rows, current, out_dir)
            rows = []
        current = row["language"]
        stats = summary["stats"][current]
        if limit is not None and stats["rows"] + stats["errors"] >= limit:
            continue
        path = row.get("max_stars_repo_path") or ""
        # The file it is on, for a run that seems stuck; refreshed with the bar, so it costs nothing.
        bar.set_postfix_str(f"{current}/{path}"[-60:], refresh=False)
        size = len(row["content"] or "")
        if size > max_chars:
            log.info(
                "%s/%s: %s characters, analysing the first %s", current, path, f"{size:,}", f"{max_chars:,}"
            )
        try:
            labeled = label_row(row, split_fractions, max_chars, time_limit_s)
        except NotLabeled as e:
            stats["errors"] += 1
            summary["errors"].append(
                {
                    "id": str(row["id"]),
                    "language": current,
                    "repo": row.get("max_stars_repo_name") or "",
                    "path": path,
                    "error": str(e),
                }
            )
            continue
        rows.append(labeled)
        stats["rows"] += 1
        stats[f"split={labeled['split']}"] += 1
        stats[f"content_type={labeled['content_type']}"] += 1
        stats[f"quality={labeled['quality']}"] += 1
        stats[f"structured_data={labeled['structured_data']}"] += 1
        summary["rows"] += 1
    if rows:
        summary["files"] += _write_language(rows, current, out_dir)
    errors_path = out_dir / "errors.jsonl"
    if summary["errors"]:
        write_jsonl_atomic(summary["errors"], errors_path)
    else:
        errors_path.unlink(missing_ok=True)  # from an earlier run: it would describe files labeled now
    summary["seconds"] = time.perf_counter() - start
    return summary


def format_summary(summary: dict) -> str:
    """Distribution tables: content type, quality and structured_data per language, plus totals."""
    stats = summary["stats"]
    total = Counter()
    for counter in stats.values():
        total.update(counter)
    langs = [*sorted(stats), "all"]
    table = {**stats, "all": total}
    groups = [
        ("content_type", list(CONTENT_TYPES)),
        ("quality", QUALITY.level_values),
        ("structured_data", STRUCTURED_DATA.level_values),
        ("split", list(shards.SPLITS)),
    ]
    width = max(len(x) for x in langs) + 2
    out = []
    for head, values in groups:
        out.append(f"\n{head} (% of rows per language)")
        out.append(f"{'':{width}}" + "".join(f"{str(v)[:11]:>12}" for v in values) + f"{'rows':>8}")
        for lang in langs:
            c = table[lang]
            n = max(c["rows"], 1)
            out.append(
                f"{lang:{width}}"
                + "".join(f"{100 * c[f'{head}={v}'] / n:>11.1f}%" for v in values)
                + f"{c['rows']:>8}"
            )
    rate = summary["rows"] / max(summary["seconds"], 1e-9)
    out.append(
        f"\n{summary['rows']} files in {summary['seconds']:.1f}s ({rate:.0f} files/s incl. reading and writing)"
    )
    if summary["errors"]:
        reasons = Counter(e["error"] for e in summary["errors"])
        out.append(f"{len(summary['errors'])} files not labeled (listed in errors.jsonl): {dict(reasons)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m curator.labeling.heuristic",
        description="Label a StarCoderData-layout corpus (<corpus>/<language>/*.parquet|*.jsonl) with the rule-based "
        "heuristic labeler; write labeled shards <out>/<split>/<language>.parquet with the reasons for each label.",
    )
    parser.add_argument("--corpus", required=True, help="corpus root, e.g. data/sample")
    parser.add_argument("--out", required=True, help="output folder, e.g. data/labeled/heuristic")
    parser.add_argument(
        "--languages", nargs="*", default=None, help="only these language folders (default: all)"
    )
    parser.add_argument(
        "--split-fractions",
        nargs=3,
        type=float,
        metavar=("TRAIN", "VAL", "TEST"),
        default=[shards.DEFAULT_SPLIT_FRACTIONS[s] for s in shards.SPLITS],
        help="fractions of repositories per split (default: %(default)s)",
    )
    parser.add_argument(
        "--max-chars",
        type=int,
        default=MAX_CHARS,
        help="analyse at most this many characters of a file, its head (default: %(default)s)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT_S,
        help="seconds per file before giving up on it; 0: no limit (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    fractions = dict(zip(shards.SPLITS, args.split_fractions, strict=True))
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        parser.error(f"split fractions must sum to 1, got {sum(fractions.values())}")
    summary = label_corpus_heuristic(
        args.corpus,
        args.out,
        fractions,
        args.languages,
        max_chars=args.max_chars,
        time_limit_s=args.time_limit or None,
    )
    print(format_summary(summary))
    print(f"wrote {len(summary['files'])} shards under {args.out}")


if __name__ == "__main__":
    main()
