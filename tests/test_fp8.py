"""The fp8 forward (curator.models.fp8): its matmul is the definition it states, and a model converted to it scores
close to the full-precision one. CPU builds of torch run `torch._scaled_mm` with row-wise float8 scales too."""

import copy
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers_model import make_checkpoint, make_corpus
from test_packed import ROBERTA
from test_scoring import eager_then_compiled

from curator.data.inputs import pack
from curator.models import CuratorClassifier, build_encoder
from curator.models.fp8 import FP8, FP8_MAX, Fp8Linear, check_fp8_device, quantize_rows, to_fp8
from curator.models.packed import PackedClassifier, fuse_qkv
from curator.scoring import outputs, runner
from curator.scoring.runner import score_corpus
from curator.tasks.trained import load_trained


def _scaled_mm_runs_here() -> bool:
    try:
        a = torch.ones(16, 16).to(FP8)
        torch._scaled_mm(
            a, a.t(), scale_a=torch.ones(16, 1), scale_b=torch.ones(1, 16), out_dtype=torch.bfloat16
        )
        return True
    except (RuntimeError, NotImplementedError):
        return False


needs_scaled_mm = pytest.mark.skipif(
    not _scaled_mm_runs_here(), reason="this torch build has no CPU torch._scaled_mm with row-wise scales"
)


def test_quantize_rows_scales_each_row_to_the_fp8_range():
    torch.manual_seed(0)
    x = torch.randn(9, 48) * torch.logspace(-3, 3, 9)[:, None]  # rows of very different magnitudes
    x[4] = 0.0
    values, scale = quantize_rows(x.to(torch.bfloat16))
    assert values.dtype == FP8 and values.shape == x.shape and values.is_contiguous()
    assert scale.dtype == torch.float32 and scale.shape == (9, 1)
    back = values.float() * scale
    rows = [i for i in range(9) if i != 4]
    # Every row's largest magnitude lands on 448; the zero row stays zero (no division by zero).
    assert values.float()[rows].abs().amax(1).tolist() == [FP8_MAX] * 8
    assert back[4].abs().max() == 0
    # e4m3 keeps 3 bits of mantissa: a relative error of at most 2^-4, and an absolute one of half its
    # smallest step (2^-10 of the scale) among the subnormals.
    xb = x.to(torch.bfloat16).float()
    assert ((back - xb).abs() <= xb.abs() * 2**-4 + scale * 2**-10).all()


