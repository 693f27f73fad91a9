#!/bin/bash
# Session 11, 1 H200: start-up with the tokenizer read from tokenizer.json (no transformers) against transformers'
# class: startup_probe.py alternating, then score.py as typed on the shipped sample, twice.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX=/tmp/pyc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
P=experiments/gpu_throughput/startup_probe.py; M=.gpu/student_half
python3 $P $M > /dev/null 2>&1; python3 $P $M --hf-tokenizer > /dev/null 2>&1   # bytecode cache warm for both
for i in 1 2 3; do
  python3 $P $M > $OUT/probe_light$i.json 2>> $OUT/probe.err
  python3 $P $M --hf-tokenizer > $OUT/probe_hf$i.json 2>> $OUT/probe.err
done
for i in 1 2; do
  rm -rf /tmp/scores$i; /usr/bin/time -f "wall %e s" python3 score.py --model $M --corpus data/sample --out /tmp/scores$i > $OUT/score$i.log 2>&1
done
python3 - <<'PY'
import json, glob, os
out = os.environ["OUT"]
for kind in ("light", "hf"):
    rows = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/probe_{kind}*.json"))]
    print(kind, rows[0]["tokenizer"], rows[0]["transformers imported"], "load_trained (cpu):", [round(r["load_trained (cpu)"], 2) for r in rows], "import torch:", [round(r["import torch"], 2) for r in rows])
PY
grep -h "start-up\|wall\|files/s" $OUT/score*.log | cut -c1-200
