"""Error analysis of a trained classifier on a labeled split: predictions as a table, and the numbers the
notebook `notebooks/error_analysis.ipynb` plots.

`predict_split` runs a checkpoint (or an exported folder) over every file of a split and returns one row per
file. Every other function takes such a DataFrame and returns a small DataFrame, so a test can check it on a
hand-made table. The F1 numbers come from `curator.tasks.metrics`, the level edges from `curator.labels`.

Columns of a prediction table:
- `id`, `language`, `repo`, `path`, `content`: the file, as in the labeled shards.
- `quality`, `structured_data`, `content_type`: the labels; `content_type` in the model's label set.
- `pred_quality`, `pred_structured_data`: raw regression scores; `pred_content_type`: the argmax class.
- `content_type_probs`: softmax over the label set's classes, in their order.
- `num_tokens`, `truncated`: the file's content tokens and whether the model saw less than all of it, as in
  score files; `error`: why a file has no prediction (null or binary content), else None.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from curator.data.batching import CONTENT_TYPE, encode_rows, length_grouped, make_batch
from curator.data.shards import labeled_files
from curator.labels import LABEL_SETS, ORDINAL_HEADS, OrdinalHead
from curator.tasks.metrics import classification_report, evaluate, ordinal_report
from curator.tasks.trained import load_trained

FILE_COLUMNS = ["id", "language", "repo", "path", "content"]
ALL_LANGUAGES = "all"
EXCERPT_LINES = 20


def read_split(
    data: str | Path, split: str = "test", languages=None, limit: int | None = None
) -> pd.DataFrame:
    """The labeled rows of one split from local labeled shards, in file order."""
    frames = []
    for path in labeled_files(data, split):
        table = pq.read_table(path)
        if "split" not in table.column_names and path.parent.name != split:
            raise ValueError(
                f"{path}: no `split` column and not in a `{split}/` folder: cannot tell its split"
            )
        frame = table.to_pandas()
        if "split" in frame:
            frame = frame[frame["split"] == split]
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    if languages is not None:
        df = df[df["language"].isin(list(languages))]
    if limit is not None:
        df = df.head(limit)
    if df.empty:
        raise ValueError(f"no rows of split {split!r} under {data}")
    return df.reset_index(drop=True)


def predict_split(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | None = None,
    languages=None,
    limit: int | None = None,
) -> pd.DataFrame:
    """One row per file of `split` under `data` with its labels and the model's predictions.

    `checkpoint` is a .ckpt from train.py or a folder from export.py. `max_length` defaults to the model's own.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    trained = load_trained(checkpoint, device=device)
    max_length = max_length or trained.max_length
    labels = trained.label_set
    df = read_split(data, split, languages, limit)

    # The model input of training and scoring (curator.data.inputs), so the model sees each file as there.
    if max_length:
        trained.max_length = max_length
    rows = df[["id", "language", "path", "content", *ORDINAL_HEADS, CONTENT_TYPE]].to_dict("records")
    examples, errors = encode_rows(rows, trained.input_encoder(), labels)
    n = len(df)
    scores = {head: np.full(n, np.nan) for head in ORDINAL_HEADS}
    probs = np.full((n, len(labels.classes)), np.nan)
    num_tokens = np.zeros(n, dtype=np.int64)
    truncated = np.zeros(n, dtype=bool)
    # One buffer over the whole split: sorted by length, each batch pads to little.
    buffer_batches = max(1, math.ceil(n / batch_size))
    with torch.inference_mode():
        for group in length_grouped(examples, batch_size, buffer_batches, rng=None):
            batch = make_batch(group, trained.tokenizer.pad_token_id)
            out = trained.model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            index = [e.row for e in group]
            for head in ORDINAL_HEADS:
                scores[head][index] = out[head].float().cpu().numpy()
            probs[index] = torch.softmax(out[CONTENT_TYPE].float(), dim=-1).cpu().numpy()
            num_tokens[index] = [e.num_tokens for e in group]
            truncated[index] = [e.truncated for e in group]

    result = df[[c for c in FILE_COLUMNS if c in df]].copy()
    for head in ORDINAL_HEADS:
        result[head] = df[head].astype(np.int64)
    result[CONTENT_TYPE] = [labels.mapping[c] for c in df[CONTENT_TYPE]]
    for head in ORDINAL_HEADS:
        result[f"pred_{head}"] = scores[head]
    result[f"pred_{CONTENT_TYPE}"] = [
        None if i in errors else labels.classes[k] for i, k in enumerate(np.nan_to_num(probs).argmax(axis=1))
    ]
    result[f"{CONTENT_TYPE}_probs"] = list(probs)
    # As in score files: the whole file's content tokens, and whether the model saw less than all of it.
    result["num_tokens"] = num_tokens
    result["truncated"] = truncated
    result["error"] = [errors.get(i) for i in range(n)]
    result.attrs["classes"] = list(labels.classes)
    result.attrs["label_set"] = labels.name
    return result


