"""Score a corpus with a trained curator classifier: a score row for every input file, resumable, multi-GPU.

    python score.py --model logs/train/runs/quickstart/<date>_<time>/checkpoints/epoch_002.ckpt \\
        --corpus data/sample --out scores/sample
    python score.py --model models/curator-minilm --corpus data/sample --out scores/sample  # from export.py

Output: <out>/<language>/<input stem>.parquet, a row per input row in input order, and <out>/scores_meta.json.
Re-running the same command finishes what a killed run left and rewrites nothing that is done.
Many GPUs: --gpus N starts a process per GPU; many machines: torchrun or srun, one process per GPU, or one per
machine with --gpus. Each process takes every WORLD_SIZE-th shard. See docs/scoring.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from curator.cli import check_checkpoint_file, process_age_s, run
from curator.data.corpus import AUTO, CORPUS_FORMATS, FORMAT_HELP, open_corpus
from curator.scoring.launch import RANK_VARS, WORLD_VARS, env_int, score_on_gpus
from curator.scoring.sources import HF_PREFIX

# The runner imports torch and transformers (seconds): main() imports it after the arguments are parsed, so
# that --help and argument errors answer at once.


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="a Lightning checkpoint (.ckpt), a folder made by export.py, or the Hub id of one "
        "(owner/name[@revision], downloaded into the Hub cache)",
    )
    p.add_argument(
        "--corpus",
        required=True,
        help="a StarCoderData-layout folder (<root>/<language>/*.parquet|*.jsonl|*.jsonl.gz), "
        "or hf://bigcode/starcoderdata to stream from the Hub",
    )
    p.add_argument("--corpus-format", choices=(AUTO, *CORPUS_FORMATS), default=AUTO, help=FORMAT_HELP)
    p.add_argument("--out", required=True, help="folder for the score files")
    p.add_argument("--languages", nargs="+", help="only these language folders (default: all)")
    p.add_argument(
        "--tokens-per-batch",
        type=int,
        default=None,
        help="batch size in tokens: real tokens for the packed forward, files x longest file for the padded "
        "one (default: about 1,024 per GiB of GPU memory, a power of two from 16,384 to 131,072; 16,384 on a "
        "CPU); a batch that does not fit in GPU memory is halved",
    )
    p.add_argument(
        "--window",
        type=int,
        default=1024,
        help="files read, then sorted by length, before batching; larger wastes less padding (default: %(default)s)",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="tokenizing processes per GPU; 0 tokenizes in the main process (default: the machine's cores "
        "divided among the GPUs' processes on it, less two each, at most 16)",
    )
    p.add_argument(
        "--rows-per-part",
        type=int,
        default=50_000,
        help="a larger shard is scored in parts of this many rows, each read by one worker (default: %(default)s)",
    )
    p.add_argument(
        "--write-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="write what a part has scored at least this often, so that a killed run loses at most about this "
        "much work per worker; a re-run scores only the rows not yet written (default: %(default)s)",
    )
    p.add_argument(
        "--max-chars",
        type=int,
        default=None,
        help="characters of a file that are tokenized (times --max-windows); the token count of a longer file "
        "is extrapolated (default: 6 x the model's max_length)",
    )
    p.add_argument(
        "--max-windows",
        type=int,
        default=1,
        metavar="N",
        help="score a file longer than the model's max_length as up to N windows of it (the head, then the "
        "next tokens, each after the same path line and special tokens) and write the token-weighted mean of "
        "their scores and class probabilities; a file costs up to N times the head's tokens, and the run logs "
        "the cost measured on a sample before it starts. 1: the head only (default: %(default)s)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (GPU LOCAL_RANK if there is one, else CPU), cpu, cuda:N"
    )
    p.add_argument(
        "--gpus",
        type=int,
        default=1,
        metavar="N",
        help="score on the first N GPUs of this machine, one process each, started by score.py itself (what "
        "torchrun --nproc_per_node N does, without its start-up); with torchrun or srun, one such process per "
        "machine (with --device cpu: N processes on the CPU) (default: %(default)s)",
    )
    p.add_argument(
        "--padded",
        action="store_true",
        help="use the padded forward on a GPU too (default there: packed bf16 for BERT/RoBERTa encoders)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the packed encoder: faster batches for a compile of 5-15 s at start (default: on "
        "a GPU when a process has at least a million files to score, where the saving outweighs the compile; "
        "experiments/gpu_throughput)",
    )
    p.add_argument(
        "--precision",
        choices=("bf16", "fp8"),
        default="bf16",
        help="bf16: the default forward (packed bf16 on a GPU, fp32 on a CPU); fp8: the packed forward with the "
        "transformer layers' matmuls in float8, row-wise scaled (a GPU of compute capability 8.9 or newer: "
        "Ada, Hopper), for speed (experiments/gpu_throughput measures it), its scores slightly off the bf16 "
        "ones; a score folder holds one precision (default: %(default)s; docs/scoring.md)",
    )
    p.add_argument(
        "--exact-gelu",
        action="store_true",
        help="on a GPU, apply the feed-forward's GELU as a kernel of its own, in the exact (erf) form the model "
        "was trained with (default there: the matmul adds the bias and applies GELU in its tanh approximation "
        "on the way out, one pass over the activations fewer; docs/scoring.md gives the speed and the score "
        "differences)",
    )
    p.add_argument(
        "--unfused-add-norm",
        action="store_true",
        help="on a GPU, end each sublayer with PyTorch's residual add and LayerNorm, two kernels (default there: "
        "one Triton kernel for both, which reads the activations once instead of twice; not used with "
        "--compile, which fuses them itself)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch job logs)")
    args = p.parse_args(argv)
    if args.max_windows < 1:
        p.error(f"--max-windows must be at least 1, not {args.max_windows}")
    if args.gpus < 1:
        p.error(f"--gpus must be at least 1, not {args.gpus}")
    if args.gpus > 1 and args.device not in ("auto", "cuda", "cpu"):
        p.error(f"--gpus {args.gpus} gives each process its own GPU: leave out --device {args.device}")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    # One of several processes (--gpus, torchrun, srun) says which in every line: their logs interleave.
    world = env_int(WORLD_VARS, 1)
    who = f"[rank {env_int(RANK_VARS, 0)}] " if world > 1 and args.gpus == 1 else ""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {who}%(message)s")
    if Path(args.model).is_file():
        check_checkpoint_file(args.model)
    corpus = args.corpus
    if not corpus.startswith(HF_PREFIX):
        corpus = open_corpus(corpus, args.corpus_format)  # a missing or ambiguous corpus: one line, exit 1
    if args.gpus > 1:
        # Checked once here rather than N times over in the processes' logs.
        return score_on_gpus(args.gpus, argv, args.device, str(Path(__file__).resolve()))
    from curator.scoring.runner import score_corpus

    imports_s = process_age_s()
    summary = score_corpus(
        args.model,
        corpus,
        args.out,
        languages=args.languages,
        tokens_per_batch=args.tokens_per_batch,
        window=args.window,
        num_workers=args.num_workers,
        rows_per_part=args.rows_per_part,
        write_every_s=args.write_every,
        max_chars=args.max_chars,
        device=args.device,
        progress=not args.no_progress,
        packed=False if args.padded else None,
        compile=args.compile,
        precision=args.precision,
        max_windows=args.max_windows,
        gelu_epilogue=False if args.exact_gelu else None,
        fused_add_norm=False if args.unfused_add_norm else None,
    )
    logging.info(
        "rank %d/%d: %d shards (%d done before), %d files scored in %.1f s: %.1f files/s, %.0f tokens/s%s",
        summary.rank,
        summary.world_size,
        summary.shards,
        summary.shards_done_before,
        summary.rows_scored,
        summary.seconds,
        summary.files_per_s,
        summary.tokens_per_s,
        f" ({summary.forward})" if summary.forward else "",
    )
    if summary.rows_scored:
        logging.info(
            "tokens: %s through the model, %.0f a file; %s windows, %.2f a file (--max-windows %d); "
            "%s files scored in more than one window",
            f"{summary.tokens:,}",
            summary.tokens / summary.rows_scored,
            f"{summary.windows:,}",
            summary.windows_per_file,
            args.max_windows,
            f"{summary.multi_window_files:,}",
        )
        logging.info(
            "time: %.1f s to the first batch, %.1f s waiting for input, %.1f s launching the model, "
            "%.1f s waiting for the model, %.1f s placing scores, %.1f s writing, %.1f s other%s",
            summary.first_batch_s or 0.0,
            summary.input_wait_s,
            summary.launch_s,
            summary.gpu_wait_s,
            summary.place_s,
            summary.write_s,
            summary.other_s,
            "; input was the limit: try more --num-workers"
            if summary.input_wait_s > 0.2 * summary.seconds and summary.input_wait_s > summary.gpu_wait_s
            else "",
        )
    if summary.startup:
        # Where the time before the loop went, from the process's start: what a short run pays on top.
        stages = {"python and imports": imports_s, **summary.startup}
        logging.info(
            "start-up: %s",
            ", ".join(f"{v:.1f} s {k}" for k, v in stages.items() if v is not None),
        )
    if summary.failed:
        logging.error("%d part(s) could not be scored:", len(summary.failed))
        for reason in summary.failed:
            logging.error("  %s", reason)
        # A retry cannot mend a file: say which failures it helps with.
        logging.error(
            "a corpus file that cannot be read (corrupt, truncated, not parquet or JSONL) must be fixed or "
            "removed; for a cause that has passed (a full disk, a lost mount, out of memory), run the same "
            "command again: it scores only the parts that are missing"
        )
        return 1
    return 0


if __name__ == "__main__":
    # A missing or empty corpus, an unreadable model: OSError or ValueError before anything is written.
    sys.exit(run(main, "score.py", (OSError, ValueError)))
