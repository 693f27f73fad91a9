"""Label a corpus with an LLM judge (OpenAI Batch API or any OpenAI-compatible server) or the heuristic labeler.

Examples:
    # estimate tokens and cost only
    python label.py data/sampled --out data/labeled --dry-run
    # the Batch API (half price, up to 24 h); re-run the same command to resume or collect
    OPENAI_API_KEY=... python label.py data/sampled --out data/labeled --mode batch --model gpt-5-nano
    # an open-weight judge on a local vLLM server
    python label.py data/sampled --out data/labeled --mode online --model Qwen/Qwen2.5-Coder-32B-Instruct \\
        --base-url http://localhost:8000/v1 --concurrency 64 --rps 0 --yes
    # the transparent heuristic labeler, offline
    python label.py data/sampled --out data/labeled-heuristic --labeler heuristic
    # submit batches and return; each later run collects what ended and submits what is left
    python label.py data/sampled --out data/labeled --mode batch --no-wait --yes
    # after fixing what made files fail (a wrong --base-url, say): give them their attempts again
    python label.py data/sampled --out data/labeled --mode online --base-url http://localhost:8000/v1 \\
        --retry-failed --yes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from curator.data.corpus import AUTO, CORPUS_FORMATS, FORMAT_HELP, corpus_files, open_corpus
from curator.labeling import cost
from curator.labeling.heuristic.corpus import format_summary, label_corpus_heuristic
from curator.labeling.judge import JudgeConfig, JudgeError
from curator.labeling.llm import label_corpus_llm

log = logging.getLogger("label")

_J = JudgeConfig()
_P = cost.Prices()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None: an option without a default says in its help what happens."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Label a corpus (StarCoderData layout, e.g. the output of sample.py) for training. "
        "Writes <out>/<split>/<language>.parquet and <out>/summary.{md,json}; keeps its resumable state "
        "in <out>/work/, so running the same command again skips what is labeled and retries what failed "
        "(up to --max-retries; --retry-failed for files whose attempts are used up). Ctrl-C stops; the "
        "same command resumes.",
        epilog="The API key is read from $OPENAI_API_KEY (or the variable named by --api-key-env), never "
        "from a flag, and is never written anywhere. The base URL defaults to $OPENAI_BASE_URL.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("corpus", type=Path, help="corpus root: <corpus>/<language>/*.parquet or *.jsonl")
    p.add_argument("--corpus-format", choices=(AUTO, *CORPUS_FORMATS), default=AUTO, help=FORMAT_HELP)
    p.add_argument("--out", type=Path, required=True, help="output folder for labeled shards and state")
    p.add_argument(
        "--config",
        type=Path,
        help="JSON or YAML file of option defaults (keys as the long "
        "option names with _ for -, e.g. {model: gpt-5-nano, yes: true}); flags override it",
    )
    p.add_argument(
        "--labeler",
        choices=("llm", "heuristic"),
        default="llm",
        help="llm: an LLM judge; heuristic: curator.labeling.heuristic, offline and free",
    )
    p.add_argument(
        "--mode",
        choices=("batch", "online"),
        default="batch",
        help="batch: OpenAI Batch API (discounted, asynchronous); online: concurrent requests to "
        "any OpenAI-compatible server (vLLM, TGI, llama.cpp, OpenAI)",
    )
    p.add_argument("--languages", nargs="+", help="label only these language folders")
    p.add_argument("--limit", type=int, help="label at most this many files per language")

    j = p.add_argument_group("judge")
    j.add_argument("--model", default=_J.model, help="model name; also recorded as the labeler of every row")
    j.add_argument(
        "--base-url",
        default=None,
        help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1 "
        "(default: $OPENAI_BASE_URL, else api.openai.com)",
    )
    j.add_argument("--api-key-env", default=_J.api_key_env, help="environment variable holding the API key")
    j.add_argument(
        "--max-chars",
        type=int,
        default=_J.max_chars,
        help="cut each file to this many characters; the prompt says where it was cut",
    )
    j.add_argument(
        "--max-retries",
        type=int,
        default=_J.max_retries,
        help="retries per file after a failed attempt (HTTP error, bad answer); a file that "
        "failed more often is left out, unless --retry-failed",
    )
    j.add_argument(
        "--retry-failed",
        action="store_true",
        help="give files whose attempts earlier runs used up --max-retries + 1 attempts again "
        "(after fixing what made them fail: a wrong --base-url, a server that was down)",
    )
    j.add_argument("--timeout", type=float, default=_J.timeout, help="seconds per request")
    j.add_argument("--temperature", type=float, help="sampling temperature (not sent unless given)")
    j.add_argument(
        "--reasoning-effort",
        help="reasoning effort for reasoning models, e.g. minimal or low "
        "(not sent unless given; lowers the output tokens billed)",
    )
    j.add_argument("--max-completion-tokens", type=int, help="cap on output tokens (not sent unless given)")

    o = p.add_argument_group("online mode")
    o.add_argument("--concurrency", type=int, default=_J.concurrency, help="requests in flight at once")
    o.add_argument("--rps", type=float, default=_J.rps, help="requests per second at most; 0: no limit")
    o.add_argument(
        "--backoff-base",
        type=float,
        default=_J.backoff_base,
        help="seconds before the first retry; doubles each retry (with jitter)",
    )
    o.add_argument("--backoff-max", type=float, default=_J.backoff_max, help="longest wait between retries")

    b = p.add_argument_group("batch mode")
    b.add_argument(
        "--batch-max-requests",
        type=int,
        default=_J.batch_max_requests,
        help="requests per batch file (the API allows 50,000)",
    )
    b.add_argument(
        "--batch-max-bytes",
        type=int,
        default=_J.batch_max_bytes,
        help="bytes per batch file (the API allows 200 MB)",
    )
    b.add_argument(
        "--poll-interval", type=float, default=_J.poll_interval, help="seconds between status polls"
    )
    b.add_argument(
        "--no-wait",
        action="store_true",
        help="collect the batches that ended, submit what is left, and exit without waiting; run again to "
        "collect the rest",
    )
    b.add_argument(
        "--max-rounds",
        type=int,
        default=_J.max_rounds,
        help="rounds of submit, wait, collect and resubmit what failed",
    )

    c = p.add_argument_group("cost")
    c.add_argument(
        "--price-input",
        type=float,
        help="USD per 1M input tokens (default: the list price of --model, if it is an OpenAI model "
        f"in the built-in table: {', '.join(cost.LIST_PRICES)})",
    )
    c.add_argument(
        "--price-output", type=float, help="USD per 1M output tokens (default: the list price of --model)"
    )
    c.add_argument(
        "--batch-discount",
        type=float,
        default=_P.batch_discount,
        help="fraction of the price the Batch API takes off",
    )
    c.add_argument(
        "--output-tokens",
        type=int,
        default=_P.output_tokens_per_request,
        help="expected output tokens per file, hidden reasoning included",
    )
    c.add_argument("--yes", "-y", action="store_true", help="send without asking for confirmation")
    c.add_argument("--dry-run", action="store_true", help="print the token and cost estimate, send nothing")

    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def _config_defaults(path: Path) -> dict:
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    # YAML 1.1 reads a bare `yes:` key as the boolean True; it can only mean the --yes option here.
    return {("yes" if k is True else str(k)).replace("-", "_"): v for k, v in data.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        defaults = _config_defaults(pre.config)
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(defaults) - known)
        if unknown:
            parser.error(f"unknown keys in {pre.config}: {unknown}")
        if defaults.pop("api_key", None):
            parser.error("the config may not hold the API key; put it in $OPENAI_API_KEY")
        parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def judge_config(args: argparse.Namespace) -> JudgeConfig:
    prices = cost.prices_for(
        args.model, args.price_input, args.price_output, args.batch_discount, args.output_tokens
    )
    fields = {f.name for f in dataclasses.fields(JudgeConfig)} - {"prices", "wait"}
    return JudgeConfig(**{k: getattr(args, k) for k in fields}, wait=not args.no_wait, prices=prices)


def run_heuristic(args: argparse.Namespace) -> int:
    summary = label_corpus_heuristic(args.corpus, args.out, languages=args.languages, limit=args.limit)
    print(format_summary(summary))
    print(f"wrote {len(summary['files'])} shards under {args.out}")
    if summary["rows"] == 0 and summary["errors"]:
        print(f"error: no file could be labeled; see {args.out / 'errors.jsonl'}", file=sys.stderr)
        return 1
    return 0


def run_llm(args: argparse.Namespace) -> int:
    cfg = judge_config(args)
    if cfg.max_chars < 1:
        print("error: --max-chars must be positive", file=sys.stderr)
        return 2
    log.info(
        "labeling %s -> %s with %s (%s mode), max %d chars per file",
        args.corpus,
        args.out,
        cfg.model,
        args.mode,
        cfg.max_chars,
    )
    try:
        label_corpus_llm(
            args.corpus,
            args.out,
            cfg,
            mode=args.mode,
            yes=args.yes,
            dry_run=args.dry_run,
            languages=args.languages,
            limit=args.limit,
        )
    except cost.NotConfirmed as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except JudgeError as e:  # a missing or refused key, no server, every file failed: one line, no key
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.corpus = open_corpus(args.corpus, args.corpus_format)  # the layout, once, for every reader
        corpus_files(args.corpus, args.languages)  # before anything is written: a wrong path writes nothing
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return run_heuristic(args) if args.labeler == "heuristic" else run_llm(args)
    except KeyboardInterrupt:
        # Every label that arrived is on disk (online: appended as it came; batch: the manifest).
        print(
            f"\ninterrupted; what was labeled is kept in {args.out}. Run the same command again to resume.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
