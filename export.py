"""Export a trained checkpoint as one self-contained folder for scoring.

    python export.py outputs/.../last.ckpt models/curator-minilm

The folder holds model.safetensors, curator_config.json (encoder config, label set, pooling, max_length) and the
tokenizer files; `curator.models.trained.load_trained(folder)` and `score.py --model folder` read it without
Hydra, Lightning or a network.
"""

from __future__ import annotations

import argparse
import sys

from curator.models.trained import export_trained


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a Lightning checkpoint (.ckpt) written by train.py")
    p.add_argument("out_dir", help="the folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    args = p.parse_args(argv)
    out = export_trained(args.checkpoint, args.out_dir, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
