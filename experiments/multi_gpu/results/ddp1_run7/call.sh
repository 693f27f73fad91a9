#!/bin/bash
# Session 11, 1 H200: plain against DDP on 1 device with the new defaults (one compiled graph, gradients as bucket
# views, no buffer broadcast) and with the old ones (graph split at the buckets, Lightning's "ddp"), 20,000 rows.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX=/tmp/pyc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
timeout 560 python3 experiments/multi_gpu/check_training.py --rows 20000 --devices 1 --ddp-batch same-per-rank --run-timeout 185 --work /tmp/ct --out $OUT/train \
  --ddp-variant "old_defaults=task.compile_ddp_split=true trainer.strategy=ddp" > $OUT/train.log 2>&1; echo rc=$? >> $OUT/train.log
tail -n 3 $OUT/train.log; sed -n '1,12p' $OUT/train/check_training.md; grep -h "files/s" $OUT/train/*.log | cut -c1-160 | tail -40
