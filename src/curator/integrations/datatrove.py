"""datatrove pipeline steps: score documents with a trained curator model, and filter them as filter.py does.

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from curator.integrations.datatrove import CuratorFilter, CuratorScorer, starcoderdata_adapter

    LocalPipelineExecutor(
        pipeline=[
            ParquetReader("/data/starcoderdata", glob_pattern="*/*.parquet", adapter=starcoderdata_adapter),
            CuratorScorer("models/curator"),
            CuratorFilter(where="quality >= 2.5 and structured_data >= 0.5"),
            ParquetWriter("/data/kept"),
        ],
        tasks=64, workers=8, logging_dir="logs/curate",
    ).run()

`CuratorScorer` writes into each document's metadata what score.py writes into a score row (`quality`,
`structured_data`, `content_type`, `content_type_probs`, `num_tokens`, `num_tokens_estimated`, `truncated`,
`windows`, `error`, and the junk signals of `curator.data.signals.file_signals`), from the same model input
(`TrainedModel.input_encoder`), so a file gets the same scores in both. `CuratorFilter` takes filter.py's
expressions and applies its junk rules first. docs/datatrove.md has the full recipe, Slurm included.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.batching import batched

from curator.data.inputs import pad
from curator.data.signals import SIGNAL_COLUMNS, SIGNAL_FIELDS, file_signals, null_signals
from curator.labels import QUALITY, STRUCTURED_DATA, get_label_set
from curator.scoring import junk
from curator.scoring.expressions import where_for
from curator.scoring.windows import combine
from curator.tasks.trained import TrainedModel, load_trained

SCORE_KEYS = (
    "quality",
    "structured_data",
    "content_type",
    "content_type_probs",
    "num_tokens",
    "num_tokens_estimated",
    "truncated",
    "windows",
    "error",
)


def starcoderdata_adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
    """A ParquetReader/JsonlReader adapter for the StarCoderData layout: `content` is the text, and the language
    is the folder the file lies in (`<root>/<language>/*.parquet`, read with glob_pattern="*/*.parquet")."""
    metadata = {k: v for k, v in data.items() if k not in ("content", "id")}
    metadata["language"] = path.replace("\\", "/").rsplit("/", 2)[-2] if "/" in path else None
    return {
        "text": data.get("content"),
        "id": str(data.get("id", f"{path}/{id_in_file}")),
        "metadata": metadata,
    }


class CuratorScorer(PipelineStep):
    """Scores every document with a trained curator model and writes the scores into its metadata.

    Documents are read `window` at a time, turned into model input, sorted by length and cut into batches of at
    most `tokens_per_batch` tokens (files x longest, padded), so little of a batch is padding; they leave in the
    order they came. The model is loaded in the task's process, on the first document (a pickled pipeline
    carries the path, not the weights): on GPU `cuda:<LOCAL_RANK>` when there is one, else the CPU.
    A document that cannot be read as text keeps going with `error` set and no scores, as in score.py.
    `max_windows` is score.py's `--max-windows`: a long document is scored as up to that many windows, combined
    by the token-weighted mean (`curator.scoring.windows`).
    """

    name = "🎯 curator scores"
    type = "📊 - SCORER"

    def __init__(
        self,
        model: str,
        tokens_per_batch: int = 16_384,
        window: int = 1024,
        device: str = "auto",
        max_chars: int | None = None,
        path_key: str = "max_stars_repo_path",
        max_windows: int = 1,
    ):
        super().__init__()
        if max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, not {max_windows}")
        self.max_windows = max_windows
        self.model_path = str(model)
        self.tokens_per_batch = tokens_per_batch
        self.window = window
        self.device = device
        self.max_chars = max_chars
        self.path_key = path_key  # the metadata key of the file's path, for models that read it (with_path)
        self._trained: TrainedModel | None = None

    def __getstate__(self):
        # Executors pickle the pipeline for their tasks: the path goes, the loaded model stays behind.
        return {**self.__dict__, "_trained": None}

    def _device(self) -> torch.device:
        if self.device != "auto":
            return torch.device(self.device)
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}")
        return torch.device("cpu")

    def _model(self) -> TrainedModel:
        if self._trained is None:
            self._trained = load_trained(self.model_path, device=self._device())
        return self._trained

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        trained = self._model()
        encoder = trained.input_encoder(self.max_chars)
        for docs in batched(data, self.window):
            with self.track_time("window"):
                self._score(trained, encoder, docs)
            for doc in docs:
                self.stat_update("scored" if doc.metadata["error"] is None else "errors")
                yield doc

    @torch.inference_mode()
    def _score(self, trained: TrainedModel, encoder, docs: list[Document]) -> None:
        paths = [doc.metadata.get(self.path_key) for doc in docs] if encoder.with_path else None
        windows = encoder.windows([doc.text for doc in docs], paths, self.max_windows)
        classes = trained.label_set.classes
        for doc, wins in zip(docs, windows, strict=True):
            x = wins[0]
            ok = x.error is None
            doc.metadata.update(
                quality=None,
                structured_data=None,
                content_type=None,
                content_type_probs=None,
                num_tokens=x.num_tokens,
                num_tokens_estimated=x.estimated if ok else None,
                truncated=x.truncated if ok else None,
                windows=len(wins) if ok else 0,
                error=x.error,
            )
            # The signals read the whole text, not the head the model sees (as score.py's do).
            doc.metadata.update(file_signals(doc.text) if ok else null_signals())
        # Every window of every readable document in one list, a document's windows next to each other.
        inputs = [x for wins in windows if wins[0].error is None for x in wins]
        scores = np.zeros((len(inputs), 2 + len(classes)), np.float32)
        todo = sorted(range(len(inputs)), key=lambda i: len(inputs[i].ids))
        dev = next(trained.model.parameters()).device
        start = 0
        while start < len(todo):
            # The longest file of a batch is its last (sorted): grow the batch while files x longest fits.
            stop = start + 1
            while (
                stop < len(todo) and (stop + 1 - start) * len(inputs[todo[stop]].ids) <= self.tokens_per_batch
            ):
                stop += 1
            batch = todo[start:stop]
            ids, mask = pad([inputs[i].ids for i in batch], encoder.pad_id)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out = trained.model(ids.to(dev), mask.to(dev))
            probs = torch.softmax(out["content_type"].float(), dim=-1)
            scores[batch] = (
                torch.cat(
                    [out["quality"].float()[:, None], out["structured_data"].float()[:, None], probs], 1
                )
                .cpu()
                .numpy()
            )
            start = stop
        at = 0
        for i, wins in enumerate(windows):
            if wins[0].error is not None:
                continue
            mine = combine(scores[at : at + len(wins)], [x.weight for x in wins])
            at += len(wins)
            docs[i].metadata.update(
                quality=float(mine[0]),
                structured_data=float(mine[1]),
                content_type=classes[int(mine[2:].argmax())],
                content_type_probs=[float(p) for p in mine[2:]],
            )


class CuratorFilter(BaseFilter):
    """Keeps the documents that filter.py would keep: no error, no junk rule fired (unless `junk_rules=False`),
    and `where` (or the language's own expression in `where_lang`) true. Needs `CuratorScorer` before it.

    Expressions are filter.py's (`curator.scoring.expressions`): quality and structured_data are read clipped to
    their scales, `prob_<class>` names a class probability, `language`, `path` and `id` are the document's.
    `content_types`: the class order of the model's `content_type_probs` (default: the full label set).
    Dropped documents carry their reason (`error`, `junk`, `where`) in the stats and to `exclusion_writer`.
    """

    name = "🎯 curator filter"

    def __init__(
        self,
        where: str | None = None,
        where_lang: dict[str, str] | None = None,
        junk_rules: bool = True,
        content_types: list[str] | tuple[str, ...] | None = None,
        path_key: str = "max_stars_repo_path",
        exclusion_writer=None,
        batch_size: int = 1024,
    ):
        super().__init__(exclusion_writer, batch_size)
        self.where = where
        self.where_lang = dict(where_lang or {})
        self.junk_rules = junk_rules
        self.content_types = list(content_types or get_label_set("full").classes)
        self.path_key = path_key
        # Parse now: a typo in an expression fails when the pipeline is built, not in task 37 of 64.
        for language in [None, *self.where_lang]:
            where_for(language, self.where, self.where_lang, self.content_types)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def _frame(self, batch: list[Document]) -> pd.DataFrame:
        rows = []
        for doc in batch:
            m = doc.metadata
            if "quality" not in m or "error" not in m:
                raise ValueError(
                    f"document {doc.id} has no curator scores: put CuratorScorer before CuratorFilter"
                )
            row = {k: m.get(k) for k in SCORE_KEYS + tuple(SIGNAL_COLUMNS)}
            row.update(id=doc.id, language=m.get("language"), path=m.get(self.path_key))
            rows.append(row)
        df = pd.DataFrame(rows)
        for head in (QUALITY, STRUCTURED_DATA):
            df[head.name] = pd.to_numeric(df[head.name]).clip(head.lo, head.hi)
        # Column types as filter.py reads them from parquet: a row without signals has nulls, and False in the
        # boolean ones so that expressions stay boolean (junk.apply_rules tells such rows apart).
        df["num_tokens"] = pd.to_numeric(df["num_tokens"])
        df["truncated"] = df["truncated"].astype("boolean").fillna(False).astype(bool)
        for f in SIGNAL_FIELDS:
            if f.type == pa.bool_():
                df[f.name] = df[f.name].astype("boolean").fillna(False).astype(bool)
            else:
                df[f.name] = pd.to_numeric(df[f.name])
        return df

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        df = self._frame(batch)
        ok = df["error"].isna().to_numpy()
        bad = np.zeros(len(df), dtype=bool)
        if self.junk_rules:
            bad = junk.apply_rules(df, ok).junk
        keep = ok & ~bad
        where = np.ones(len(df), dtype=bool)
        for language, idx in df.groupby(df["language"].fillna(""), sort=False).groups.items():
            _, expr = where_for(language, self.where, self.where_lang, self.content_types)
            if expr is not None:
                rows = df.loc[idx]
                where[rows.index] = expr(rows.reset_index(drop=True))
        return [
            True if k else (False, "error" if not o else "junk" if b else "where")
            for k, o, b in zip(keep & where, ok, bad, strict=True)
        ]
