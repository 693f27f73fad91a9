"""Export a trained checkpoint as one self-contained folder for scoring.

    python export.py logs/train/runs/quickstart/<date>_<time>/checkpoints/epoch_002.ckpt models/curator-minilm

Export the best checkpoint, the one train.py prints at the end (`last.ckpt` beside it is the last epoch's).

The folder holds model.safetensors, curator_config.json (encoder config, label set, pooling, max_length), the
tokenizer files and a model card (README.md) with the run's test tables (`--report`, or found beside the
checkpoint's run); `curator.tasks.trained.load_trained(folder)` and `score.py --model folder` read it without
Hydra, Lightning or a network.
"""

from __future__ import annotations

import argparse
import sys

from curator.cli import check_checkpoint_file, run

# curator.tasks.export imports torch and transformers (seconds): main() imports it after parsing.


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a Lightning checkpoint (.ckpt) written by train.py")
    p.add_argument("out_dir", help="the folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    p.add_argument(
        "--report",
        default=None,
        help="the test report (metrics.json from train.py or evaluate.py) whose tables go into the model card "
        "(default: <run>/metrics.json when the checkpoint is in <run>/checkpoints/)",
    )
    args = p.parse_args(argv)
    check_checkpoint_file(args.checkpoint)
    from curator.tasks.export import export_trained

    out = export_trained(args.checkpoint, args.out_dir, overwrite=args.overwrite, report=args.report)
    print(f"exported {args.checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    # Reading the checkpoint and writing the folder raise OSError or ValueError on bad input: one line each.
    sys.exit(run(main, "export.py", (OSError, ValueError)))
