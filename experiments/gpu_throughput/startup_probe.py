"""What score.py's start-up is made of on a GPU host, piece by piece: torch's import, making the GPU current, the
first allocation, curator's imports, loading the model on the CPU (its tokenizer included), the fingerprint and
the copy to the GPU.

    PYTHONPATH=src python experiments/gpu_throughput/startup_probe.py MODEL.ckpt [--hf-tokenizer]

Prints seconds per piece as JSON. The tokenizer is read as score.py reads it (its tokenizer.json, without
transformers); `--hf-tokenizer` loads transformers' class instead, as before that change. `results/startup_run1`
has two runs on an H200 host beside score.py's own start-up lines, `python -X importtime score.py` and a cProfile
of a whole short run.
"""

import json
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402

t_torch = time.perf_counter()
dev = torch.device("cuda", 0)
torch.cuda.set_device(dev)
t_set = time.perf_counter()
torch.empty(1, device=dev)
t_alloc = time.perf_counter()
from curator.scoring import runner  # noqa: E402
from curator.tasks.trained import load_trained  # noqa: E402

t_imp = time.perf_counter()
light = "--hf-tokenizer" not in sys.argv[2:]
trained = load_trained(sys.argv[1], device="cpu", packed=True, light_tokenizer=light)
t_load = time.perf_counter()
runner.model_fingerprint(trained.model)
t_fp = time.perf_counter()
trained.model.to(dev)
torch.cuda.synchronize()
t_to = time.perf_counter()
print(json.dumps({
    "tokenizer": type(trained.tokenizer).__name__, "transformers imported": "transformers" in sys.modules,
    "import torch": t_torch - t0, "set_device": t_set - t_torch, "first alloc": t_alloc - t_set,
    "import curator runner+trained": t_imp - t_alloc, "load_trained (cpu)": t_load - t_imp,
    "fingerprint": t_fp - t_load, "to(cuda)": t_to - t_fp,
}, indent=1))  # fmt: skip
