#!/usr/bin/env bash
# Which offline encoder should the quickstart use? Train the quickstart recipe with the packaged pretrained
# MiniLM and with the same architecture randomly initialised, then score both against the gold labels.
#   bash experiments/quickstart_encoder/run.sh      (about 12 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1
RUNS=${RUNS:-/tmp/curator-quickstart-encoder}
python train.py +experiment=quickstart logger=none hydra.run.dir="$RUNS/minilm"
python train.py +experiment=quickstart logger=none model.pretrained=false hydra.run.dir="$RUNS/minilm_random_init"
python experiments/quickstart_encoder/eval_gold.py --runs "$RUNS"