def class_names(df: pd.DataFrame) -> list[str]:
    """The content-type classes of a prediction table, in the model's order.

    predict_split records them; for a table built by hand, the first label set that holds every class seen.
    """
    if df.attrs.get("classes"):
        return list(df.attrs["classes"])
    seen = set(df[CONTENT_TYPE]) | set(df[f"pred_{CONTENT_TYPE}"])
    for label_set in LABEL_SETS.values():
        if seen <= set(label_set.classes):
            return list(label_set.classes)
    raise ValueError(f"content types {sorted(seen)} fit no label set; set df.attrs['classes']")


def head_reports(df: pd.DataFrame) -> dict:
    """`curator.tasks.metrics.evaluate` over the whole table: the same report as evaluate.py writes."""
    classes = class_names(df)
    predictions = {head: df[f"pred_{head}"].to_numpy() for head in ORDINAL_HEADS}
    targets = {head: df[head].to_numpy() for head in ORDINAL_HEADS}
    predictions[CONTENT_TYPE] = np.array([classes.index(c) for c in df[f"pred_{CONTENT_TYPE}"]])
    targets[CONTENT_TYPE] = np.array([classes.index(c) for c in df[CONTENT_TYPE]])
    return evaluate(predictions, targets, classes)


def per_language_f1(df: pd.DataFrame, include_all: bool = True) -> pd.DataFrame:
    """Per-level (per-class) precision, recall, F1 and support of every head, per language.

    One row per (language, head, level); `level` is a string (a level number or a class name). F1 is NaN
    where a level has neither support nor predictions in that language: the metrics count it as 0, which a
    heatmap would show as a failure where there was nothing to get right. With `include_all`, the whole
    table is added as language "all".
    """
    classes = class_names(df)
    groups = list(df.groupby("language", sort=True))
    if include_all:
        groups.append((ALL_LANGUAGES, df))
    records = []
    for language, part in groups:
        for head_name, head in ORDINAL_HEADS.items():
            report = ordinal_report(part[f"pred_{head_name}"].to_numpy(), part[head_name].to_numpy(), head)
            records += _level_records(language, head_name, report["per_level"], report["confusion"])
        report = classification_report(
            np.array([classes.index(c) for c in part[f"pred_{CONTENT_TYPE}"]]),
            np.array([classes.index(c) for c in part[CONTENT_TYPE]]),
            classes,
        )
        records += _level_records(language, CONTENT_TYPE, report["per_class"], report["confusion"])
    return pd.DataFrame.from_records(records)


def f1_by_language(table: pd.DataFrame) -> pd.DataFrame:
    """`per_language_f1`'s F1 as a (head, level) x language matrix, levels in rubric order, "all" last."""
    wide = table.pivot(index=["head", "level"], columns="language", values="f1")
    rows = pd.MultiIndex.from_frame(table[["head", "level"]].drop_duplicates())
    languages = sorted(set(table.language) - {ALL_LANGUAGES})
    return wide.reindex(index=rows, columns=languages + ([ALL_LANGUAGES] if ALL_LANGUAGES in wide else []))


def _level_records(language: str, head: str, rows: dict, confusion: list) -> list[dict]:
    predicted = np.asarray(confusion).sum(axis=0)
    records = []
    for (level, row), n_predicted in zip(rows.items(), predicted, strict=True):
        empty = row["support"] == 0 and n_predicted == 0
        records.append(
            {
                "language": language,
                "head": head,
                "level": str(level),
                "precision": row["precision"],
                "recall": row["recall"],
                "f1": math.nan if empty else row["f1"],
                "support": row["support"],
                "predicted": int(n_predicted),
            }
        )
    return records


def excerpt(content: str | None, lines: int = EXCERPT_LINES) -> str:
    """The first `lines` lines of a file, with a marker when there is more."""
    all_lines = (content or "").splitlines()
    head = "\n".join(all_lines[:lines])
    if len(all_lines) > lines:
        head += f"\n... ({len(all_lines) - lines} more lines)"
    return head


