"""Sample N files per language from StarCoderData (Hub streaming) or a local copy, into the corpus layout.

Examples:
    # 25,000 files for each of the 8 languages, streamed from the Hub (needs access to the gated dataset)
    python sample.py --source hub --out data/sampled
    # from a local mirror <root>/<language>/*.parquet, 1,000 per language, another seed
    python sample.py --source /data/starcoderdata --out data/sampled-1k --n 1000 --seed 1
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from curator import labels
from curator.data.corpus import AUTO, CORPUS_FORMATS, FORMAT_HELP, open_corpus
from curator.data.sampling import SampleConfig, sample_corpus

_D = SampleConfig()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the examples' lines kept as written."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Sample files per language into <out>/<language>/part-*.parquet (the corpus layout that\n"
        "label.py reads), with <out>/sample.json recording the settings and what the filters dropped.\n"
        "The sample is a seeded reservoir sample of the files that pass the filters: same source, same seed,\n"
        "same sample.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--source",
        default="hub",
        help="'hub' to stream bigcode/starcoderdata, or a local corpus root <root>/<language>/",
    )
    p.add_argument("--corpus-format", choices=(AUTO, *CORPUS_FORMATS), default=AUTO, help=FORMAT_HELP)
    p.add_argument("--out", type=Path, required=True, help="output corpus root")
    p.add_argument("--n", type=int, default=_D.n_per_language, help="files per language")
    p.add_argument(
        "--languages", nargs="+", default=list(labels.LANGUAGES), help="language folders to sample"
    )
    p.add_argument("--seed", type=int, default=_D.seed, help="seed of the sample (and of the Hub shuffle)")
    p.add_argument("--min-bytes", type=int, default=_D.min_bytes, help="drop files smaller than this (UTF-8)")
    p.add_argument("--max-bytes", type=int, default=_D.max_bytes, help="drop files larger than this (UTF-8)")
    p.add_argument(
        "--max-scan",
        type=int,
        default=None,
        help="rows to read per language (default: all for a local corpus, 8 x --n for the Hub)",
    )
    p.add_argument("--shuffle-buffer", type=int, default=_D.shuffle_buffer, help="Hub stream shuffle buffer")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    unknown = sorted(set(args.languages) - set(labels.LANGUAGES))
    if unknown:
        logging.warning("languages outside the rubric's set %s: %s", labels.LANGUAGES, unknown)
    max_scan = args.max_scan
    if max_scan is None and args.source == "hub":
        max_scan = 8 * args.n  # a shuffled prefix; reading all of StarCoderData would take days
    cfg = SampleConfig(
        n_per_language=args.n,
        languages=tuple(args.languages),
        seed=args.seed,
        min_bytes=args.min_bytes,
        max_bytes=args.max_bytes,
        max_scan=max_scan,
        shuffle_buffer=args.shuffle_buffer,
    )
    source = args.source
    if source != "hub":
        try:
            source = open_corpus(source, args.corpus_format)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    stats = sample_corpus(source, args.out, cfg)
    for language, s in stats.items():
        print(
            f"{language:12s} sampled {s['sampled']:>7,} of {s['scanned']:>9,} read "
            f"(dropped: {s['not_utf8']} not UTF-8, {s['too_small']} small, {s['too_large']} large, "
            f"{s['duplicate']} duplicates)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
