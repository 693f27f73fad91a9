"""Keep files by their scores: threshold expressions, per-language overrides, token budgets; write what is kept.

Per language: rows with an error are dropped (and counted); the junk rules (curator.scoring.junk) drop files
whose signals mark them as junk, whatever their scores (and count them per rule); the language's expression
(--where-lang, else --where) selects among the rest; a token budget then keeps the best of those by a score (quality by default, ties broken
by id) until the next file would pass the budget. Kept files are written in the StarCoderData layout,
`<out>/<language>/<input stem>.parquet` with the corpus's own columns, their content joined back from the corpus
by id. A language is held in memory at a time, scores only (no content), about 200 bytes a file.

Scores are read on their scales: quality is clipped to 1-5 and structured_data to 0-3 (labels.QUALITY and
labels.STRUCTURED_DATA) before anything reads them. The score files keep the regression's raw output, which
can pass either end (a file below level 0 of structured data is at level 0); clipping changes no comparison
with a threshold inside the scale, and makes the report and its histograms read on the scale of the labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.data.corpus import CORPUS_COLUMNS, STARCODERDATA
from curator.data.shards import write_parquet_atomic
from curator.data.signals import SIGNAL_COLUMNS, SIGNAL_FIELDS
from curator.labels import QUALITY, STRUCTURED_DATA
from curator.scoring import junk, outputs
from curator.scoring.expressions import where_for
from curator.scoring.sources import HF_PREFIX, Shard, iter_rows, list_shards, num_rows

log = logging.getLogger(__name__)

READ = ["id", "quality", "structured_data", "content_type", "num_tokens", "truncated", "error", "path"]


@dataclass
class LanguageResult:
    language: str
    scores: pd.DataFrame  # every row, with a `kept` column and the shard stem in `shard`
    where: str | None
    budget: float | None
    budget_cutoff: float | None = None  # lowest rank-by value kept under the budget
    notes: list[str] = field(default_factory=list)
    junk_rules: bool = True  # whether the junk rules were asked for
    junk_counts: dict[str, int] = field(default_factory=dict)  # rows failing each rule
    junk_unchecked: int = 0  # rows without an error that have no signals: the rules could not judge them


def read_language_scores(scores: Path, language: str, with_probs: bool = False) -> pd.DataFrame:
    """A language's score rows, with the signal columns where its files have them (null where they do not),
    and the regression outputs clipped to their scales."""
    frames = []
    for f in sorted((scores / language).glob("*.parquet")):
        # Score files written before the signals existed lack their columns: read what is there.
        present = pq.ParquetFile(f).schema_arrow.names
        columns = READ + [c for c in SIGNAL_COLUMNS if c in present]
        df = pq.read_table(f, columns=columns + (["content_type_probs"] if with_probs else [])).to_pandas()
        df["shard"] = f.stem
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no score files under {scores / language}")
    df = pd.concat(frames, ignore_index=True)
    for head in (QUALITY, STRUCTURED_DATA):
        df[head.name] = df[head.name].clip(head.lo, head.hi)
    for f in SIGNAL_FIELDS:
        if f.name not in df:
            df[f.name] = None
        if pa.types.is_boolean(f.type):
            # A row without signals reads as null; False lets expressions over the column stay boolean, and
            # such rows are told apart by the numeric signals, which stay null (junk.apply_rules).
            df[f.name] = df[f.name].astype("boolean").fillna(False).astype(bool)
        else:
            df[f.name] = pd.to_numeric(df[f.name])
    return df


def keep_within_budget(df: pd.DataFrame, candidates: np.ndarray, budget: float, rank_by: str):
    """Mask of the best candidates by `rank_by` whose tokens add up to at most `budget`; and the cutoff value,
    None unless the budget left a candidate out (a budget that every candidate fits in cut nothing)."""
    pool = df.loc[candidates, [rank_by, "id", "num_tokens"]]
    pool = pool.sort_values([rank_by, "id"], ascending=[False, True], kind="stable")
    # Keep the longest prefix within the budget: a ranking, not a knapsack, so the cutoff is one clean score.
    within = pool["num_tokens"].fillna(0).cumsum().to_numpy() <= budget
    n = int(within.argmin()) if not within.all() else len(within)
    kept = np.zeros(len(df), dtype=bool)
    kept[pool.index[:n]] = True
    return kept, (float(pool[rank_by].iloc[n - 1]) if 0 < n < len(pool) else None)


def select_language(
    scores: Path,
    language: str,
    content_types: list[str],
    where: str | None,
    where_lang: dict[str, str],
    budget: float | None,
    rank_by: str = "quality",
    junk_rules: bool = True,
) -> LanguageResult:
    text, expr = where_for(language, where, where_lang, content_types)
    df = read_language_scores(
        scores, language, with_probs=bool(expr and any(n.startswith("prob_") for n in expr.used))
    )
    ok = df["error"].isna().to_numpy()
    result = LanguageResult(language, df, text, budget, junk_rules=junk_rules)
    without = ok & df[SIGNAL_COLUMNS].isna().any(axis=1).to_numpy()
    used = sorted(set(expr.used) & set(SIGNAL_COLUMNS)) if expr is not None else []
    if used and without.any():
        raise ValueError(
            f"the expression for {language} uses {used}, but {int(without.sum())} of its scored files have "
            "no signal columns (scored by an older score.py): score them again, or leave the signals out"
        )
    selected = ok.copy()
    df["junk"] = False
    if junk_rules:
        found = junk.apply_rules(df, ok)
        df["junk"] = found.junk
        result.junk_counts, result.junk_unchecked = found.counts, found.unchecked
        selected &= ~found.junk
        if found.unchecked:
            message = (
                f"{found.unchecked} of {int(ok.sum())} scored files have no signal columns (scored by an older "
                "score.py): the junk rules could not judge them and did not drop them; score them again"
            )
            log.warning("%s: %s", language, message)
            result.notes.append(message)
    if expr is not None:
        selected &= expr(df)
    if budget is not None:
        selected, result.budget_cutoff = keep_within_budget(df, selected, budget, rank_by)
    df["kept"] = selected
    return result


def corpus_shards(corpus: str | Path, language: str) -> dict[str, Shard]:
    return {s.stem: s for s in list_shards(corpus, [language])}


def check_complete(scores: Path, shards: dict[str, Shard]) -> list[str]:
    """Corpus shards whose score file is missing or short: filtering them would silently drop rows."""
    problems = []
    for shard in shards.values():
        path = outputs.shard_path(scores, shard)
        n = num_rows(shard)
        if not outputs.is_complete(path, n):
            problems.append(f"{shard.uri}: {n} rows, no complete score file at {path}")
    return problems


def read_corpus_table(shard: Shard, ids: set[str]) -> pa.Table:
    """The corpus rows of a shard whose id is in `ids`, with the corpus columns, content as text."""
    wanted = pa.array(sorted(ids), pa.string())
    # Repository rows (The Stack v3) are flattened by iter_rows below; only file rows can be filtered in place.
    if (
        shard.uri.endswith(".parquet")
        and not shard.uri.startswith(HF_PREFIX)
        and shard.format == STARCODERDATA
    ):
        pf = pq.ParquetFile(shard.uri)
        columns = [c for c in CORPUS_COLUMNS if c in pf.schema_arrow.names]
        # A record batch at a time: only the kept rows of a large shard are ever held.
        pieces = [
            b.filter(pc.is_in(pc.cast(b.column("id"), pa.string()), value_set=wanted))
            for b in pf.iter_batches(batch_size=4096, columns=columns)
        ]
        table = pa.Table.from_batches(pieces, schema=pa.schema([pf.schema_arrow.field(c) for c in columns]))
    else:
        rows = (r for r in iter_rows(shard, columns=CORPUS_COLUMNS) if "_error" not in r)
        table = pa.Table.from_pylist([r for r in rows if r["id"] is not None and str(r["id"]) in ids])
    if "content" in table.column_names and pa.types.is_binary(table.schema.field("content").type):
        # Rows that were not valid UTF-8 carry an error and are never kept, so this cast cannot fail.
        table = table.set_column(
            table.schema.get_field_index("content"), "content", pc.cast(table["content"], pa.string())
        )
    return table


def write_kept(result: LanguageResult, shards: dict[str, Shard], out: Path) -> int:
    """Write the kept files of a language, shard by shard; returns the rows written."""
    written = 0
    kept = result.scores[result.scores["kept"]]
    for stem, group in kept.groupby("shard", sort=True):
        if stem not in shards:
            raise FileNotFoundError(
                f"score shard {result.language}/{stem} has no corpus shard to take content from"
            )
        ids = set(group["id"].astype(str))
        table = read_corpus_table(shards[stem], ids)
        if table.num_rows != len(ids):
            raise RuntimeError(
                f"{shards[stem].uri}: {len(ids)} kept ids, {table.num_rows} found in the corpus: "
                "was the corpus changed after scoring?"
            )
        write_parquet_atomic(table, out / result.language / f"{stem}.parquet")
        written += table.num_rows
    return written
