"""The packed (unpadded) path must compute the same function as the Hugging Face padded forward."""

import pytest
import torch

from curator.data.inputs import pack
from curator.models import CuratorClassifier, build_encoder
from curator.models.bert import INDEX_BUFFERS, BertLikeEncoder, EncoderConfig
from curator.models.packed import PackedClassifier, PackedEncoder, position_ids_for, use_gelu_epilogue

TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)
ROBERTA = dict(
    model_type="roberta",
    vocab_size=1000,
    max_position_embeddings=130,
    pad_token_id=1,
    type_vocab_size=1,
    **TINY,
)


def encoders():
    yield "bert-minilm-pretrained", build_encoder("minilm")
    yield "roberta-tiny-random", build_encoder("roberta", config=ROBERTA)


def padded_batch(seqs, pad_id):
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def bert_like(encoder) -> BertLikeEncoder:
    """The Hugging Face encoder's weights in a BertLikeEncoder, built from its saved config dict."""
    light = BertLikeEncoder(EncoderConfig.from_dict(encoder.config.to_dict()))
    light.load_state_dict(encoder.state_dict())
    return light.eval()


@pytest.mark.parametrize("light", [False, True])
@pytest.mark.parametrize("gelu_epilogue", [False, True])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_packed_matches_padded_forward(pooling, gelu_epilogue, light):
    # gelu_epilogue: the feed-forward through torch._addmm_activation (on a CPU with the exact GELU, so the
    # same function; on a GPU cuBLASLt's epilogue, measured in experiments/gpu_throughput). light: the packed
    # forward runs over a BertLikeEncoder holding the same weights (what scoring builds on the packed path).
    torch.manual_seed(0)
    for name, encoder in encoders():
        model = CuratorClassifier(encoder, num_content_types=9, pooling=pooling).eval()
        if light:
            heads_of = model
            model = CuratorClassifier(bert_like(encoder), num_content_types=9, pooling=pooling).eval()
            model.load_state_dict(heads_of.state_dict())
            ref_model = heads_of
        else:
            ref_model = model
        pad_id = encoder.config.pad_token_id
        # lengths from 1 token to the model's limit, so both ends of the position table are exercised
        limit = 128 if encoder.config.model_type == "roberta" else 512
        lengths = [1, 3, 17, 64, limit]
        seqs = [torch.randint(5, 900, (n,)).tolist() for n in lengths]
        ids, mask = padded_batch(seqs, pad_id)
        with torch.no_grad():
            ref = ref_model(ids, mask)
        packed = PackedClassifier(model)
        if gelu_epilogue:
            use_gelu_epilogue(packed.encoder)
        got = packed(*pack(seqs))
        for head in ("quality", "structured_data", "content_type"):
            torch.testing.assert_close(got[head], ref[head], rtol=1e-4, atol=1e-4, msg=f"{name} {head}")


def test_bert_like_encoder_has_the_hugging_face_names_and_no_padded_forward():
    for name, encoder in encoders():
        light = bert_like(encoder)
        assert light.state_dict().keys() == encoder.state_dict().keys() - set(INDEX_BUFFERS), name
        for key, value in encoder.state_dict().items():
            if key not in INDEX_BUFFERS:
                assert torch.equal(light.state_dict()[key], value), (name, key)
        with pytest.raises(TypeError, match="PackedEncoder"):
            light(input_ids=torch.ones(1, 3, dtype=torch.long))
        # State dicts of transformers versions that saved the index buffers load strictly, alone or in a classifier.
        buffers = {name: torch.zeros(1, 4, dtype=torch.long) for name in INDEX_BUFFERS}
        light.load_state_dict({**encoder.state_dict(), **buffers})
        model = CuratorClassifier(light, num_content_types=9)
        model.load_state_dict({**model.state_dict(), **{f"encoder.{k}": v for k, v in buffers.items()}})


def test_gelu_epilogue_refuses_another_activation():
    encoder = build_encoder("roberta", config={**ROBERTA, "hidden_act": "relu"})
    with pytest.raises(ValueError, match="GELU"):
        use_gelu_epilogue(PackedEncoder(encoder))


def test_roberta_positions_start_after_padding_index():
    cu = torch.tensor([0, 3, 5], dtype=torch.int32)
    assert position_ids_for(cu, 5, offset=2).tolist() == [2, 3, 4, 2, 3]
    assert position_ids_for(cu, 5, offset=0).tolist() == [0, 1, 2, 0, 1]


def test_rejects_unsupported_encoder():
    from curator.models.packed import PackedEncoder

    enc = build_encoder(
        "distilbert",
        config=dict(model_type="distilbert", vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64),
    )
    with pytest.raises(ValueError, match="packing supports"):
        PackedEncoder(enc)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_packed_training_step_has_the_padded_loss_and_gradients(pooling):
    """Dropout off (eval mode), gradients on: the packed training step must be the padded one."""
    from curator.tasks.module import CuratorTask

    seqs = [torch.randint(5, 900, (n,)).tolist() for n in (2, 9, 40, 128)]
    ids, mask = padded_batch(seqs, ROBERTA["pad_token_id"])
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "quality": torch.tensor([1, 2, 4, 5]),
        "structured_data": torch.tensor([0, 3, 1, 2]),
        "content_type": torch.tensor([0, 3, 5, 8]),
    }
    packed_by_loader = {**batch, **dict(zip(("packed_input_ids", "cu_seqlens"), pack(seqs)[:2], strict=True))}
    results = {}
    # padded; packed by the DataModule's workers
    for variant, packed, b in (("padded", False, batch), ("loader", True, packed_by_loader)):
        torch.manual_seed(0)
        task = CuratorTask(
            encoder="roberta", encoder_config=ROBERTA, max_length=128, pooling=pooling, packed=packed
        )
        task.eval()
        loss, _, _ = task._step(b)
        loss.backward()
        results[variant] = (
            loss.detach(),
            {n: p.grad for n, p in task.named_parameters() if p.grad is not None},
        )
    loss_padded, g_padded = results["padded"]
    for variant in ("loader",):
        loss_packed, g_packed = results[variant]
        torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-5, atol=1e-5)
        assert g_packed.keys() == g_padded.keys() and len(g_packed) > 20
        for name in g_padded:
            torch.testing.assert_close(
                g_packed[name], g_padded[name], rtol=1e-4, atol=1e-5, msg=f"{variant} {name}"
            )


