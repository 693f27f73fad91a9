"""Evaluate any checkpoint on a split of labeled shards: the seed's tables as metrics.json, report.md and
confusion-matrix plots.

    python evaluate.py --checkpoint logs/train/runs/len512/<date>_<time>/checkpoints/epoch_002.ckpt \\
        --data data/labeled/heuristic --split test --out reports/len512-test

The checkpoint carries everything needed to rebuild the model (encoder config, tokenizer, label set, pooling,
max_length); nothing is downloaded and no Hydra config is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from curator.cli import BadInput, check_checkpoint_file, check_labeled_data, run

# torch, Lightning and transformers take seconds to import: evaluate() imports them, after the arguments are
# parsed, so that --help and argument errors answer at once.


def evaluate(
    checkpoint: str,
    data: str,
    split: str = "test",
    out: str | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    max_length: int | None = None,
) -> dict[str, Path]:
    check_checkpoint_file(checkpoint)
    import lightning as L
    import torch

    from curator.data.datamodule import CuratorDataModule
    from curator.tasks.console import quiet_startup
    from curator.tasks.module import CuratorTask
    from curator.tasks.report import write_report

    quiet_startup()
    try:
        model = CuratorTask.load_from_checkpoint(checkpoint, map_location="cpu")
    except Exception as e:  # whatever torch or Lightning make of an archive that is not a curator checkpoint
        raise BadInput(
            f"{checkpoint} is not a checkpoint written by train.py: {type(e).__name__}: {e}"
        ) from e
    hp = model.hparams
    datamodule = CuratorDataModule(
        root=data,
        tokenizer=hp.tokenizer,
        label_set=hp.label_set,
        # The length it was trained at, unless asked otherwise (e.g. to see what longer context does).
        max_length=max_length or hp.max_length,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=num_workers,
        packed=hp.get("packed", False),
        code_markers=hp.get("code_markers", False),
        with_path=hp.get("with_path", False),
    )
    check_labeled_data(datamodule, [split])
    gpu = torch.cuda.is_available()
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision="bf16-mixed" if gpu else "32",
        logger=False,
        enable_checkpointing=False,
    )
    trainer.test(model, dataloaders=datamodule.loader(datamodule.stream(split)))

    out_dir = Path(out) if out else Path(checkpoint).resolve().parent.parent / f"eval-{split}"
    meta = {
        "checkpoint": checkpoint,
        "data": data,
        "split": split,
        "encoder": hp.encoder,
        "label_set": hp.label_set,
        "max_length": max_length or hp.max_length,
    }
    return write_report(model.test_report, out_dir, f"{Path(checkpoint).stem}: {split}", meta)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by train.py")
    parser.add_argument("--data", required=True, help="labeled shards: a folder, a parquet glob or a Hub id")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument(
        "--out", default=None, help="report folder (default: eval-<split> beside checkpoints/)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=None, help="default: the checkpoint's")
    args = parser.parse_args(argv)
    paths = evaluate(
        args.checkpoint, args.data, args.split, args.out, args.batch_size, args.num_workers, args.max_length
    )
    print(f"report:  {paths['report']}")
    print(f"metrics: {paths['metrics']}")


if __name__ == "__main__":
    sys.exit(run(main, "evaluate.py"))
