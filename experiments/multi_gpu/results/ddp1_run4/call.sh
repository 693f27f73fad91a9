#!/bin/bash
# Session 11, 1 H200: train.py plain against trainer=ddp on 1 device, 20,000 rows (as ddp1_run2: 1,431 / 1,258 files/s
# before the logging change), with the host's side of 30 steps from step 260 (cProfile, CUDA sync debug mode).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX=/tmp/pyc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.used --format=csv > $OUT/gpu.txt
timeout 560 python3 experiments/multi_gpu/check_training.py --rows 20000 --devices 1 --ddp-batch same-per-rank --host-profile-steps 260 --run-timeout 250 --work /tmp/ct --out $OUT/train > $OUT/train.log 2>&1; echo rc=$? >> $OUT/train.log
cp /tmp/ct/run-*/host_profile.rank*.json $OUT/train/ 2>/dev/null
for r in single ddp1; do mkdir -p $OUT/train/$r; cp /tmp/ct/run-$r/host_profile.rank*.json /tmp/ct/run-$r/training_speed*.json $OUT/train/$r/ 2>/dev/null; done
tail -n 3 $OUT/train.log; sed -n '1,12p;/host/,/Commands/p' $OUT/train/check_training.md; grep -h "files/s" $OUT/train/*.log | cut -c1-140 | tail -20
