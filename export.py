"""Export a trained checkpoint as one self-contained folder for scoring.

    python export.py logs/train/runs/quickstart/<date>_<time>/checkpoints/epoch_002.ckpt models/curator-minilm
    HF_TOKEN=... python export.py CKPT models/curator-minilm --push-to-hub me/curator-minilm

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
    p.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="then upload the folder to this Hub model repository (owner/name; created if missing) with "
        "huggingface_hub; the token comes from HF_TOKEN (or `hf auth login`) and is never printed",
    )
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    args = p.parse_args(argv)
    check_checkpoint_file(args.checkpoint)
    from curator.tasks.export import export_trained, push_to_hub

    out = export_trained(args.checkpoint, args.out_dir, overwrite=args.overwrite, report=args.report)
    print(f"exported {args.checkpoint} -> {out}")
    if args.push_to_hub:
        try:
            url = push_to_hub(out, args.push_to_hub, private=args.private)
        except (PermissionError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"pushed {out} -> {args.push_to_hub} ({url}); score with: score.py --model {args.push_to_hub}")
    return 0


if __name__ == "__main__":
    # Reading the checkpoint and writing the folder raise OSError or ValueError on bad input: one line each.
    sys.exit(run(main, "export.py", (OSError, ValueError)))
