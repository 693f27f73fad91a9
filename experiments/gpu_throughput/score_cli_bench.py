"""score.py end to end on a GPU machine: real source files (the machine's own site-packages), random-weight
encoders (MiniLM-L6 and a unixcoder-base-shaped RoBERTa), the MiniLM tokenizer for both.

    COPIES=3 EXTRA="--rows-per-part 1000 --window 1024" python experiments/gpu_throughput/score_cli_bench.py 14:131072

Each argument is WORKERS:TOKENS_PER_BATCH; every run is a fresh `score.py` process, timed from its own log.
"""

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, "src")
from curator.hub import resolve_model_path
from curator.models import CuratorClassifier, build_encoder

tok = resolve_model_path("minilm")
work = Path("/tmp/bench")
work.mkdir(exist_ok=True)
files = sorted(glob.glob(f"{os.path.dirname(torch.__file__)}/../**/*.py", recursive=True))
rows = []
for i, f in enumerate(files[:20000]):
    rows.append(
        {
            "id": str(i),
            "content": open(f, errors="replace").read(),
            "max_stars_repo_path": f,
            "max_stars_repo_name": "x",
            "max_stars_count": 0,
        }
    )
copies = int(os.environ.get("COPIES", "1"))  # a longer run, so that the steady state outweighs the start
rows = [{**r, "id": f"{c}-{r['id']}"} for c in range(copies) for r in rows]
print("files", len(rows), "mean chars", sum(len(r["content"]) for r in rows) / len(rows))
(work / "corpus/python").mkdir(parents=True, exist_ok=True)
for s in range(24):
    pq.write_table(pa.Table.from_pylist(rows[s::24]), work / f"corpus/python/train-{s:05d}.parquet")


def ckpt(name, cfg):
    enc = build_encoder(tok, pretrained=False, config=cfg)
    m = CuratorClassifier(enc, 9)
    hp = {
        "encoder": tok,
        "encoder_config": enc.config.to_dict(),
        "tokenizer": tok,
        "label_set": "full",
        "pooling": "cls",
        "max_length": 512,
    }
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in m.state_dict().items()}, "hyper_parameters": hp},
        work / name,
    )
    return str(work / name)


minilm = json.load(open(Path(tok) / "config.json"))
roberta = {
    "model_type": "roberta",
    "vocab_size": 51416,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 1026,
    "type_vocab_size": 10,
    "pad_token_id": 1,
}
models = {"minilm": ckpt("minilm.ckpt", minilm), "unixcoder-shaped": ckpt("roberta.ckpt", roberta)}
for name, path in models.items():
    for workers, budget in [(int(a), int(b)) for a, b in (x.split(":") for x in sys.argv[1:])]:
        out = work / f"out-{name}-{workers}-{budget}"
        t = time.time()
        r = subprocess.run(
            [
                sys.executable,
                "score.py",
                "--model",
                path,
                "--corpus",
                str(work / "corpus"),
                "--out",
                str(out),
                "--num-workers",
                str(workers),
                "--tokens-per-batch",
                str(budget),
                "--no-progress",
                *os.environ.get("EXTRA", "").split(),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": "src"},
        )
        line = [x for x in r.stderr.splitlines() if "files/s" in x or "Error" in x]
        print(
            name,
            f"workers={workers} budget={budget}",
            line[-1] if line else r.stderr[-2000:],
            f"wall {time.time() - t:.1f}s",
            flush=True,
        )
