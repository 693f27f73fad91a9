import json

import pyarrow.parquet as pq
import pytest
import torch
from helpers_model import TINY, load_script, make_checkpoint, make_corpus

from curator.labels import get_label_set
from curator.models.trained import CONFIG_NAME, WEIGHTS_NAME, _label_set_from, load_trained
from curator.scoring.runner import score_corpus


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def test_checkpoint_loads_in_eval_mode(ckpt):
    trained = load_trained(ckpt)
    assert not trained.model.training
    assert trained.label_set == get_label_set("full")
    assert trained.max_length == 64
    enc = trained.tokenizer(["def f(): pass"], return_tensors="pt")
    out = trained.model(enc["input_ids"], enc["attention_mask"])
    assert out["quality"].shape == (1,) and out["content_type"].shape == (1, 9)


def test_coarse_label_set_and_mean_pooling(tmp_path):
    trained = load_trained(make_checkpoint(tmp_path / "c.ckpt", label_set="coarse", pooling="mean"))
    assert trained.model.pooling == "mean"
    assert trained.label_set.classes == get_label_set("coarse").classes
    assert trained.model.content_type.proj.out_features == 5


def test_checkpoint_written_by_the_training_task_loads(tmp_path):
    """The contract with curator.tasks.module.CuratorTask: its Lightning checkpoint loads without Lightning."""
    L = pytest.importorskip("lightning")
    module = pytest.importorskip("curator.tasks.module")
    task = module.CuratorTask(
        encoder="minilm", encoder_pretrained=False, encoder_overrides=TINY, max_length=64, label_set="coarse"
    ).eval()
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False
    )
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "task.ckpt")

    trained = load_trained(tmp_path / "task.ckpt")
    assert trained.label_set.name == "coarse" and trained.max_length == 64
    enc = trained.tokenizer(["def f():\n    return 1\n"], return_tensors="pt")
    with torch.inference_mode():
        want = task(enc["input_ids"], enc["attention_mask"])
        got = trained.model(enc["input_ids"], enc["attention_mask"])
    for head in want:
        assert torch.equal(want[head], got[head]), head


def test_export_round_trip_gives_identical_scores(ckpt, tmp_path):
    export = load_script("export")
    folder = tmp_path / "exported"
    assert export.main([str(ckpt), str(folder)]) == 0
    assert {WEIGHTS_NAME, CONFIG_NAME, "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["label_set"] == {"name": "full", "classes": list(get_label_set("full").classes)}
    assert config["max_length"] == 64 and config["pooling"] == "cls" and config["format_version"] == 1

    from_ckpt, from_folder = load_trained(ckpt), load_trained(folder)
    for (name, a), (_, b) in zip(
        from_ckpt.model.state_dict().items(), from_folder.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name

    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=1, rows=30)
    for model, out in ((ckpt, "a"), (folder, "b")):
        score_corpus(model, corpus, tmp_path / out, num_workers=0, device="cpu", progress=False)
    a = pq.read_table(tmp_path / "a" / "python" / "train-00000.parquet")
    b = pq.read_table(tmp_path / "b" / "python" / "train-00000.parquet")
    assert a.equals(b)
    # Same weights, same fingerprint: scores of either form can resume each other's runs.
    meta_a = json.loads((tmp_path / "a" / "scores_meta.json").read_text())
    meta_b = json.loads((tmp_path / "b" / "scores_meta.json").read_text())
    assert meta_a["model_fingerprint"] == meta_b["model_fingerprint"]


def test_export_refuses_to_overwrite_unless_asked(ckpt, tmp_path):
    export = load_script("export")
    folder = tmp_path / "exported"
    export.main([str(ckpt), str(folder)])
    with pytest.raises(FileExistsError):
        export.main([str(ckpt), str(folder)])
    assert export.main([str(ckpt), str(folder), "--overwrite"]) == 0
    assert load_trained(folder).max_length == 64


def test_label_set_with_other_classes_is_refused():
    with pytest.raises(ValueError, match="wrong classes"):
        _label_set_from({"name": "full", "classes": ["a", "b"]})
    custom = _label_set_from({"name": "mine", "classes": ["x", "y"]})
    assert custom.classes == ("x", "y")


def test_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trained(tmp_path / "missing.ckpt")
    with pytest.raises(FileNotFoundError, match="curator_config.json"):
        load_trained(tmp_path)
