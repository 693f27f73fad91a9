#!/bin/bash
# Session 11, 1 H200: plain against DDP on 1 device with the compiled graph in one piece, without and with
# gradients as bucket views (the reducer's copies into and out of its buckets), 20,000 rows, host profiles.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX=/tmp/pyc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
timeout 580 python3 experiments/multi_gpu/check_training.py --rows 20000 --devices 1 --ddp-batch same-per-rank --host-profile-steps 260 --run-timeout 185 --work /tmp/ct --out $OUT/train \
  --extra "task.compile_ddp_split=false" \
  --ddp-variant "bucket_view=trainer.strategy={_target_:lightning.pytorch.strategies.DDPStrategy,gradient_as_bucket_view:true}" > $OUT/train.log 2>&1; echo rc=$? >> $OUT/train.log
(cd /tmp/ct && tar czf $OUT/runs.tgz run-*/host_profile.rank* run-*/training_speed*.json)
tail -n 3 $OUT/train.log; sed -n '1,12p;/host/,/Commands/p' $OUT/train/check_training.md; grep -h "files/s" $OUT/train/*.log | cut -c1-160 | tail -40
