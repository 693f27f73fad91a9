"""Score a corpus: plan the unfinished work of this rank, run the model over it, write score files.

Many GPUs and machines: every rank (a process, one GPU each) takes the shards at positions rank, rank+W,
rank+2W, ... of the sorted shard list and skips those already done. No rank talks to another: the assignment is
a pure function of (shard list, rank, world size), so any rank can die and be restarted alone, and a re-run of
the whole job redoes only what is missing. RANK/WORLD_SIZE/LOCAL_RANK come from torchrun, or from Slurm's
SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID when launched with srun directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import logging
import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import curator
from curator.data.shards import write_parquet_atomic
from curator.models import add_norm
from curator.models.encoder import avoid_cudnn_attention
from curator.models.fp8 import check_fp8_device, to_fp8
from curator.models.packed import (
    PackedClassifier,
    fuse_qkv,
    supports_packing,
    use_fused_add_norm,
    use_gelu_epilogue,
)
from curator.scoring import outputs
from curator.scoring.batching import (
    ErrorRows,
    ModelBatch,
    Part,
    PartDone,
    PartFailed,
    Progress,
    ScoreDataset,
    keep_as_is,
)
from curator.scoring.launch import LOCAL_RANK_VARS, PER_MACHINE_VARS, RANK_VARS, WORLD_VARS, env_int
from curator.scoring.sources import HF_PREFIX, Shard, list_shards, num_rows
from curator.scoring.windows import CostEstimate, combine, estimate_cost
from curator.tasks.trained import TrainedModel, load_trained

log = logging.getLogger(__name__)

# Compiling the packed encoder costs a fixed time at start (about 14 s on a fresh H200, 5 s with Inductor's
# cache warm) and then saves a share of every batch's GPU time; below this many files on a rank the run ends
# before the saving pays for it (experiments/gpu_throughput: score_cli_bench, compiled against eager).
COMPILE_MIN_ROWS = 1_000_000
PRECISIONS = ("bf16", "fp8")


@dataclass
class ScoreSummary:
    rank: int
    world_size: int
    shards: int = 0  # shards assigned to this rank
    shards_done_before: int = 0  # already complete when the run began
    rows_scored: int = 0
    tokens: int = 0  # tokens that went through the model (after truncation, padding not counted)
    windows: int = 0  # model inputs scored: a file each, or more with --max-windows
    multi_window_files: int = 0  # files scored in more than one window
    estimate: CostEstimate | None = None  # the cost measured on a sample before the run (--max-windows > 1)
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)  # parts that could not be scored this time (re-run)
    # Where the main process spent its time: waiting for the workers' next batch (too few workers), waiting for
    # the GPU's scores (the GPU is the limit, as it should be), writing score files; and the start-up time.
    input_wait_s: float = 0.0
    launch_s: float = 0.0  # queueing each batch's forward (host-side work of the model call)
    gpu_wait_s: float = 0.0
    place_s: float = 0.0  # putting each batch's scores in place in its part
    # writing a progress part, handing finished parts to the writer thread, waiting for it at the end
    write_s: float = 0.0
    first_batch_s: float | None = None
    # Seconds before the loop: loading the model, compiling it (while the workers start), the rest.
    startup: dict[str, float] = field(default_factory=dict)
    forward: str = ""  # the forward that ran (_Model.description): packed or padded, bf16 or fp8, compiled

    @property
    def other_s(self) -> float:
        """Loop time not in the stages above (bookkeeping, the progress bar)."""
        return self.seconds - (
            self.input_wait_s + self.launch_s + self.gpu_wait_s + self.place_s + self.write_s
        )

    @property
    def windows_per_file(self) -> float:
        return self.windows / max(self.rows_scored, 1)

    @property
    def files_per_s(self) -> float:
        return self.rows_scored / max(self.seconds, 1e-9)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def rank_and_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's variables, else Slurm's, else a single process."""
    rank = env_int(RANK_VARS, 0)
    world = env_int(WORLD_VARS, 1)
    local = env_int(LOCAL_RANK_VARS, 0)
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside world size {world}")
    return rank, world, local


