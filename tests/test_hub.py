"""export.py --push-to-hub against a stand-in Hub on 127.0.0.1, and score.py --model with a hub id read from a
Hub cache holding what was pushed (HF_HUB_OFFLINE=1: the cache is the whole Hub there). Never the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_hub_server import FakeHub
from helpers_model import make_checkpoint

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_standintokenXYZ0123456789"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


def _run(args, env, timeout=300):
    return subprocess.run(
        [sys.executable, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.ckpt")


def test_push_uploads_the_exported_folder_with_its_card(ckpt, tmp_path):
    out = tmp_path / "exported"
    with FakeHub() as hub:
        env = _env(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf"))
        proc = _run([REPO / "export.py", ckpt, out, "--push-to-hub", "me/curator-tiny", "--private"], env)
    assert proc.returncode == 0, proc.stderr
    # huggingface_hub also asks for a registry it caches and can do without (GET /api/agent-harnesses); every
    # call the upload needs was answered.
    assert not [call for call in hub.unexpected if not call.startswith("GET /api/agent-harnesses")]
    assert hub.validated and hub.validated[0] == (out / "README.md").read_text()
    repo = hub.repos["me/curator-tiny"]
    assert repo["private"]
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {"README.md", "model.safetensors", "curator_config.json"} <= set(local)
    assert repo["files"] == local  # every file, byte for byte
    assert set(hub.authorizations) == {f"Bearer {TOKEN}"}
    assert TOKEN not in proc.stdout + proc.stderr
    assert not any(TOKEN.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_push_without_a_token_is_one_line_and_uploads_nothing(ckpt, tmp_path):
    with FakeHub() as hub:
        env = _env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
        proc = _run(
            [REPO / "export.py", ckpt, tmp_path / "exported", "--push-to-hub", "me/curator-tiny"], env
        )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: no Hub token: set HF_TOKEN (a token with write access) or run `hf auth login`"
    ]
    assert not hub.repos and not hub.authorizations


def _populate_cache(
    cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "c0ffee" * 6 + "c0ff"
) -> None:
    # The Hub cache's documented layout: models--<owner>--<name>/{refs/main, snapshots/<commit>/<files>}.
    base = cache / f"models--{repo_id.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    for name, data in files.items():
        path = base / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.mark.slow
def test_score_takes_a_hub_id(ckpt, tmp_path):
    out = tmp_path / "exported"
    with FakeHub() as hub:
        env = _env(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf"))
        assert _run([REPO / "export.py", ckpt, out, "--push-to-hub", "me/curator-tiny"], env).returncode == 0
    cache = tmp_path / "hub-cache"
    _populate_cache(cache, "me/curator-tiny", hub.repos["me/curator-tiny"]["files"])

    corpus = REPO / "data" / "sample"
    env = _env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    common = [
        "--corpus",
        corpus,
        "--languages",
        "sql",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    from_hub = _run(
        [REPO / "score.py", "--model", "me/curator-tiny", "--out", tmp_path / "s_hub", *common], env
    )
    assert from_hub.returncode == 0, from_hub.stderr
    from_folder = _run([REPO / "score.py", "--model", out, "--out", tmp_path / "s_dir", *common], env)
    assert from_folder.returncode == 0, from_folder.stderr
    a = pq.read_table(tmp_path / "s_hub" / "sql" / "part-00000.parquet").to_pandas()
    b = pq.read_table(tmp_path / "s_dir" / "sql" / "part-00000.parquet").to_pandas()
    assert a["quality"].notna().all() and a[["id", "quality", "content_type"]].equals(
        b[["id", "quality", "content_type"]]
    )

    # A hub id that is neither local nor in the cache: one line that says both.
    missing = _run([REPO / "score.py", "--model", "me/nothing-here", "--out", tmp_path / "s_x", *common], env)
    assert missing.returncode != 0
    assert "no checkpoint or exported model at me/nothing-here" in missing.stderr
