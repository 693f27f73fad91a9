#!/bin/bash
# Session 11, 1 H200: plain, DDP on 1 device, and DDP with the compiled graph in one piece, 20,000 rows, host
# profiles (pstats kept) from step 260, and every recompilation logged.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TORCH_LOGS=recompiles
unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX=/tmp/pyc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
timeout 580 python3 experiments/multi_gpu/check_training.py --rows 20000 --devices 1 --ddp-batch same-per-rank --host-profile-steps 260 --run-timeout 185 --work /tmp/ct --out $OUT/train \
  --ddp-variant "one_graph=task.compile_ddp_split=false" > $OUT/train.log 2>&1; echo rc=$? >> $OUT/train.log
(cd /tmp/ct && tar czf $OUT/runs.tgz run-*/host_profile.rank* run-*/training_speed*.json)
tail -n 3 $OUT/train.log; sed -n '1,12p;/host/,/Commands/p' $OUT/train/check_training.md; grep -h "files/s\|Recompil\|recompil" $OUT/train/*.log | cut -c1-160 | tail -40
