"""Tokenizing whole files against their heads (what curator does): time on one core, and identical model input.

    TOKENIZERS_PARALLELISM=false python experiments/gpu_throughput/tokenize_heads.py [--tokenizer minilm]

Reads every file of data/sample, tokenizes it with truncation to max_length whole and cut to a head of
HEAD_CHARS_PER_TOKEN x max_length characters (through `curator.data.inputs.InputEncoder`, which doubles heads
that hold too few tokens),
and prints both times and how many files got the same token ids.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow.parquet as pq

from curator.data.inputs import HEAD_CHARS_PER_TOKEN, InputEncoder, build_tokenizer

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default="minilm", help="a tokenizer name or path (default: %(default)s)")
    p.add_argument("--max-lengths", type=int, nargs="+", default=[512, 1024])
    args = p.parse_args()
    texts = []
    for f in sorted((REPO / "data" / "sample").glob("*/*.parquet")):
        texts += pq.read_table(f, columns=["content"]).column("content").to_pylist()
    tok = build_tokenizer(args.tokenizer)
    print(
        f"{len(texts)} files, {sum(map(len, texts)) / 1e6:.1f}M characters, head = {HEAD_CHARS_PER_TOKEN} x max_length"
    )
    print("| max_length | whole files (s) | heads (s) | speed-up | identical model input |")
    print("|---:|---:|---:|---:|---:|")
    for L in args.max_lengths:
        t = time.perf_counter()
        whole = tok(texts, truncation=True, max_length=L)["input_ids"]
        t_whole = time.perf_counter() - t
        t = time.perf_counter()
        heads = [x.ids for x in InputEncoder(tok, L).encode(texts)]
        t_heads = time.perf_counter() - t
        same = sum(a == b for a, b in zip(whole, heads, strict=True))
        print(f"| {L} | {t_whole:.2f} | {t_heads:.2f} | {t_whole / t_heads:.1f}x | {same} of {len(texts)} |")


if __name__ == "__main__":
    main()
