"""An fp8 forward for scoring: the packed encoder's matmuls in float8 (e4m3), row-wise scaled, on Hopper-class GPUs.

Every linear layer inside the transformer layers (query, key and value, fused into one by default; the attention
output; the feed-forward's two) becomes an `Fp8Linear`:

- the weight, (out, in), is quantized once, when the model is converted: each output channel (row) is divided by
  its own scale, amax(|row|) / 448, and stored in float8_e4m3fn; the scales are kept in fp32;
- the activation, (tokens, in), is quantized at run time the same way, one scale per token (row);
- `torch._scaled_mm` multiplies the two fp8 matrices with fp32 accumulation on the tensor cores, multiplies
  output (i, j) by scale_a[i] * scale_b[j], adds the bias and writes bf16.

The definition in one line: y = (q(x) * s_x) @ (q(W) * s_W).T + b, with q() a round to the nearest e4m3 value.
Embeddings, LayerNorms, attention (Flash Attention, bf16) and the heads (fp32) are untouched.

Speed comes from the matmuls (the measured fp8 row-wise peak on an H200 is 1.8x bf16's) only if quantizing the
activations costs little: done as separate steps it reads and writes every activation several times more (a
plain swap of nn.Linear ran at half the bf16 speed). Here it is written as plain tensor operations that
torch.compile (Inductor) fuses into the kernel that produces the activation; see `quantize_rows`.

Requirements of `torch._scaled_mm` with row-wise scales (checked in ATen's ScaledBlas.cpp): a CUDA device of
compute capability 8.9 or newer; the first matrix row-major, the second column-major (here the transpose of the
row-major (out, in) weight, a view); in and out features multiples of 16; scale_a (tokens, 1) and scale_b
(1, out) fp32 and contiguous; a bf16 bias for a bf16 output. Recent CPU builds of torch run it too (slowly), which
is what the tests use.
"""

from __future__ import annotations

import torch
from torch import nn

from curator.models.packed import PackedEncoder, fuse_qkv

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
MIN_AMAX = 1e-12  # an all-zero row: any scale gives zeros, this one avoids dividing by zero
MIN_CAPABILITY = (8, 9)  # Ada; Hopper is 9.0


def check_fp8_device(device: torch.device) -> None:
    """ValueError, one line, unless `device` is a CUDA GPU that has fp8 tensor cores."""
    device = torch.device(device)
    need = "precision fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell)"
    if device.type != "cuda":
        raise ValueError(f"{need}; the device here is {device}")
    capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise ValueError(f"{need}; {device} is a {name}, compute capability {capability[0]}.{capability[1]}")


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (rows, k) -> (float8 values (rows, k) row-major, fp32 scales (rows, 1)), x ~ values * scales.

    Each row's largest magnitude maps to 448, e4m3's largest finite value; the clamp only catches the rounding
    of that division (a value past 448 would become NaN, e4m3fn has no infinity).

    Fusion: under torch.compile this is one reduction (amax over the row) and pointwise operations on the same
    rows, which Inductor schedules into the kernel of the reduction that made x where there is one, the way it
    fuses a softmax: after the residual add and LayerNorm (itself a reduction over the same rows) and after the
    GELU of the feed-forward. That kernel reads its input once, writes the bf16 result where it is needed
    again (the residual) and the fp8 copy with its scales, so quantizing costs about one extra write of a
    byte per value. The one input with no such producer is the attention output (Flash Attention's result):
    it gets a kernel of its own, one read and one write. Run eagerly, each step is a kernel of its own.
    """
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp(min=MIN_AMAX) / FP8_MAX
    values = (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return values.contiguous(), scale


class Fp8Linear(nn.Module):
    """y = x @ W.T + b with W and x in float8, row-wise scaled; bf16 out. Inference only (no gradients).

    Built from an nn.Linear by `from_linear`, which quantizes the weight once. Convert a model's dtype before,
    never after: `.to(torch.bfloat16)` would cast the float8 weights too (float8 counts as floating point).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, fast_accum: bool = True):
        super().__init__()
        out_features, in_features = weight.shape
        if in_features % 16 or out_features % 16:
            raise ValueError(
                f"fp8 matmuls need in and out features that are multiples of 16, got {in_features} -> "
                f"{out_features}"
            )
        values, scale = quantize_rows(weight.detach())
        self.register_buffer("weight", values)  # (out, in), row-major: weight.t() is the column-major operand
        self.register_buffer("weight_scale", scale.reshape(1, out_features).contiguous())  # (1, out) fp32
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))
        self.in_features, self.out_features = in_features, out_features
        # Hopper's fast accumulation keeps partial sums in the tensor core's own precision for the whole
        # reduction rather than promoting them to fp32 every few steps: faster, and (like torchao's fp8
        # inference default) its error is small next to e4m3's 3-bit mantissa.
        self.fast_accum = fast_accum

    @classmethod
    def from_linear(cls, linear: nn.Linear, fast_accum: bool = True) -> Fp8Linear:
        return cls(linear.weight, linear.bias, fast_accum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        values, scale = quantize_rows(x.reshape(-1, self.in_features))
        y = torch._scaled_mm(
            values,
            self.weight.t(),
            scale_a=scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=torch.bfloat16,
            use_fast_accum=self.fast_accum,
        )
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, fast_accum={self.fast_accum}"
        )


def to_fp8(encoder: PackedEncoder, fuse: bool = True, fast_accum: bool = True) -> PackedEncoder:
    """Swap the linear layers inside the transformer layers of a packed encoder for `Fp8Linear`s, in place.

    fuse: one query-key-value matmul per layer (one weight of 3 x hidden rows, and the input quantized once
    rather than three times). Embeddings and the classifier's heads are not touched; nor is anything the
    padded forward uses other than these layers, so convert only a model that scores through `encoder`.
    """
    if fuse and not encoder.qkv_fused:
        fuse_qkv(encoder)
    for layer in encoder.encoder.encoder.layer:
        att = layer.attention.self
        if encoder.qkv_fused:
            att.qkv = Fp8Linear.from_linear(att.qkv, fast_accum)
        else:
            att.query, att.key, att.value = (
                Fp8Linear.from_linear(m, fast_accum) for m in (att.query, att.key, att.value)
            )
        layer.attention.output.dense = Fp8Linear.from_linear(layer.attention.output.dense, fast_accum)
        layer.intermediate.dense = Fp8Linear.from_linear(layer.intermediate.dense, fast_accum)
        layer.output.dense = Fp8Linear.from_linear(layer.output.dense, fast_accum)
    return encoder
