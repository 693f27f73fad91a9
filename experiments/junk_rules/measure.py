"""Signals and junk rules on the real sample: what each rule rejects, and what the signals cost.

    PYTHONPATH=src python experiments/junk_rules/measure.py [--sample data/sample] [--out experiments/junk_rules]

Writes rejected.csv (every sample file some rule rejects: language, path, rules, the signals that decide) and
prints the tables of README.md: rejections per rule and language, files/s on the sample (one process, one core),
and the time of one call on a 5 MB single line, a 100 MB file and 2 M characters of random Unicode.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from curator.data.signals import SIGNAL_COLUMNS, file_signals
from curator.scoring import junk


def read_sample(root: Path) -> pd.DataFrame:
    frames = []
    for f in sorted(root.glob("*/*.parquet")):
        df = pq.read_table(f, columns=["id", "max_stars_repo_path", "content"]).to_pandas()
        df["language"] = f.parent.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True).rename(columns={"max_stars_repo_path": "path"})


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", default="data/sample")
    p.add_argument("--out", default="experiments/junk_rules")
    args = p.parse_args()
    sample = read_sample(Path(args.sample))
    texts = sample["content"].tolist()

    # Throughput: the best of 3 passes over the whole sample, one process.
    file_signals(texts[0])
    seconds = best_of(lambda: [file_signals(t) for t in texts])
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"sample: {len(texts)} files, {mb:.1f} MB: {seconds:.2f} s, {len(texts) / seconds:,.0f} files/s, "
          f"{mb / seconds:.1f} MB/s, {1e6 * seconds / len(texts):.0f} us a file")  # fmt: skip

    # Rejections per rule and language.
    sig = pd.DataFrame([file_signals(t) for t in texts])
    found = junk.apply_rules(sig, np.ones(len(sig), dtype=bool))
    fails = pd.DataFrame({name: expr(sig) for name, expr in junk.RULE_EXPRESSIONS.items()})
    table = fails.groupby(sample["language"]).sum().T
    table["all"] = table.sum(axis=1)
    table.loc["any rule"] = [*(found.junk[sample["language"] == lang].sum() for lang in table.columns[:-1]),
                             found.junk.sum()]  # fmt: skip
    print("| rule | " + " | ".join(table.columns) + " |")
    print("|---|" + "---:|" * len(table.columns))
    for name, row in table.iterrows():
        print(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
    rejected = sample.loc[found.junk, ["language", "path"]].copy()
    rejected["rules"] = [" ".join(fails.columns[fails.loc[i]]) for i in rejected.index]
    rejected = rejected.join(sig.loc[found.junk, SIGNAL_COLUMNS])
    rejected.to_csv(Path(args.out) / "rejected.csv", index=False, float_format="%.4g")

    # Bounded cost: one call on files far larger than the window.
    js = " ".join(
        line.strip()
        for t in sample.loc[sample.language == "javascript", "content"]
        for line in t.splitlines()
    )
    minified = (js * (5_000_000 // len(js) + 1))[:5_000_000]
    everything = "\n".join(texts)
    big = (everything * (100_000_000 // len(everything) + 1))[:100_000_000]
    rng = random.Random(0)
    unicode = "".join(
        chr(rng.choice([rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0xFFFD)])) for _ in range(2_000_000)
    )
    for name, text in (("5 MB single line (sample JavaScript, minified)", minified),
                       ("100 MB file (the sample concatenated)", big),
                       ("2 M characters of random Unicode (6 MB UTF-8)", unicode)):  # fmt: skip
        print(f"{name}: {best_of(lambda t=text: file_signals(t)):.3f} s")


if __name__ == "__main__":
    main()