def test_packed_training_applies_the_encoders_dropout():
    from curator.models.packed import PackedEncoder

    torch.manual_seed(0)
    encoder = build_encoder("roberta", config=ROBERTA)
    packed = PackedEncoder(encoder)
    seqs = [torch.randint(5, 900, (n,)).tolist() for n in (5, 30)]
    args = pack(seqs)
    encoder.eval()
    assert torch.equal(packed(*args), packed(*args))
    encoder.train()  # the wrapped encoder's mode decides, as Lightning sets it
    a, b = packed(*args), packed(*args)
    assert not torch.allclose(a, b)
    encoder.config.hidden_dropout_prob = encoder.config.attention_probs_dropout_prob = 0.0
    no_dropout = PackedEncoder(encoder)
    assert torch.equal(no_dropout(*args), no_dropout(*args))


@pytest.mark.slow
def test_packed_training_compiles_with_dropout_and_dynamic_shapes():
    from curator.models.packed import PackedEncoder

    torch.manual_seed(0)
    encoder = build_encoder("roberta", config=ROBERTA).train()
    packed = PackedEncoder(encoder)
    packed.compile(dynamic=True)  # as CuratorTask.on_fit_start does with model.packed and model.compile
    for lengths in ([5, 30], [7, 50, 3]):
        args = pack([torch.randint(5, 900, (n,)).tolist() for n in lengths])
        packed(*args[:2], 128, first_only=True).square().mean().backward()
        assert all(p.grad is not None and p.grad.isfinite().all() for p in encoder.encoder.parameters())
        encoder.zero_grad()


FUSED_ADD_NORM_CHECK = r"""
import torch
from curator.data.inputs import pack
from curator.models import CuratorClassifier, build_encoder
from curator.models import add_norm
from curator.models.packed import PackedClassifier, use_fused_add_norm

calls = []
kernel = add_norm.add_layer_norm
def counted(*args):
    calls.append(args[0].shape)
    return kernel(*args)
add_norm.add_layer_norm = counted

torch.manual_seed(0)
for encoder in (build_encoder("minilm"), build_encoder("roberta", config=ROBERTA)):
    model = CuratorClassifier(encoder, num_content_types=9, pooling="cls").eval()
    seqs = [torch.randint(5, 900, (n,)).tolist() for n in (1, 3, 17, 64, 128)]
    ids = torch.full((len(seqs), 128), encoder.config.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    with torch.no_grad():
        ref = model(ids, mask)
    packed = PackedClassifier(model)
    use_fused_add_norm(packed.encoder)
    got = packed(*pack(seqs))
    for head in ("quality", "structured_data", "content_type"):
        torch.testing.assert_close(got[head], ref[head], rtol=1e-4, atol=1e-4)
    # every sublayer of every layer went through the kernel: two a layer
    assert len(calls) == 2 * encoder.config.num_hidden_layers, calls
    calls.clear()
    # in train mode the encoder takes the eager pair (the kernel has no backward and no dropout)
    packed.encoder.train()
    packed.encoder.encoder.train()
    packed.encoder(*pack(seqs))
    assert not calls

# bf16 in and out: within one bf16 step of the fp32 LayerNorm of the fp32 sum (the interpreter's conversion to
# bf16 may truncate where the GPU rounds to nearest)
norm = torch.nn.LayerNorm(768, eps=1e-5)
with torch.no_grad():
    norm.weight.normal_()
    norm.bias.normal_()
x, r = torch.randn(37, 768), torch.randn(37, 768)
exact = norm(x + r)
torch.testing.assert_close(kernel(x, r, norm), exact, rtol=1e-5, atol=1e-5)
bf = kernel(x.bfloat16(), r.bfloat16(), norm.bfloat16()).float()
exact = torch.nn.functional.layer_norm(x.bfloat16().float() + r.bfloat16().float(), (768,), norm.weight.float(), norm.bias.float(), 1e-5)
assert ((bf - exact).abs() <= exact.abs() * 2**-7 + 1e-6).all(), (bf - exact).abs().max()
print("ok")
"""


def test_fused_add_norm_computes_the_padded_forwards_function(tmp_path):
    # The Triton kernel, run by Triton's interpreter on the CPU (its GPU speed is measured in
    # experiments/gpu_throughput): the packed forward with it computes what the Hugging Face forward computes.
    pytest.importorskip("triton")
    import os
    import subprocess
    import sys

    script = tmp_path / "check.py"
    script.write_text(f"ROBERTA = {ROBERTA!r}\n" + FUSED_ADD_NORM_CHECK)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout[-2000:] + r.stderr[-4000:]


def test_fused_add_norm_refuses_mismatched_inputs():
    pytest.importorskip("triton")
    from curator.models.add_norm import add_layer_norm

    with pytest.raises(ValueError, match="one shape and dtype"):
        add_layer_norm(torch.zeros(4, 8), torch.zeros(4, 9), torch.nn.LayerNorm(8))