def default_num_workers() -> int:
    """Tokenizing workers per rank: this machine's cores shared among the ranks on it, less two for the rank's
    own process and its pinning thread. Too few starve the GPU (a second rank with 2 workers waited 6.8 s for
    input against 0.1 s for its GPU); too many only oversubscribe the cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks_here = env_int(PER_MACHINE_VARS, 1)
    return max(1, min(cores // max(ranks_here, 1) - 2, 16))


def default_tokens_per_batch(device: torch.device) -> int:
    """Real tokens per batch: a power of two near 1,024 per GiB of GPU memory, from 16,384 to 131,072.

    Every batch costs the host a launch (about 10 ms at 65,536 tokens on an H200, next to about 15 ms of the
    GPU's own time: experiments/multi_gpu), so large GPUs get large batches; a batch that does not fit is halved.
    """
    if device.type != "cuda":
        return 16_384
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return int(min(131_072, max(16_384, 2 ** int(math.log2(max(gib, 1) * 1024)))))


def pick_device(device: str, local_rank: int) -> torch.device:
    """The rank's device, always with an index on a GPU: "auto" and a bare "cuda" mean this rank's GPU
    (local rank modulo the GPUs visible), since making the device current needs to know which one."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        visible = torch.cuda.device_count()
        if dev.index is None:
            dev = torch.device("cuda", local_rank % max(visible, 1))
        if dev.index >= visible:
            # CUDA's own word for it, "invalid device ordinal", comes later and says less.
            raise ValueError(
                f"{dev} asked for, but this machine shows {visible} GPU(s)"
                + (
                    f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']})"
                    if "CUDA_VISIBLE_DEVICES" in os.environ
                    else ""
                )
            )
    return dev


def model_fingerprint(model: torch.nn.Module) -> str:
    """A digest of the weights that does not depend on where they were loaded from (checkpoint or export)."""
    h = hashlib.sha1()
    for name, p in model.state_dict().items():
        h.update(f"{name}{tuple(p.shape)}{p.detach().double().sum().item():.6e}".encode())
    return h.hexdigest()


class _Pending:
    """Results of one part as they arrive, in whatever order its batches come; written once all are in.

    A file scored in several windows (`curator.scoring.windows`) is placed when its last window arrives, with
    the windows' combined scores; until then it counts as not received, so no part file is written without it.
    """

    def __init__(self, part: Part, num_classes: int):
        n = part.num_rows
        self.part = part
        self.rows: list = [None] * n  # the RowInfo of each row, at its position in the part
        self.quality = np.full(n, np.nan, np.float32)
        self.structured_data = np.full(n, np.nan, np.float32)
        self.probs = np.zeros((n, num_classes), np.float32)
        self.received = 0
        self.partial: dict[int, list] = {}  # position -> [windows in, their weights, their scores]
        self.written = part.start  # rows before this one are in part files already
        self.last_write = time.perf_counter()

    def add(self, rows: list, scores: np.ndarray | None) -> None:
        """Place rows (a window of a file each); `scores` holds quality, structured_data and the class
        probabilities per row."""
        if scores is not None and any(r.windows > 1 for r in rows):
            whole = [j for j, r in enumerate(rows) if r.windows <= 1]
            for j, r in enumerate(rows):
                if r.windows > 1:
                    self._add_window(r, scores[j])
            rows, scores = [rows[j] for j in whole], scores[whole]
        positions = [r.index - self.part.start for r in rows]
        for row, at in zip(rows, positions, strict=True):
            self.rows[at] = row
        if scores is not None:
            self._place(positions, scores)
        self.received += len(positions)

    def _place(self, positions, scores: np.ndarray) -> None:
        self.quality[positions], self.structured_data[positions], self.probs[positions] = (
            scores[:, 0],
            scores[:, 1],
            scores[:, 2:],
        )

    def _add_window(self, row, scores: np.ndarray) -> None:
        at = row.index - self.part.start
        got = self.partial.setdefault(at, [0, [], []])
        got[0] += 1
        got[1].append(row.weight)
        got[2].append(scores)
        if got[0] == row.windows:
            del self.partial[at]
            self.rows[at] = row
            self._place([at], combine(np.stack(got[2]), got[1])[None, :].astype(np.float32))
            self.received += 1

    def write(self, out: Path, upto: int, language: str, classes) -> None:
        """Write rows written..upto-1 (all placed) as one part file."""
        a, b = self.written - self.part.start, upto - self.part.start
        if b <= a:
            return
        missing = sum(r is None for r in self.rows[a:b])
        if missing:
            raise RuntimeError(f"{self.part.shard.uri}: {missing} rows before row {upto} have no result")
        table = outputs.build_table(
            language, self.rows[a:b], self.quality[a:b], self.structured_data[a:b], self.probs[a:b], classes
        )
        write_parquet_atomic(table, outputs.part_path(out, self.part.shard, self.written, upto))
        self.rows[a:b] = [None] * (b - a)  # written: the memory can go
        self.written, self.last_write = upto, time.perf_counter()


class _Model:
    """The forward that scoring runs: packed bf16 on a GPU where the encoder allows it, else padded.

    Packed (`curator.models.packed`) runs every layer on real tokens only and attention through Flash
    Attention's variable-length kernel; with the encoder's weights in bf16 rather than under autocast it saves
    the casts too. Heads stay in fp32 either way.

    precision "fp8" (packed only): the transformer layers' matmuls in float8 (`curator.models.fp8`), query, key
    and value fused into one. qkv_fused: that fusion, in bf16 too (None: with fp8 only). gelu_epilogue: the
    feed-forward's bias and GELU applied by its matmul (`curator.models.packed.use_gelu_epilogue`; None: on a GPU
    in bf16 for a GELU encoder); fused_add_norm: each sublayer's residual add and LayerNorm as one Triton kernel
    (`curator.models.packed.use_fused_add_norm`; None: on a GPU with Triton, unless compiled, which fuses them
    itself).
    """

    def __init__(
        self,
        classifier,
        device: torch.device,
        packed: bool,
        compile: bool,
        precision: str = "bf16",
        qkv_fused: bool | None = None,
        gelu_epilogue: bool | None = None,
        fused_add_norm: bool | None = None,
    ):
        self.classifier = classifier
        self.device = device
        self.precision = precision
        if precision == "fp8" and not packed:
            raise ValueError(
                "precision fp8 runs on the packed forward, which needs a BERT- or RoBERTa-family encoder "
                "(and no --padded)"
            )
        self.packed = PackedClassifier(classifier) if packed else None
        self.compiled = False
        self.qkv_fused = False
        self.gelu_epilogue = False
        self.fused_add_norm = False
        if self.packed is None:
            avoid_cudnn_attention()
            return
        if device.type == "cuda":
            classifier.encoder.to(torch.bfloat16)
        self.qkv_fused = qkv_fused if qkv_fused is not None else precision == "fp8"
        if precision == "fp8":
            # After the cast to bf16: a later .to(dtype) would cast the float8 weights as well.
            to_fp8(self.packed.encoder, fuse=self.qkv_fused)
        elif self.qkv_fused:
            fuse_qkv(self.packed.encoder)
        if gelu_epilogue is None:
            gelu_epilogue = (
                device.type == "cuda" and precision == "bf16" and self.packed.encoder.act is F.gelu
            )
        if gelu_epilogue:
            self.gelu_epilogue = True
            use_gelu_epilogue(self.packed.encoder)
        if fused_add_norm is None:
            fused_add_norm = add_norm.available(device) and not compile
        if fused_add_norm:
            if not add_norm.available(device):
                raise ValueError("the fused add-and-LayerNorm kernel needs a CUDA GPU and Triton")
            self.fused_add_norm = True
            use_fused_add_norm(self.packed.encoder)
        if compile:
            self.compiled = True
            # dynamic: the packed length changes every batch; max_seqlen is held constant (see __call__).
            self.packed.encoder.compile_layers({"dynamic": True})

    @property
    def description(self) -> str:
        if self.packed is None:
            return "padded"
        if self.precision == "fp8":
            kind = "packed fp8 (row-wise scaled matmuls)"
        else:
            kind = "packed bf16" if self.device.type == "cuda" else "packed fp32"
        fused = (
            (", fused qkv" if self.qkv_fused else "")
            + (", GELU in the matmul" if self.gelu_epilogue else "")
            + (", add and LayerNorm fused" if self.fused_add_norm else "")
        )
        return kind + fused + (", compiled" if self.compiled else "")

    def warm_up(self, max_length: int, vocab_size: int) -> float:
        """Compile before the first real batch (seconds spent), on a made-up batch of a few files.

        Called while the DataLoader's workers start and tokenize their first windows, so that the compile
        overlaps them: torch.compile's when compiled, Triton's for the fused add-and-LayerNorm kernel (once per
        machine: Triton keeps it in its cache). Compiler support differs between torch builds and machines, and
        a compiler that fails should cost speed, not the run: the encoder then runs eager, unfused.
        """
        if not (self.compiled or self.fused_add_norm):
            return 0.0
        t = time.perf_counter()
        bound = max_length if self.device.type == "cuda" else None
        try:
            # Under inference mode like the real batches (tensors made outside it would not match the compiled
            # code's guards, and everything would compile again). Several files of different lengths, since
            # sizes of 0 and 1 are specialised; then a batch of a single file, which a window's last batch can
            # be, so that it does not compile in the middle of the run.
            with torch.inference_mode():
                for lengths in ([max_length, max_length // 2, 7, 3], [max_length // 2]):
                    cu = torch.tensor(
                        [0, *itertools.accumulate(lengths)], dtype=torch.int32, device=self.device
                    )
                    ids = torch.randint(3, vocab_size, (sum(lengths),), dtype=torch.int32, device=self.device)
                    self.packed(ids, cu, bound or max(lengths))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:
            what = "torch.compile" if self.compiled else "the fused add-and-LayerNorm kernel"
            log.warning("%s failed, scoring without it (%s: %s)", what, type(e).__name__, str(e)[:300])
            self.packed.encoder.compile_layers(None)
            self.packed.encoder.fused_add_norm = None
            self.compiled = self.fused_add_norm = False
        return time.perf_counter() - t

    def __call__(self, batch: ModelBatch, max_length: int) -> dict:
        dev = self.device
        if self.packed is None:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                return self.classifier(
                    batch.input_ids.to(dev, non_blocking=True),
                    batch.attention_mask.to(dev, non_blocking=True),
                )
        cu_seqlens = batch.cu_seqlens
        # The kernel takes max_seqlen as a bound; a constant one keeps a compiled graph from recompiling.
        bound = max_length if dev.type == "cuda" else int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        return self.packed(
            batch.input_ids.to(dev, non_blocking=True), cu_seqlens.to(dev, non_blocking=True), bound
        )


class _Launched:
    """Scores of a batch on their way to the host: the copy is queued behind the forward, not waited on, so
    the host can fetch and launch the next batch while the GPU works (one batch in flight)."""

    def __init__(self, scores: torch.Tensor):
        if scores.is_cuda:
            # The event goes on the stream that ran the forward and the copy: the stream of the scores'
            # device, named explicitly. `record()` alone would use the *current* device's stream, and a
            # process scoring on cuda:1 while its current device is cuda:0 would then read the host buffer
            # before the copy had landed (wrong scores, no error).
            stream = torch.cuda.current_stream(scores.device)
            self.host = torch.empty(scores.shape, dtype=scores.dtype, pin_memory=True)
            with torch.cuda.stream(stream):
                self.host.copy_(scores, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record(stream)
        else:
            self.host, self.ready = scores, None

    def result(self) -> np.ndarray:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.numpy()


class _Joined:
    def __init__(self, pieces: list):
        self.pieces = pieces

    def result(self) -> np.ndarray:
        return np.concatenate([p.result() for p in self.pieces])


def _launch(model: _Model, batch: ModelBatch, max_length: int):
    """Start the forward of a batch; `.result()` gives files x (quality, structured_data, class probabilities).

    A GPU out-of-memory error halves the batch instead of ending the run.
    """
    try:
        out = model(batch, max_length)
        probs = torch.softmax(out["content_type"].float(), dim=-1)
        # One device-to-host copy per batch rather than one per head.
        scores = torch.cat(
            [out["quality"].float()[:, None], out["structured_data"].float()[:, None], probs], 1
        )
        return _Launched(scores)
    except torch.OutOfMemoryError:
        if len(batch.rows) == 1:
            raise
        with torch.cuda.device(model.device):
            torch.cuda.empty_cache()
        return _Joined([_launch(model, half, max_length) for half in batch.halves()])


class _Writer:
    """Score files written on a thread of their own, in the order they are handed over.

    A finished part's rows must all be placed before its file is written, which drains the one batch in flight:
    written in the loop, the GPU sat idle for every part file and every shard merge. Handed to this thread, they
    are written while the GPU scores the next batches. One thread keeps the order (a shard is merged after its
    parts are written) and pyarrow releases the GIL while it encodes and writes. A write that fails is raised
    in the loop at the next hand-over, or at `close`. At most `max_queued` parts wait (each holds its rows in
    memory): on a disk slower than the GPU the loop then waits for the oldest.
    """

    def __init__(self, max_queued: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curator-writer")
        self._futures: deque = deque()
        self.max_queued = max_queued

    def submit(self, fn, *args) -> None:
        while self._futures and (self._futures[0].done() or len(self._futures) >= self.max_queued):
            self._futures.popleft().result()  # raises the error of a failed write
        self._futures.append(self._pool.submit(fn, *args))

    def close(self) -> None:
        """Wait for every write; raise the first that failed."""
        while self._futures:
            self._futures.popleft().result()

    def shutdown(self) -> None:
        # What was handed over is still written (a part file is whole or absent), then the thread ends.
        self._pool.shutdown(wait=True)


def _write_part(acc, out: Path, open_parts: dict, part: Part, k: int, classes) -> None:
    acc.write(out, part.stop, part.shard.language, classes)
    _maybe_merge(out, open_parts, part.shard, k)


def _plan(shards: list[Shard], out: Path, rows_per_part: int, summary: ScoreSummary):
    """The parts still to score (the row ranges that no complete part file covers, cut to rows_per_part), and
    for each shard with work left its row count and the indices of its parts."""
    parts: list[Part] = []
    open_parts: dict[Shard, tuple[int, set[int]]] = {}
    for shard in shards:
        try:
            n = num_rows(shard)
        except Exception as e:  # an unreadable file must not stop the other shards
            summary.failed.append(f"{shard.uri}: {type(e).__name__}: {e}")
            log.error("cannot read %s, skipped: %s", shard.uri, e)
            continue
        if outputs.is_complete(outputs.shard_path(out, shard), n):
            summary.shards_done_before += 1
            # A run killed between writing the merged file and removing the parts leaves them behind.
            outputs.remove_parts(out, shard)
            continue
        outputs.remove_leftovers(out, shard)
        gaps = outputs.missing_ranges(n, outputs.done_chunks(out, shard))
        if not gaps:
            outputs.merge_parts(out, shard, n)
            continue
        todo = set()
        for lo, hi in gaps:
            for a in range(lo, hi, rows_per_part):
                todo.add(len(parts))
                parts.append(Part(shard, a, min(a + rows_per_part, hi), str(outputs.parts_dir(out, shard))))
        open_parts[shard] = (n, todo)
    return parts, open_parts


def score_corpus(
    model: str | Path | TrainedModel,
    corpus: str | Path,
    out: str | Path,
    *,
    languages: list[str] | None = None,
    tokens_per_batch: int | None = None,
    window: int = 1024,
    num_workers: int | None = None,
    rows_per_part: int = 50_000,
    write_every_s: float = 60.0,
    max_chars: int | None = None,
    device: str = "auto",
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    packed: bool | None = None,
    compile: bool | None = None,
    precision: str = "bf16",
    max_windows: int = 1,
    gelu_epilogue: bool | None = None,
    fused_add_norm: bool | None = None,
) -> ScoreSummary:
    """Score every unfinished shard of this rank; see score.py --help for the knobs.

    max_windows: a file longer than the model's window is scored as up to this many windows, combined by
    `curator.scoring.windows.combine` (1: the head only).

    packed: None picks the packed bf16 forward on a GPU for BERT/RoBERTa-family encoders, the padded one
    elsewhere; compile: torch.compile the packed encoder (None: on a GPU when this rank has at least
    COMPILE_MIN_ROWS files to score, where the saving outweighs the compile; a compiler that fails falls back
    to the eager encoder); precision: "bf16" (the forward above) or "fp8" (the packed forward with float8
    matmuls: a GPU of compute capability 8.9 or newer); gelu_epilogue: the feed-forward's bias and GELU
    (tanh-approximated) inside its matmul (None: on a GPU in bf16; False: the exact GELU, a kernel of its own);
    fused_add_norm: each sublayer's residual add and LayerNorm as one Triton kernel (None: on a GPU with Triton
    when not compiled; False: PyTorch's two kernels).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp8" and packed is False:
        raise ValueError("precision fp8 runs on the packed forward: drop --padded")
    if max_windows < 1:
        raise ValueError(f"--max-windows must be at least 1, not {max_windows}")
    t_enter = time.perf_counter()
    env_rank, env_world, local_rank = rank_and_world()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    summary = ScoreSummary(rank, world_size)
    out = Path(out)
    dev = pick_device(device, local_rank)
    if precision == "fp8":
        check_fp8_device(dev)  # before the model is loaded and before any output folder is made
    if dev.type == "cuda":
        # Everything that uses "the current device" (the DataLoader's pinning thread, events, streams,
        # empty_cache, the compiler's kernels) must mean this rank's GPU, not cuda:0.
        torch.cuda.set_device(dev)
    if num_workers is None:
        num_workers = default_num_workers()
    if tokens_per_batch is None:
        tokens_per_batch = default_tokens_per_batch(dev)
    if num_workers > 0:
        # The workers tokenize one file list each. A fast tokenizer whose thread pool was used before the fork
        # deadlocks in the forked workers when TOKENIZERS_PARALLELISM=true is set (seen on a 16-core GPU
        # machine: no row scored in minutes), so this overrides the user's setting instead of deferring to it.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"

    # The corpus first: a missing or empty one is an error before minutes of model loading, and before any
    # output folder is made.
    mine = list_shards(corpus, languages)[rank::world_size]
    t_model = time.perf_counter()
    trained = model
    if not isinstance(trained, TrainedModel):
        # On the packed path (the default on a GPU) the encoder is built without transformers' modelling code.
        packed_only = packed if packed is not None else (dev.type == "cuda" or precision == "fp8")
        # On the CPU first: the tokenizing workers start before the weights go to the GPU (below). Scoring needs
        # the tokenizer's ids only: read without transformers (seconds of every start-up).
        trained = load_trained(model, device="cpu", packed=packed_only, light_tokenizer=True)
    classes = trained.label_set.classes
    if precision == "fp8" and not supports_packing(trained.model.encoder):
        raise ValueError(
            f"precision fp8 runs on the packed forward, which supports BERT- and RoBERTa-family encoders; "
            f"this model's is {trained.model.encoder.config.model_type!r}"
        )
    if packed is None:  # decided here, once: the workers batch for it before the model is on the GPU
        packed = (dev.type == "cuda" or precision == "fp8") and supports_packing(trained.model.encoder)
    run_info = {
        "format_version": outputs.FORMAT_VERSION,
        "curator_version": curator.__version__,
        "model": str(model) if not isinstance(model, TrainedModel) else None,
        "model_fingerprint": model_fingerprint(trained.model),
        "label_set": trained.label_set.name,
        "content_types": list(classes),
        "max_length": trained.max_length,
        # bf16: the default forward (packed bf16 on a GPU, fp32 on a CPU); fp8: float8 matmuls. Scores of the
        # two differ slightly, so a folder holds one or the other.
        "precision": precision,
        "max_windows": max_windows,
        "columns": [f.name for f in outputs.ALL_FIELDS],
        "corpus": str(corpus) if str(corpus).startswith(HF_PREFIX) else str(Path(corpus).resolve()),
    }
    # Every rank checks the folder it resumes into (a rank may be restarted alone, with another model);
    # the first to arrive writes the file, atomically, and the others compare against it.
    outputs.write_meta(out, run_info)

    summary.shards = len(mine)
    parts, open_parts = _plan(mine, out, rows_per_part, summary)
    total = sum(p.num_rows for p in parts)
    log.info(
        "rank %d/%d: %d shards, %d done before, %d parts (%d rows) to score on %s",
        rank, world_size, len(mine), summary.shards_done_before, len(parts), total, dev,
    )  # fmt: skip
    if not parts:
        return summary

    encoder = trained.input_encoder(max_chars)
    if max_windows > 1:
        summary.estimate = estimate_cost(parts, encoder, max_windows)
        if summary.estimate is not None:
            log.info("%s", summary.estimate.describe())
    loader_options = {}
    if "in_order" in inspect.signature(DataLoader).parameters:
        # Items as the workers finish them, not worker by worker: a worker tokenizing its next window would
        # otherwise hold up the batches the others have ready. Each item names its part and row positions,
        # and one worker's items keep their order, so a part's PartDone still comes after its batches.
        loader_options["in_order"] = False
    loader = DataLoader(
        ScoreDataset(parts, encoder, window, tokens_per_batch, packed=packed, max_windows=max_windows),
        batch_size=None,
        collate_fn=keep_as_is,
        num_workers=num_workers,
        prefetch_factor=4 if num_workers > 0 else None,
        pin_memory=dev.type == "cuda",
        **loader_options,
    )
    # The workers start tokenizing now, while the weights move to the GPU and the model compiles.
    batches = iter(loader)

    trained.model.to(dev).eval()
    if compile is None:
        # fp8 needs the compiler whatever the run's size: it fuses each activation's quantization into the
        # kernel before the matmul, without which quantizing costs more than the fp8 matmul saves.
        compile = dev.type == "cuda" and (total >= COMPILE_MIN_ROWS or precision == "fp8")
    # After the fingerprint: the packed path may turn the encoder's weights to bf16.
    forward = _Model(
        trained.model,
        dev,
        packed,
        compile,
        precision,
        gelu_epilogue=gelu_epilogue,
        fused_add_norm=fused_add_norm,
    )
    summary.startup["model"] = time.perf_counter() - t_model
    pending: dict[int, _Pending] = {}
    # One bar per machine (local rank 0): the bars of 8 processes would garble one terminal.
    show = progress and local_rank == 0
    bar = tqdm(
        total=total, unit="file", unit_scale=True, smoothing=0.05, disable=not show, desc=f"score rank {rank}"
    )
    summary.startup["compile"] = forward.warm_up(trained.max_length, trained.model.encoder.config.vocab_size)
    log.info("forward: %s", forward.description)
    start = time.perf_counter()
    summary.startup["other"] = start - t_enter - summary.startup["model"] - summary.startup["compile"]
    inflight: tuple[_Pending, ModelBatch, object] | None = None  # the batch on the GPU now

    def finish_inflight() -> None:
        nonlocal inflight
        if inflight is not None:
            acc, batch, launched = inflight
            t = time.perf_counter()
            scores = launched.result()
            t2 = time.perf_counter()
            acc.add(batch.rows, scores)
            summary.gpu_wait_s += t2 - t
            summary.place_s += time.perf_counter() - t2
            inflight = None

    writer = _Writer()
    with torch.inference_mode(), contextlib.ExitStack() as stack:
        stack.callback(writer.shutdown)
        ready = time.perf_counter()
        for item in batches:
            summary.input_wait_s += time.perf_counter() - ready
            if summary.first_batch_s is None:
                summary.first_batch_s = time.perf_counter() - start
            k = item.part
            part = parts[k]
            if isinstance(item, Progress):
                acc = pending.get(k)
                if acc is not None and time.perf_counter() - acc.last_write >= write_every_s:
                    finish_inflight()  # the rows before `upto` must all be placed
                    t = time.perf_counter()
                    acc.write(out, item.upto, part.shard.language, classes)
                    summary.write_s += time.perf_counter() - t
                ready = time.perf_counter()
                continue
            if isinstance(item, (PartDone, PartFailed)):
                finish_inflight()  # a part's closing (or failing) item must find all of its rows placed
            if isinstance(item, PartFailed):
                pending.pop(k, None)
                summary.failed.append(f"{part.shard.uri} rows {part.start}-{part.stop}: {item.reason}")
                log.error(
                    "could not score %s rows %d-%d: %s", part.shard.uri, part.start, part.stop, item.reason
                )
            elif isinstance(item, PartDone):
                acc = pending.pop(k, None) or _Pending(part, len(classes))
                if item.rows_read != part.num_rows or acc.received != part.num_rows:
                    summary.failed.append(
                        f"{part.shard.uri} rows {part.start}-{part.stop}: expected {part.num_rows} rows, "
                        f"read {item.rows_read}"
                    )
                    log.error(
                        "%s: expected %d rows, read %d; not written",
                        part.shard.uri,
                        part.num_rows,
                        item.rows_read,
                    )
                else:
                    t = time.perf_counter()
                    writer.submit(_write_part, acc, out, open_parts, part, k, classes)
                    summary.write_s += time.perf_counter() - t
            else:
                acc = pending.setdefault(k, _Pending(part, len(classes)))
                if isinstance(item, ErrorRows):  # rows that carry an error have no model input
                    t = time.perf_counter()
                    acc.add(item.rows, None)
                    summary.place_s += time.perf_counter() - t
                else:
                    t = time.perf_counter()
                    launched = _launch(forward, item, trained.max_length)
                    summary.launch_s += time.perf_counter() - t
                    finish_inflight()
                    inflight = (acc, item, launched)
                    summary.tokens += item.tokens
                    summary.windows += len(item.rows)
                    summary.multi_window_files += sum(r.window == 0 and r.windows > 1 for r in item.rows)
                files = sum(r.window == 0 for r in item.rows)  # a file counts with its first window
                summary.rows_scored += files
                bar.update(files)
                if show:
                    elapsed = time.perf_counter() - start
                    bar.set_postfix_str(f"{summary.tokens / max(elapsed, 1e-9):,.0f} tok/s", refresh=False)
            ready = time.perf_counter()
        finish_inflight()
        t = time.perf_counter()
        writer.close()
        summary.write_s += time.perf_counter() - t
    bar.close()
    summary.seconds = time.perf_counter() - start
    summary.forward = forward.description  # after the warm-up: a compiler that failed has changed it
    return summary


def _maybe_merge(out: Path, open_parts: dict, shard: Shard, part_index: int) -> None:
    n, todo = open_parts[shard]
    todo.discard(part_index)
    if not todo:
        outputs.merge_parts(out, shard, n)
        del open_parts[shard]
