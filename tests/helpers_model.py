"""Tiny trained models and corpora for the scoring, filter and export tests.

`make_checkpoint` writes a checkpoint in the format `curator.tasks.module.CuratorTask` saves (plain
hyperparameters, state_dict keys prefixed `model.`) from a randomly initialised one-layer encoder, so the tests
need neither Lightning training nor downloaded weights.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curator.labels import get_label_set
from curator.models import CuratorClassifier, build_encoder

TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def make_checkpoint(
    path: Path,
    label_set: str = "full",
    pooling: str = "cls",
    max_length: int = 64,
    seed: int = 0,
    tiny: bool = True,
    layers: int = 1,
):
    """A checkpoint with random heads over a tiny random encoder, or (tiny=False) the pretrained MiniLM."""
    torch.manual_seed(seed)
    if tiny:
        encoder = build_encoder(
            "minilm", pretrained=False, config_overrides={**TINY, "num_hidden_layers": layers}
        )
    else:
        encoder = build_encoder("minilm")
    model = CuratorClassifier(
        encoder, num_content_types=len(get_label_set(label_set).classes), pooling=pooling
    )
    ckpt = {
        "pytorch-lightning_version": "2.6.0",
        "epoch": 0,
        "global_step": 0,
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {
            "encoder": "minilm",
            "encoder_config": encoder.config.to_dict(),
            "tokenizer": "minilm",
            "label_set": label_set,
            "pooling": pooling,
            "max_length": max_length,
            "lr": 2e-5,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "import json\n\n\ndef load(path):\n    with open(path) as fh:\n        return json.load(fh)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n    print(i)\n",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;\n",
    "#!/bin/sh\nset -e\necho hello\n",
]


def corpus_rows(language: str, shard: int, n: int, repeat: int = 1) -> list[dict]:
    """Rows of varied length (so that sorting by length really reorders them), with unique ids."""
    rows = []
    for i in range(n):
        text = SNIPPETS[(i + shard) % len(SNIPPETS)] * (1 + (i * 7 + shard) % 9) * repeat
        rows.append(
            {
                "id": f"{language}-{shard}-{i}",
                "content": text,
                "max_stars_repo_path": f"src/file_{i}.txt",
                "max_stars_repo_name": f"org/repo{i % 5}",
                "max_stars_count": i,
            }
        )
    return rows


def write_shard(root: Path, language: str, name: str, rows: list[dict], fmt: str = "parquet", **kw) -> Path:
    folder = root / language
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    path = folder / f"{name}.parquet"
    pq.write_table(
        pa.Table.from_pylist(rows, schema=kw.get("schema")), path, row_group_size=kw.get("row_group_size")
    )
    return path


def make_corpus(
    root: Path, languages=("python", "go"), shards: int = 2, rows: int = 40, repeat: int = 1
) -> Path:
    for language in languages:
        for s in range(shards):
            write_shard(root, language, f"train-{s:05d}", corpus_rows(language, s, rows, repeat))
    return root


REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """A top-level entry point (score.py, filter.py, export.py) as a module, to call its main() in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"curator_script_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_env() -> dict:
    """The environment of an entry point run as a subprocess: one thread per process (the test machines are
    small and shared), offline."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def score_cmd(ckpt, corpus, out, *extra) -> list[str]:
    """score.py as typed, on the CPU, tokenizing in the main process (later arguments win in argparse)."""
    return [sys.executable, str(REPO / "score.py"), "--model", str(ckpt), "--corpus", str(corpus),
            "--out", str(out), "--num-workers", "0", "--device", "cpu", "--no-progress", *extra]  # fmt: skip
