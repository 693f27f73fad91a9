"""The datatrove steps under datatrove's own executors: every document once, resumable, the scores of score.py,
the decisions of filter.py; Slurm through stand-in sbatch and srun that run the array tasks here."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

datatrove = pytest.importorskip("datatrove")

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.readers import ParquetReader  # noqa: E402
from datatrove.pipeline.writers import ParquetWriter  # noqa: E402
from helpers_model import make_checkpoint  # noqa: E402

from curator.data.corpus import iter_corpus  # noqa: E402
from curator.integrations.datatrove import CuratorFilter, CuratorScorer, starcoderdata_adapter  # noqa: E402
from curator.scoring.runner import score_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
LANGUAGES = ("go", "python", "shell", "sql")
WHERE = "quality >= 3 and content_type != 'generated'"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample4")
    for language in LANGUAGES:
        shutil.copytree(SAMPLE / language, root / language)
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    # A tiny random model at 64 tokens, with heads far enough from 3 that some files pass the expression.
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.ckpt", seed=3)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


def _pipeline(corpus, ckpt, out, where=None, dropped=None):
    steps = [
        ParquetReader(str(corpus), glob_pattern="*/*.parquet", adapter=starcoderdata_adapter),
        CuratorScorer(str(ckpt), tokens_per_batch=4096, window=256, device="cpu"),
    ]
    if where is not None:
        exclusion = ParquetWriter(str(dropped), output_filename="${rank}.parquet") if dropped else None
        steps.append(CuratorFilter(where=where, exclusion_writer=exclusion))
    steps.append(ParquetWriter(str(out), output_filename="${rank}.parquet"))
    return steps


def _read(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("*.parquet"))
    return (
        pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
        if files
        else pd.DataFrame()
    )


def _corpus_ids(corpus) -> list[str]:
    return sorted(str(r["id"]) for r in iter_corpus(corpus))


def test_local_executor_scores_every_document_once_as_score_py_does(corpus, ckpt, tmp_path):
    out = tmp_path / "scored"
    LocalPipelineExecutor(
        _pipeline(corpus, ckpt, out), tasks=4, workers=2, logging_dir=str(tmp_path / "logs")
    ).run()
    got = _read(out)
    assert sorted(got["id"]) == _corpus_ids(corpus)  # every document, once
    meta = pd.DataFrame(list(got["metadata"]))
    meta["id"] = got["id"]
    assert set(meta["language"]) == set(LANGUAGES)

    # The same files through score.py's library function: the same model input, so the same scores.
    scores = tmp_path / "score_py"
    score_corpus(str(ckpt), corpus, scores, device="cpu", num_workers=0, progress=False)
    want = pd.concat([pq.read_table(f).to_pandas() for f in sorted(scores.glob("*/*.parquet"))])
    both = meta.merge(want, on="id", suffixes=("", "_score_py"))
    assert len(both) == len(meta)
    for column in ("quality", "structured_data"):
        assert np.allclose(both[column], both[f"{column}_score_py"], atol=1e-4), column
    assert (both["content_type"] == both["content_type_score_py"]).all()
    for column in ("num_tokens", "truncated", "num_lines", "max_line_length", "generated_marker", "blank"):
        assert (both[column].astype(object) == both[f"{column}_score_py"].astype(object)).all(), column
    assert np.allclose(both["alnum_share"], both["alnum_share_score_py"], atol=1e-6)


def test_filter_step_keeps_what_filter_py_keeps(corpus, ckpt, tmp_path):
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    steps = _pipeline(corpus, ckpt, kept, where=WHERE, dropped=dropped)
    LocalPipelineExecutor(steps, tasks=4, workers=2, logging_dir=str(tmp_path / "logs")).run()
    kept_ids, dropped_ids = set(_read(kept)["id"]), set(_read(dropped)["id"])
    assert not kept_ids & dropped_ids and sorted(kept_ids | dropped_ids) == _corpus_ids(corpus)
    assert kept_ids and dropped_ids

    # filter.py over score.py's scores of the same files keeps the same files.
    scores, out = tmp_path / "scores", tmp_path / "filtered"
    score_corpus(str(ckpt), corpus, scores, device="cpu", num_workers=0, progress=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        str(REPO / "filter.py"),
        "--scores",
        str(scores),
        "--out",
        str(out),
        "--where",
        WHERE,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    filtered = {
        str(i) for f in out.glob("*/*.parquet") for i in pq.read_table(f, columns=["id"])["id"].to_pylist()
    }
    assert kept_ids == filtered


def test_a_bad_expression_fails_when_the_pipeline_is_built():
    with pytest.raises(ValueError, match="unknown column 'qualty'"):
        CuratorFilter(where="qualty >= 3")
    with pytest.raises(ValueError, match="not a content type"):
        CuratorFilter(where="content_type == 'libary'")


def test_rerun_skips_completed_tasks(corpus, ckpt, tmp_path):
    out, logs = tmp_path / "scored", tmp_path / "logs"
    LocalPipelineExecutor(_pipeline(corpus, ckpt, out), tasks=4, workers=2, logging_dir=str(logs)).run()
    before = {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet")}
    assert len(before) == 4
    # Task 2 "died": no completion marker, no output. A re-run does task 2 alone.
    (lost,) = out.glob("*00002.parquet")  # the writer names files <counter>_<rank>.parquet
    (logs / "completions" / "00002").unlink()
    lost.unlink()
    LocalPipelineExecutor(_pipeline(corpus, ckpt, out), tasks=4, workers=2, logging_dir=str(logs)).run()
    after = {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet")}
    assert {k: v for k, v in after.items() if k != lost.name} == {
        k: v for k, v in before.items() if k != lost.name
    }
    assert lost.name in after
    assert sorted(_read(out)["id"]) == _corpus_ids(corpus)


STAND_IN_SBATCH = """\
#!{python}
# sbatch as far as datatrove uses it: run the script now, once per array task, and print a job id.
import os, re, subprocess, sys
args, script = sys.argv[1:-1], sys.argv[-1]
env = dict(os.environ, SLURM_JOB_ID="4242", SLURM_NODELIST="localhost")
for a in args:
    if a.startswith("--export=ALL,"):
        env.update(kv.split("=", 1) for kv in a[len("--export=ALL,"):].split(","))