def worst_errors(df: pd.DataFrame, head: str, n: int = 10, lines: int = EXCERPT_LINES) -> pd.DataFrame:
    """The `n` worst predictions of a head, worst first, with the first `lines` lines of each file.

    quality / structured_data: largest |prediction - label| (`error` is signed: above 0 means over-rated).
    content_type: wrong predictions, most confident first (`confidence` is the predicted class's probability).
    Ties keep the table's order.
    """
    base = [c for c in ("id", "language", "repo", "path") if c in df]
    if head in ORDINAL_HEADS:
        error = df[f"pred_{head}"] - df[head]
        out = df[base].assign(
            label=df[head],
            prediction=df[f"pred_{head}"],
            predicted_level=ORDINAL_HEADS[head].to_levels(df[f"pred_{head}"]),
            error=error,
            abs_error=error.abs(),
        )
        order = out["abs_error"]
    elif head == CONTENT_TYPE:
        confidence = df[f"{CONTENT_TYPE}_probs"].map(lambda p: float(np.max(p)))
        out = df[base].assign(label=df[head], prediction=df[f"pred_{head}"], confidence=confidence)
        out = out[out["label"] != out["prediction"]]
        order = out["confidence"]
    else:
        raise ValueError(f"unknown head {head!r}; heads are {[*ORDINAL_HEADS, CONTENT_TYPE]}")
    # A stable sort, so equal errors come out in the table's order.
    out = out.loc[order.sort_values(ascending=False, kind="stable").index].head(n)
    return out.assign(excerpt=df.loc[out.index, "content"].map(lambda c: excerpt(c, lines)))


def calibration(df: pd.DataFrame, head: str, bins: int = 10) -> pd.DataFrame:
    """How predictions sit against the labels.

    quality / structured_data: one row per label level of the rubric: `n`, the `mean` prediction, its `std`,
    and the 10th/90th percentiles `p10` / `p90` (NaN for a level without files). A calibrated head has
    `mean` near `level`.
    content_type: a reliability table over `bins` equal-width bins of the max probability: `n`,
    `confidence` (mean max probability) and `accuracy` of the files in the bin. A calibrated head has them equal.
    """
    if head in ORDINAL_HEADS:
        ordinal: OrdinalHead = ORDINAL_HEADS[head]
        records = []
        for level in ordinal.level_values:
            pred = df.loc[df[head] == level, f"pred_{head}"].to_numpy(dtype=np.float64)
            some = pred.size > 0
            records.append(
                {
                    "level": level,
                    "n": int(pred.size),
                    "mean": float(pred.mean()) if some else math.nan,
                    "std": float(pred.std()) if some else math.nan,
                    "p10": float(np.percentile(pred, 10)) if some else math.nan,
                    "p90": float(np.percentile(pred, 90)) if some else math.nan,
                }
            )
        return pd.DataFrame.from_records(records)
    if head != CONTENT_TYPE:
        raise ValueError(f"unknown head {head!r}; heads are {[*ORDINAL_HEADS, CONTENT_TYPE]}")
    confidence = df[f"{CONTENT_TYPE}_probs"].map(lambda p: float(np.max(p))).to_numpy()
    correct = (df[f"pred_{CONTENT_TYPE}"] == df[CONTENT_TYPE]).to_numpy()
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are [lo, hi), the last one [lo, 1.0]: a probability of exactly 1 belongs to the top bin.
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    records = []
    for b in range(bins):
        inside = which == b
        some = bool(inside.any())
        records.append(
            {
                "bin_lo": float(edges[b]),
                "bin_hi": float(edges[b + 1]),
                "n": int(inside.sum()),
                "confidence": float(confidence[inside].mean()) if some else math.nan,
                "accuracy": float(correct[inside].mean()) if some else math.nan,
            }
        )
    return pd.DataFrame.from_records(records)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """The content-type reliability table's gap between confidence and accuracy, weighted by files per bin."""
    filled = table[table["n"] > 0]
    return float((filled["n"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / filled["n"].sum())


def threshold_tradeoff(df: pd.DataFrame, head: str, thresholds=None) -> pd.DataFrame:
    """What a filter `pred_<head> >= threshold` keeps, and how much of it deserves to be kept.

    For each threshold: `level`, the rubric level it asks for (`to_levels(threshold)`: 2.5 asks for 3);
    `kept` files and `kept_fraction`; `precision`, the share of kept files whose label is at least `level`
    (NaN when nothing is kept); `recall`, the share of such files that are kept; `base_rate`, the precision
    of keeping everything. Thresholds default to every 0.1 across the head's scale.
    """
    if head not in ORDINAL_HEADS:
        raise ValueError(f"thresholds apply to {list(ORDINAL_HEADS)}, not {head!r}")
    ordinal = ORDINAL_HEADS[head]
    if thresholds is None:
        thresholds = np.round(np.arange(ordinal.lo, ordinal.hi + 1e-9, 0.1), 2)
    pred = df[f"pred_{head}"].to_numpy(dtype=np.float64)
    label = df[head].to_numpy()
    records = []
    for threshold in thresholds:
        level = int(ordinal.to_levels(threshold))
        kept = pred >= threshold
        good = label >= level
        records.append(
            {
                "threshold": float(threshold),
                "level": level,
                "kept": int(kept.sum()),
                "kept_fraction": float(kept.mean()),
                "precision": float(good[kept].mean()) if kept.any() else math.nan,
                "recall": float(kept[good].mean()) if good.any() else math.nan,
                "base_rate": float(good.mean()),
            }
        )
    return pd.DataFrame.from_records(records)
