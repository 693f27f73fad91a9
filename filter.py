"""Filter a scored corpus by thresholds and token budgets; write the kept files and a report.

    python filter.py --scores scores/sample --out filtered/sample \\
        --where "quality >= 2.5 and structured_data >= 1.5 and content_type != 'generated'" \\
        --where-lang python="quality >= 3.5" --token-budget-lang go=2e6

Expressions name score columns: quality, structured_data, content_type, num_tokens, truncated, language, path,
id, and prob_<class> for one content type's probability; and the file's signals: size_bytes, num_lines,
max_line_length, mean_line_length, alnum_share, alpha_share, non_ascii_share, encoded_share, encoded_longest,
comment_share, compression_ratio, generated_marker, blank. and/or/not, comparisons (chains too), `in [...]` and
+ - * / are allowed. Scores are regression outputs, read clipped to their scales (quality 1-5, structured_data
0-3): `quality >= 2.5` keeps files whose rounded level is 3 or more.
Rows that could not be scored (error set) are always dropped and counted in the report. Files that fail a junk
rule (empty, minified, encoded data, auto-generated, ...: docs/scoring.md lists them) are dropped before the
expression, whatever their scores, and counted per rule; --no-junk-rules keeps them.
--where-lang LANG=EXPR replaces --where for that language. A token budget keeps, per language, the files with
the highest --rank-by score until the next one would pass the budget (after --where).
Output: <out>/<language>/<stem>.parquet (StarCoderData layout, content from --corpus),
<out>/filter_report.md and .json, <out>/plots/<language>.png.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from curator.cli import run


def _pairs(values: list[str], what: str, convert=str) -> dict:
    pairs = {}
    for v in values or []:
        lang, sep, rhs = v.partition("=")
        if not sep or not lang or not rhs:
            raise SystemExit(f"{what} takes LANGUAGE=VALUE, got {v!r}")
        try:
            pairs[lang.strip()] = convert(rhs.strip())
        except ValueError as e:
            raise SystemExit(f"{what} {v!r}: {e}") from None
    return pairs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scores", required=True, help="a folder written by score.py")
    p.add_argument("--out", required=True, help="folder for the kept files and the report")
    p.add_argument(
        "--corpus", help="the scored corpus, for the content (default: the one scores_meta.json names)"
    )
    p.add_argument("--languages", nargs="+", help="only these languages (default: every language scored)")
    p.add_argument("--where", help='keep rows where this holds, e.g. "quality >= 3 and structured_data >= 2"')
    p.add_argument(
        "--where-lang",
        action="append",
        metavar="LANG=EXPR",
        help="an expression for one language (repeatable)",
    )
    p.add_argument("--token-budget", type=float, help="at most this many tokens per language, e.g. 1e9")
    p.add_argument(
        "--token-budget-lang",
        action="append",
        metavar="LANG=TOKENS",
        help="a budget for one language (repeatable)",
    )
    p.add_argument(
        "--rank-by", default="quality", help="score the budget keeps the top of (default: %(default)s)"
    )
    p.add_argument(
        "--report-only", action="store_true", help="write the report and plots, not the kept files"
    )
    p.add_argument(
        "--no-junk-rules",
        action="store_true",
        help="do not drop the files that fail a junk rule (they are dropped by default; see docs/scoring.md)",
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="filter even if some corpus shards have no complete score file (they are left out)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Imported here, after the arguments are parsed: pandas, pyarrow and matplotlib take a second.
    from curator.scoring import outputs
    from curator.scoring.expressions import Expression
    from curator.scoring.filtering import check_complete, corpus_shards, select_language, write_kept
    from curator.scoring.report import language_stats, plot_language, write_report

    scores, out = Path(args.scores), Path(args.out)
    meta = outputs.read_meta(scores)
    content_types = meta["content_types"]
    where_lang = _pairs(args.where_lang, "--where-lang")
    budgets = _pairs(args.token_budget_lang, "--token-budget-lang", float)
    if args.rank_by not in ("quality", "structured_data", "num_tokens"):
        raise SystemExit(f"--rank-by must be quality, structured_data or num_tokens, not {args.rank_by!r}")
    # Check every expression before reading any scores: a typo should cost a second, not a pass over the data.
    for text in [args.where, *where_lang.values()]:
        if text:
            try:
                Expression(text, content_types)
            except ValueError as e:
                raise SystemExit(str(e)) from None
    languages = args.languages or sorted(p.name for p in scores.iterdir() if p.is_dir())
    unknown = sorted((set(where_lang) | set(budgets)) - set(languages))
    if unknown:
        raise SystemExit(
            f"per-language settings for {unknown}, which are not among the scored languages {languages}"
        )
    corpus = args.corpus or meta.get("corpus")
    if not args.report_only and not corpus:
        raise SystemExit("--corpus is needed to write the kept files")

    per_language, plots = {}, {}
    for lang in languages:
        shards = corpus_shards(corpus, lang) if corpus else {}
        problems = check_complete(scores, shards)
        if problems and not args.allow_incomplete:
            raise SystemExit(
                f"{len(problems)} shards of {lang} are not completely scored (finish score.py, or pass "
                "--allow-incomplete):\n  " + "\n  ".join(problems[:20])
            )
        try:
            result = select_language(
                scores,
                lang,
                content_types,
                args.where,
                where_lang,
                budgets.get(lang, args.token_budget),
                args.rank_by,
                junk_rules=not args.no_junk_rules,
            )
        except ValueError as e:
            raise SystemExit(str(e)) from None
        result.notes += [f"not completely scored, left out: {p}" for p in problems]
        if not args.report_only:
            write_kept(result, shards, out)
        plot = out / "plots" / f"{lang}.png"
        plot_language(result, plot)
        plots[lang] = str(plot.relative_to(out))
        per_language[lang] = language_stats(result)
        s = per_language[lang]
        junk_note = f"{s['junk_dropped']} junk" if s["junk_rules"] is not None else "junk rules off"
        logging.info(
            "%s: kept %d of %d files, %d of %d tokens (dropped before the filter: %d errors, %s)",
            lang,
            s["kept_files"],
            s["files"],
            s["kept_tokens"],
            s["tokens"],
            s["errors_dropped"],
            junk_note,
        )
        if s["errors_dropped"]:
            # Never silently: a row that could not be scored is not a file that was judged and rejected.
            logging.warning(
                "%s: %d rows could not be scored and were dropped: %s",
                lang,
                s["errors_dropped"],
                ", ".join(f"{k} ({v})" for k, v in s["errors"].items()),
            )
    settings = {
        "scores": str(scores),
        "corpus": str(corpus),
        "where": args.where,
        "where_lang": where_lang,
        "token_budget": args.token_budget,
        "token_budget_lang": budgets,
        "rank_by": args.rank_by,
        "junk_rules": not args.no_junk_rules,
    }
    write_report(out, settings, per_language, plots)
    logging.info("report: %s", out / "filter_report.md")
    return 0


if __name__ == "__main__":
    # A missing score folder or corpus, an unreadable file: OSError or ValueError, reported in one line.
    sys.exit(run(main, "filter.py", (OSError, ValueError)))
