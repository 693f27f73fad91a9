"""The model card (`README.md`) that `export_trained` writes into an exported folder.

It is generated from what the checkpoint records (the task's and the data module's hyperparameters, the epoch
and step) and, when one is found, the test report that train.py or evaluate.py wrote (`metrics.json`), so the
card says what this model is, what it was trained on and how it scored, without anyone copying numbers by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from curator.labels import ORDINAL_HEADS, LabelSet
from curator.tasks.report import report_markdown, side_by_side

CARD_NAME = "README.md"
REPORT_NAME = "metrics.json"


def find_report(checkpoint: str | Path) -> Path | None:
    """`<run>/metrics.json` for a checkpoint at `<run>/checkpoints/*.ckpt` (train.py's layout), if it exists."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent.name != "checkpoints":
        return None
    path = checkpoint.parent.parent / REPORT_NAME
    return path if path.is_file() else None


def checkpoint_record(checkpoint: str | Path) -> dict:
    """What a Lightning checkpoint says about its training, without the tensors."""
    # mmap: only the pickled metadata is read, not gigabytes of weights and optimizer state.
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    return {
        "task": dict(ckpt.get("hyper_parameters") or {}),
        "data": dict(ckpt.get("datamodule_hyper_parameters") or {}),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
    }


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| Setting | Value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _level_names(head) -> str:
    # The rubric's level text starts with its short name: "Broken or gibberish: does not parse ...".
    return ", ".join(f"{level} {text.split(':')[0].lower()}" for level, text in head.levels.items())


def _classes(label_set: LabelSet) -> str:
    parts = []
    for name in label_set.classes:
        members = [full for full, mapped in label_set.mapping.items() if mapped == name and full != name]
        parts.append(f"`{name}`" + (f" ({', '.join(members)})" if members else ""))
    return ", ".join(parts)


def _demote(markdown: str) -> str:
    """One heading level down, so a report's `# title` nests under the card's `## Evaluation`."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def model_card(
    folder: str | Path,
    checkpoint: str | Path,
    config: dict,
    label_set: LabelSet,
    num_parameters: int | None = None,
    report_path: str | Path | None = None,
) -> str:
    """The card's Markdown. `folder` is the exported folder as the user named it (the usage examples load it
    from there); `config` is its `curator_config.json`; `report_path` a `metrics.json`.
    """
    name = Path(folder).name
    checkpoint = Path(checkpoint)
    record = checkpoint_record(checkpoint)
    task, data = record["task"], record["data"]
    encoder_config = config["encoder_config"]
    architecture = (
        f"{encoder_config.get('model_type', '?')}, {encoder_config.get('num_hidden_layers', '?')} layers, "
        f"hidden size {encoder_config.get('hidden_size', '?')}"
    )

    lines = [
        f"# {name}",
        "",
        "A curator classifier for code pretraining data. For each source file it predicts a `quality` score "
        "(1-5), a `structured_data` score (0-3) and a `content_type` class, from one shared encoder with a "
        f"head for each. Exported by curator's `export.py` from `{checkpoint.name}`.",
        "",
        "## Model",
        "",
        *_table(
            [
                ("Encoder", f"`{config.get('encoder')}` ({architecture})"),
                ("Parameters", f"{num_parameters / 1e6:.1f} M" if num_parameters else "n/a"),
                ("Pooling", f"`{config['pooling']}`"),
                (
                    "Max length",
                    f"{config['max_length']} tokens; a longer file is cut, the model sees its head",
                ),
                ("Label set", f"`{label_set.name}` ({len(label_set.classes)} content types)"),
            ]
        ),
        "",
        "| Head | Output | Scale |",
        "|---|---|---|",
    ]
    for head in ORDINAL_HEADS.values():
        lines.append(f"| `{head.name}` | a score, trained by regression (MSE) | {_level_names(head)} |")
    lines += [
        f"| `content_type` | probabilities over the classes (cross-entropy) | {_classes(label_set)} |",
        "",
        "A score becomes a rubric level by rounding half up and clipping to the scale (2.5 is level 3). The "
        "levels and classes are defined in curator's `src/curator/labels.py` (rendered in `docs/rubric.md`).",
        "",
        "## Training",
        "",
    ]
    weights = task.get("loss_weights") or {}
    training = [
        ("Labeled data", f"`{data['root']}`" if data.get("root") else "n/a (not recorded in the checkpoint)"),
        ("Saved at", f"epoch {record['epoch']} (0-based), step {record['global_step']}"),
        ("Batch size", str(data.get("batch_size", "n/a"))),
        (
            "Learning rate",
            f"{task.get('lr', 'n/a')} (weight decay {task.get('weight_decay', 'n/a')}, "
            f"warmup ratio {task.get('warmup_ratio', 'n/a')})",
        ),
        ("Loss weights", ", ".join(f"{k} {v}" for k, v in weights.items()) or "n/a"),
    ]
    if task.get("freeze_layers"):
        training.append(("Frozen encoder layers", f"the lowest {task['freeze_layers']} and the embeddings"))
    if data.get("seed") is not None:
        training.append(("Seed", str(data["seed"])))
    lines += _table(training)
    lines += [
        "",
        "The labels come from the labeled shards' labeler (an LLM judge or the rule-based heuristic labeler; "
        "each shard's `labeler` column says which). The model learns that labeler's judgement, including its "
        "mistakes.",
        "",
        "## Intended use and limits",
        "",
        "- Use: rank and filter the files of a code corpus (StarCoderData's layout) for pretraining, with "
        "thresholds chosen on a labeled split; curator's `notebooks/error_analysis.ipynb` shows what a "
        "threshold keeps and how precise the kept set is.",
        f"- The model sees only the first {config['max_length']} tokens of a file.",
        "- Scores are regression outputs, not probabilities; the content-type probabilities are not calibrated "
        "either. Compare files by score, and pick thresholds by measurement rather than by the scale's names.",
        "- Levels and classes that are rare in the training labels (usually quality 1 and 5, the less common "
        "content types) are predicted poorly; the per-level tables below show where.",
        "- Languages and kinds of code absent from the training data are untested.",
        "- It does not judge licences, secrets, personal data or malicious code; those need their own filters.",
        "",
        "## How to use",
        "",
        "```python",
        "import torch",
        "from curator.tasks.trained import load_trained",
        "",
        f'trained = load_trained("{folder}")  # device="cuda" for a GPU',
        "# The model's own input path (curator.data.inputs): the same tokens for a file as in training.",
        "encoder = trained.input_encoder()",
        'x = encoder.encode(["def add(a, b):\\n    return a + b\\n"], ["src/calc.py"])[0]',
        "ids = torch.tensor([x.ids])",
        "out = trained.model(ids, torch.ones_like(ids))",
        '# out["quality"], out["structured_data"]: scores; out["content_type"]: logits over',
        "# trained.label_set.classes",
        "```",
        "",
        "Score a whole corpus (resumable, one process per GPU), then keep what passes your thresholds:",
        "",
        "```bash",
        f"python score.py --model {folder} --corpus data/sample --out scores/{name}",
        f'python filter.py --scores scores/{name} --out kept/{name} --where "quality >= 2.5"',
        "```",
        "",
    ]
    lines += _evaluation(checkpoint, report_path)
    return "\n".join(lines).rstrip() + "\n"


def _evaluation(checkpoint: Path, report_path) -> list[str]:
    if report_path is None:
        return [
            "## Evaluation",
            "",
            "No test report was found beside the checkpoint. `python evaluate.py --checkpoint CKPT --data DIR "
            "--split test` writes one (`metrics.json`); `python export.py CKPT OUT --report PATH` puts its "
            "tables here.",
        ]
    report = json.loads(Path(report_path).read_text())
    meta = report.pop("meta", None) or {}
    split = meta.get("split", "test")
    # The report's own `# title` becomes the card's `## Evaluation ...` section, its sections nest below.
    heading, body = _demote(report_markdown(report, f"Evaluation on the {split} split", meta or None)).split(
        "\n", 1
    )
    lines = [heading, "", f"The tables of the run's test report (`{Path(report_path).name}`).", ""]
    tested = meta.get("checkpoint")
    if tested and Path(tested).name != checkpoint.name:
        # train.py tests the best checkpoint; exporting last.ckpt (or another epoch) gets that one's numbers.
        lines += [
            f"Note: these numbers were measured on `{Path(tested).name}`, not on the exported "
            f"`{checkpoint.name}`; run evaluate.py on it for its own.",
            "",
        ]
    # Held-out sets that train.py evaluated the same checkpoint on (eval_sets: the gold set), beside the split.
    others = {p.parent.name: p for p in sorted(Path(report_path).parent.glob(f"*/{REPORT_NAME}"))}
    if others:
        reports = {f"{split} split": report}
        for name, path in others.items():
            other = json.loads(path.read_text())
            other.pop("meta", None)
            reports[name] = other
        lines += ["### Beside the test split", "", side_by_side(reports), ""]
    return lines + [body.lstrip("\n")]