@needs_scaled_mm
def test_fp8_linear_is_its_definition():
    """y = (q(x) s_x) @ (q(W) s_W).T + b, computed in fp32 from the dequantized operands, then rounded to bf16."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    fp8 = Fp8Linear.from_linear(linear)
    assert fp8.weight.dtype == FP8 and fp8.weight.shape == (96, 64) and fp8.weight.is_contiguous()
    assert fp8.weight_scale.shape == (1, 96) and fp8.weight_scale.dtype == torch.float32
    assert fp8.bias.dtype == torch.bfloat16
    x = torch.randn(3, 37, 64) * 3
    y = fp8(x)
    assert y.dtype == torch.bfloat16 and y.shape == (3, 37, 96)
    values, scale = quantize_rows(x.reshape(-1, 64))
    w = fp8.weight.float() * fp8.weight_scale.t()
    ref = (values.float() * scale) @ w.t() + fp8.bias.float()
    torch.testing.assert_close(y.reshape(-1, 96).float(), ref, rtol=2**-8, atol=1e-3)
    # and close to the full-precision layer: the quantization error, not a wrong layout or scale
    with torch.no_grad():
        full = linear(x)
    assert (y.float() - full).abs().max() < 0.05 * full.abs().max()


def test_fp8_linear_needs_multiples_of_16():
    with pytest.raises(ValueError, match="multiples of 16"):
        Fp8Linear.from_linear(torch.nn.Linear(40, 64))


def test_fused_qkv_is_the_same_function():
    torch.manual_seed(0)
    model = CuratorClassifier(build_encoder("roberta", config=ROBERTA), num_content_types=9).eval()
    seqs = [torch.randint(5, 900, (n,)).tolist() for n in (1, 3, 17, 64, 128)]
    ref = PackedClassifier(model)(*pack(seqs))
    fused = PackedClassifier(copy.deepcopy(model))
    fuse_qkv(fused.encoder)
    got = fused(*pack(seqs))
    for head in ref:
        torch.testing.assert_close(got[head], ref[head], rtol=1e-5, atol=1e-5)


@needs_scaled_mm
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_packed_encoder_in_fp8_scores_close_to_full_precision(pooling):
    torch.manual_seed(0)
    model = CuratorClassifier(build_encoder("roberta", config=ROBERTA), num_content_types=9, pooling=pooling)
    model.eval()
    seqs = [torch.randint(5, 900, (n,)).tolist() for n in (1, 3, 17, 64, 128)]
    ref = PackedClassifier(model)(*pack(seqs))
    results = []
    for fuse in (True, False):
        packed = PackedClassifier(copy.deepcopy(model))
        to_fp8(packed.encoder, fuse=fuse)
        layer = packed.encoder.encoder.encoder.layer[0]
        assert isinstance(layer.intermediate.dense, Fp8Linear) and isinstance(layer.output.dense, Fp8Linear)
        assert isinstance(layer.attention.self.query, Fp8Linear) != fuse
        assert isinstance(getattr(layer.attention.self, "qkv", None), Fp8Linear) == fuse
        assert not isinstance(packed.encoder.encoder.embeddings.word_embeddings, Fp8Linear)
        results.append(packed(*pack(seqs)))
    fused, unfused = results
    for head in ("quality", "structured_data"):
        assert (fused[head].float() - ref[head]).abs().max() < 0.02
        # row-wise scales: one scale per token and per output channel either way, so fusing changes nothing
        torch.testing.assert_close(fused[head], unfused[head])
    probs = fused["content_type"].float().softmax(-1)
    assert (probs - ref["content_type"].softmax(-1)).abs().max() < 0.02


def test_fp8_needs_a_gpu_with_fp8_tensor_cores(monkeypatch):
    with pytest.raises(ValueError, match=r"compute capability 8\.9 or newer.*the device here is cpu"):
        check_fp8_device(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))
    with pytest.raises(ValueError, match=r"A100-SXM4-80GB, compute capability 8\.0"):
        check_fp8_device(torch.device("cuda:0"))
    for capability in ((8, 9), (9, 0), (10, 0)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        check_fp8_device(torch.device("cuda:0"))


def test_score_corpus_refuses_fp8_without_such_a_gpu_before_making_anything(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", languages=("go",), shards=1, rows=4)
    with pytest.raises(ValueError, match="compute capability"):
        score_corpus(tmp_path / "missing.ckpt", corpus, tmp_path / "out", device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="drop --padded"):
        score_corpus(tmp_path / "missing.ckpt", corpus, tmp_path / "out", precision="fp8", packed=False)
    assert not (tmp_path / "out").exists()


@needs_scaled_mm
def test_fp8_scores_are_recorded_and_never_mixed_with_bf16(tmp_path, monkeypatch):
    """The whole scoring path in fp8 (on the CPU, the device check lifted): close scores, its own folder."""
    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    corpus = make_corpus(tmp_path / "corpus", languages=("python",), shards=1, rows=30)
    kw = {"num_workers": 0, "device": "cpu", "progress": False, "window": 30, "tokens_per_batch": 512}
    score_corpus(load_trained(ckpt), corpus, tmp_path / "bf16", **kw)
    monkeypatch.setattr(runner, "check_fp8_device", lambda device: None)
    summary = score_corpus(load_trained(ckpt), corpus, tmp_path / "fp8", precision="fp8", **kw)
    assert summary.forward == "packed fp8 (row-wise scaled matmuls), fused qkv"
    assert json.loads((tmp_path / "fp8" / outputs.META_NAME).read_text())["precision"] == "fp8"
    assert json.loads((tmp_path / "bf16" / outputs.META_NAME).read_text())["precision"] == "bf16"
    a = pq.read_table(tmp_path / "bf16" / "python" / "train-00000.parquet").to_pandas()
    b = pq.read_table(tmp_path / "fp8" / "python" / "train-00000.parquet").to_pandas()
    assert a["id"].tolist() == b["id"].tolist()
    np.testing.assert_allclose(a["quality"], b["quality"], atol=0.02)
    np.testing.assert_allclose(a["structured_data"], b["structured_data"], atol=0.02)
    np.testing.assert_allclose(
        np.stack(a["content_type_probs"]), np.stack(b["content_type_probs"]), atol=0.02
    )
    with pytest.raises(ValueError, match="precision: 'fp8' there, 'bf16' now"):
        score_corpus(load_trained(ckpt), corpus, tmp_path / "fp8", **kw)


def test_a_folder_from_before_precision_was_recorded_holds_bf16(tmp_path):
    meta = {"model_fingerprint": "x", "content_types": ["a"], "max_length": 64}
    outputs.write_meta(tmp_path, meta)  # written without a precision, as older versions did
    outputs.write_meta(tmp_path, {**meta, "precision": "bf16"})
    with pytest.raises(ValueError, match="precision: 'bf16' there, 'fp8' now"):
        outputs.write_meta(tmp_path, {**meta, "precision": "fp8"})


@needs_scaled_mm
@pytest.mark.slow
def test_compiled_fp8_scoring_matches_eager_and_compiles_one_layer_for_all(tmp_path, monkeypatch):
    """Inductor (its CPU backend here) compiles the fp8 layers, quantizing included, into the same regional
    graphs as bf16's, with the eager fp8 scores."""
    deep = make_checkpoint(tmp_path / "deep.ckpt", layers=3)
    corpus = make_corpus(tmp_path / "corpus", languages=("go",), shards=1, rows=40)
    monkeypatch.setattr(runner, "check_fp8_device", lambda device: None)
    a, b, summary, graphs = eager_then_compiled(deep, corpus, tmp_path, precision="fp8")
    assert summary.forward == "packed fp8 (row-wise scaled matmuls), fused qkv, compiled"
    assert graphs <= 8, graphs
    # Not bitwise: the fused kernels compute in another order, and a value that then rounds to the other
    # neighbouring fp8 value moves by a whole step.
    np.testing.assert_allclose(a["quality"], b["quality"], atol=5e-3)
    np.testing.assert_allclose(
        np.stack(a["content_type_probs"]), np.stack(b["content_type_probs"]), atol=5e-3
    )
