"""LayerNorm(x + residual) in one pass over memory: a Triton kernel for the packed forward's inference on a GPU.

Each transformer layer ends its two sublayers with `LayerNorm(sublayer(x) + x)`. Eagerly that is two kernels:
the add reads two (tokens, hidden) tensors and writes a third, then PyTorch's LayerNorm reads it back and writes
the result. On an H200 at 131,072 tokens of a 768-wide encoder the pair took 110 + 247 us, 19% of the eager
forward's GPU time (experiments/gpu_throughput: forward_variants, profile of the eager forward). This kernel
reads the two inputs once and writes the output once, which is what torch.compile's fused kernel does, without
the compiler's start-up (its import and compile are seconds on every scoring run; Triton compiles this one
kernel once per machine and keeps it in its cache).

The sum is taken in fp32 and not rounded to bf16 before the normalisation (as torch.compile's fusion does,
unlike the eager pair): the result is as close to the fp32 LayerNorm as bf16 output allows.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only builds of torch come without Triton: the eager pair is used there
    triton = None


def available(device: torch.device) -> bool:
    """Whether the fused kernel can run on `device`: a CUDA GPU and an importable Triton."""
    return triton is not None and device.type == "cuda"


if triton is not None:

    @triton.jit(do_not_specialize=["n_rows"])
    def _add_layer_norm_kernel(
        X, R, W, B, Y, n_rows, n_cols, eps, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
    ):
        # BLOCK_M rows of the (n_rows, n_cols) inputs per program, a whole row in one block of BLOCK_N lanes.
        rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_N)
        col_ok = cols < n_cols
        mask = (rows < n_rows)[:, None] & col_ok[None, :]
        at = rows[:, None] * n_cols + cols[None, :]
        s = tl.load(X + at, mask=mask, other=0.0).to(tl.float32) + tl.load(R + at, mask=mask, other=0.0).to(
            tl.float32
        )
        mean = tl.sum(s, axis=1) / n_cols
        d = tl.where(mask, s - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) / n_cols + eps)
        w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
        b = tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)
        y = d * rstd[:, None] * w[None, :] + b[None, :]
        tl.store(Y + at, y.to(Y.dtype.element_ty), mask=mask)


def add_layer_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    norm: torch.nn.LayerNorm,
    block_m: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """norm(x + residual) for 2-D contiguous tensors of one dtype, through the fused kernel; block_m (rows a
    program) and num_warps as measured best on an H200 unless given."""
    if triton is None:
        raise RuntimeError("the fused add-and-LayerNorm kernel needs Triton, which this torch build lacks")
    if x.shape != residual.shape or x.dim() != 2 or x.dtype != residual.dtype:
        raise ValueError(f"need two 2-D tensors of one shape and dtype, got {x.shape} and {residual.shape}")
    x, residual = x.contiguous(), residual.contiguous()
    n_rows, n_cols = x.shape
    y = torch.empty_like(x)
    block_n = triton.next_power_of_2(n_cols)
    if block_m is None:
        block_m = max(1, 4096 // block_n)  # about 4,096 elements a program: enough memory traffic in flight
    if num_warps is None:
        num_warps = 8 if block_n >= 2048 else 4
    grid = (triton.cdiv(n_rows, block_m),)
    _add_layer_norm_kernel[grid](
        x, residual, norm.weight, norm.bias, y, n_rows, n_cols, norm.eps, BLOCK_M=block_m, BLOCK_N=block_n,
        num_warps=num_warps,
    )  # fmt: skip
    return y
