import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
from helpers_model import TINY, load_script, make_checkpoint, make_corpus

from curator.labels import get_label_set
from curator.scoring.runner import model_fingerprint, score_corpus
from curator.tasks.trained import CONFIG_NAME, WEIGHTS_NAME, _label_set_from, load_trained


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


def _test_report(folder, checkpoint_name: str = "epoch_001.ckpt"):
    """A metrics.json as train.py writes it, from a hand-made report."""
    from curator.tasks.metrics import evaluate
    from curator.tasks.report import write_report

    report = evaluate(
        {"quality": [3.1, 4.4, 1.2], "structured_data": [0.2, 2.9, 1.1], "content_type": [0, 2, 2]},
        {"quality": [3, 4, 2], "structured_data": [0, 3, 1], "content_type": [0, 2, 1]},
        get_label_set("full").classes,
    )
    meta = {"run": "card-test", "checkpoint": f"/somewhere/checkpoints/{checkpoint_name}", "split": "test"}
    return write_report(report, folder, "card-test: test", meta)["metrics"]


def test_export_writes_a_model_card_with_the_runs_test_tables(tmp_path):
    from curator.tasks.card import CARD_NAME

    run = tmp_path / "run"
    ckpt = make_checkpoint(run / "checkpoints" / "epoch_001.ckpt", pooling="mean")
    _test_report(run)  # <run>/metrics.json, found without --report
    folder = tmp_path / "exported"
    assert load_script("export").main([str(ckpt), str(folder)]) == 0

    card = (folder / CARD_NAME).read_text()
    assert card.startswith("# exported\n")
    for expected in (
        "`minilm` (bert, 1 layers, hidden size 32)",
        "| Pooling | `mean` |",
        "| Max length | 64 tokens",
        "`full` (9 content types)",
        "1 broken or gibberish",
        "3 primary focus",
        "`generated`",
        f'load_trained("{folder}")',
        f"python score.py --model {folder}",
        "## Intended use and limits",
        "## Evaluation on the test split",
        "### Headline",
        "| quality | Rounded accuracy | 0.667 | 0.553 | +0.114 |",  # 3.1->3 right, 4.4->4 right, 1.2->1 wrong
        "#### Per level",
    ):
        assert expected in card, expected
    # The exported checkpoint is the tested one: no warning that the numbers belong to another.
    assert "Note: these numbers" not in card
    # Still loads, README or not.
    assert load_trained(folder).model.pooling == "mean"


def test_model_card_report_from_the_command_line_and_its_absence(tmp_path):
    from curator.tasks.card import CARD_NAME

    export = load_script("export")
    ckpt = make_checkpoint(tmp_path / "loose" / "last.ckpt", label_set="coarse")
    assert export.main([str(ckpt), str(tmp_path / "bare")]) == 0
    card = (tmp_path / "bare" / CARD_NAME).read_text()
    assert "No test report was found" in card
    assert "`code` (library, application, script, tutorial)" in card

    report = _test_report(tmp_path / "elsewhere", checkpoint_name="epoch_003.ckpt")
    assert export.main([str(ckpt), str(tmp_path / "with"), "--report", str(report)]) == 0
    card = (tmp_path / "with" / CARD_NAME).read_text()
    assert "### Headline" in card and "measured on `epoch_003.ckpt`, not on the exported `last.ckpt`" in card
    with pytest.raises(FileNotFoundError):
        export.main([str(ckpt), str(tmp_path / "missing"), "--report", str(tmp_path / "nope.json")])
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("form", ["checkpoint", "exported"])
def test_the_packed_path_loads_without_transformers_modelling_code(ckpt, tmp_path, form):
    # What score.py loads on a GPU: the encoder as a BertLikeEncoder, built without importing transformers'
    # modelling code (seconds of every start-up), with the same weights, fingerprint and scores; and the
    # tokenizer from its tokenizer.json, without importing transformers at all.
    model = ckpt
    if form == "exported":
        model = tmp_path / "exported"
        assert load_script("export").main([str(ckpt), str(model)]) == 0
    code = (
        "import sys\n"
        "from curator.scoring.runner import model_fingerprint\n"
        "from curator.tasks.trained import load_trained\n"
        f"t = load_trained({str(model)!r}, packed=True, light_tokenizer=True)\n"
        "print(type(t.model.encoder).__name__, 'transformers.modeling_utils' in sys.modules, "
        "'transformers.models.auto.auto_factory' in sys.modules, 'torch._dynamo' in sys.modules, "
        "'transformers' in sys.modules, model_fingerprint(t.model))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    name, modelling_imported, auto_imported, compiler_imported, transformers_imported, fingerprint = (
        r.stdout.split()
    )
    assert name == "BertLikeEncoder" and modelling_imported == "False"
    # nor the auto classes, nor the compiler, nor transformers itself (the tokenizer is its tokenizer.json)
    assert auto_imported == "False" and compiler_imported == "False" and transformers_imported == "False"
    reference = load_trained(ckpt)  # the Hugging Face encoder
    assert fingerprint == model_fingerprint(reference.model)

    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=1, rows=30)
    for source, out in ((model, "light"), (reference, "hf")):
        score_corpus(source, corpus, tmp_path / out, num_workers=0, device="cpu", progress=False, packed=True)
    a = pq.read_table(tmp_path / "light" / "python" / "train-00000.parquet")
    b = pq.read_table(tmp_path / "hf" / "python" / "train-00000.parquet")
    assert a.equals(b)
