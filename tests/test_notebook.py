"""notebooks/error_analysis.ipynb runs top to bottom on a tiny checkpoint, so CI needs no quickstart run."""

import json
import sys
from pathlib import Path

import pytest
from helpers_model import make_checkpoint

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "error_analysis.ipynb"
KERNEL = "curator-tests"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def run_notebook(tmp_path, monkeypatch, ckpt, data, split="test"):
    """Execute the notebook against a checkpoint and labeled shards; returns it with its outputs."""
    # A kernel spec of its own that starts this interpreter, whatever kernels the machine has installed.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The kernel inherits this environment: the notebook's first cell reads these.
    monkeypatch.setenv("CURATOR_CKPT", str(ckpt))
    monkeypatch.setenv("CURATOR_DATA", str(data))
    monkeypatch.setenv("CURATOR_SPLIT", split)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    return nb


def images_of(nb) -> list:
    return [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]


@pytest.mark.slow
def test_error_analysis_notebook_runs(tmp_path, labeled_root, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "tiny.ckpt", max_length=32)
    nb = run_notebook(tmp_path, monkeypatch, ckpt, labeled_root)
    text = "".join(
        output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert str(ckpt) in text and "48 files" in text
    # Three confusion matrices, the F1 heatmap, the calibration and the threshold figures.
    assert len(images_of(nb)) == 6