text = open(script).read()
with open(os.environ["SBATCH_LOG"], "a") as log:
    log.write(text + "\\n---\\n")
array = re.search(r"^#SBATCH --array=(\\d+)-(\\d+)", text, re.M)
for task in range(int(array.group(1)), int(array.group(2)) + 1) if array else [None]:
    if task is not None:
        env["SLURM_ARRAY_TASK_ID"] = str(task)
    subprocess.run(["bash", script], env=env, check=True, stdout=sys.stderr)
print("Submitted batch job 4242")
"""

STAND_IN_SRUN = """\
#!/bin/bash
# srun for one task on this machine: drop srun's options, run the command.
while [[ "$1" == -* ]]; do
  case "$1" in -n|-N|--ntasks|--nodes) shift 2 ;; *) shift ;; esac
done
exec "$@"
"""

STAND_IN_SCONTROL = """\
#!/bin/bash
# scontrol show hostnames NODELIST, for a node list of one plain name.
[ "$1 $2" = "show hostnames" ] && echo "$3"
"""


@pytest.mark.slow
def test_slurm_executor_runs_its_array_tasks(corpus, ckpt, tmp_path, monkeypatch):
    from datatrove.executor import SlurmPipelineExecutor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {
        "sbatch": STAND_IN_SBATCH.format(python=sys.executable),
        "srun": STAND_IN_SRUN,
        "scontrol": STAND_IN_SCONTROL,
    }
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    # The array tasks run `launch_pickled_pipeline`, which the datatrove install puts beside this Python.
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(tmp_path / "sbatch.log"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))

    out, logs = tmp_path / "scored", tmp_path / "logs"

    def executor():
        return SlurmPipelineExecutor(
            pipeline=_pipeline(corpus, ckpt, out, where=WHERE),
            tasks=4,
            time="01:00:00",
            partition="gpu",
            job_name="curator-score",
            logging_dir=str(logs),
            cpus_per_task=1,
            sbatch_args={"gpus-per-task": 1},
        )

    executor().run()
    script = (tmp_path / "sbatch.log").read_text()
    assert "#SBATCH --array=0-3" in script and "launch_pickled_pipeline" in script
    assert sorted((logs / "completions").iterdir()) and len(list((logs / "completions").iterdir())) == 4
    kept = set(_read(out)["id"])
    assert kept and kept < set(_corpus_ids(corpus))
    # All done: a second launch submits nothing.
    (tmp_path / "sbatch.log").unlink()
    executor().run()
    assert not (tmp_path / "sbatch.log").exists()


def test_scorer_with_windows_gives_score_py_windows(ckpt, tmp_path):
    # Long files, in windows of 64 tokens: the same combined scores and windows as score.py --max-windows 3.
    from datatrove.data import Document

    corpus = tmp_path / "corpus"
    (corpus / "python").mkdir(parents=True)
    table = pq.read_table(sorted((SAMPLE / "python").glob("*.parquet"))[0]).slice(0, 40)
    pq.write_table(table, corpus / "python" / "a.parquet")
    rows = table.to_pylist()
    docs = [Document(text=r["content"], id=r["id"], metadata={"max_stars_repo_path": r["max_stars_repo_path"]})
            for r in rows]  # fmt: skip
    scorer = CuratorScorer(str(ckpt), tokens_per_batch=1024, window=16, device="cpu", max_windows=3)
    got = {d.id: d.metadata for d in scorer.run(iter(docs))}
    score_corpus(
        str(ckpt), corpus, tmp_path / "scores", device="cpu", num_workers=0, progress=False, max_windows=3
    )
    want = pq.read_table(tmp_path / "scores" / "python" / "a.parquet").to_pylist()
    assert len(want) == len(got) == 40 and {w["windows"] for w in want} >= {1, 3}
    for w in want:
        m = got[w["id"]]
        assert m["windows"] == w["windows"] and m["truncated"] == w["truncated"]
        assert m["quality"] == pytest.approx(w["quality"], abs=1e-4)
        assert m["structured_data"] == pytest.approx(w["structured_data"], abs=1e-4)
        np.testing.assert_allclose(m["content_type_probs"], w["content_type_probs"], atol=1e-4)
