"""The shared attention interface: SDPA (the standard path) against the naive reference."""

from __future__ import annotations

import pytest
import torch

from repro.blocks.attention import (
    MultiHeadAttention, causal_mask, get_attention, naive_attention, register_attention, sdpa_attention,
)

pytestmark = pytest.mark.unit

SHAPES = [(1, 1, 1, 1, 4), (2, 3, 7, 13, 5), (1, 2, 33, 17, 8), (3, 1, 64, 64, 16)]


def _qkv(b, h, lq, lk, d, dtype=torch.float64):
    g = torch.Generator().manual_seed(b * 1000 + lq * 10 + lk)
    mk = lambda n: torch.randn(b, h, n, d, generator=g, dtype=dtype, requires_grad=True)  # noqa: E731
    return mk(lq), mk(lk), mk(lk)


def _grads(fn, q, k, v, **kw):
    out = fn(q, k, v, **kw)
    g = torch.ones_like(out).mul_(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    return (out, *torch.autograd.grad(out, (q, k, v), g))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal"])
def test_sdpa_matches_naive_outputs_and_grads(shape, kind):
    b, h, lq, lk, d = shape
    q, k, v = _qkv(*shape)
    kw = {}
    if kind == "bool":
        m = torch.rand(b, 1, lq, lk, generator=torch.Generator().manual_seed(3)) > 0.4
        m[..., 0] = True  # no fully-masked rows
        kw["mask"] = m
    elif kind == "float":
        kw["mask"] = torch.randn(b, 1, lq, lk, dtype=torch.float64)
    elif kind == "causal":
        if lq > lk:
            pytest.skip("end-aligned causal mask with more queries than keys masks whole rows")
        kw["causal"] = True
    for a, r in zip(_grads(sdpa_attention, q, k, v, **kw), _grads(naive_attention, q, k, v, **kw)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


def test_causal_mask_is_end_aligned():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(3, 3).tolist() == torch.ones(3, 3, dtype=torch.bool).tril().tolist()


def test_causal_and_mask_combine():
    q, k, v = _qkv(1, 2, 6, 6, 4)
    m = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    m[..., 0, 0] = True
    m[..., 3, 1] = False
    a = sdpa_attention(q, k, v, m, causal=True)
    r = naive_attention(q, k, v, m, causal=True)
    torch.testing.assert_close(a, r)


def test_multihead_attention_kernel_swap_and_shapes():
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 3).double()
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    ctx = torch.randn(2, 5, 24, dtype=torch.float64)
    out = mha(x, ctx)
    assert out.shape == (2, 9, 24)
    mha.attn = naive_attention
    torch.testing.assert_close(mha(x, ctx), out)
    with pytest.raises(ValueError):
        MultiHeadAttention(10, 3)


def test_registry():
    assert get_attention("softmax") is sdpa_attention
    with pytest.raises(KeyError, match="unknown attention"):
        get_attention("nope")
    with pytest.raises(ValueError):
        register_attention("softmax", naive_attention)


def test_need_weights_matches_fused_path_and_rows_sum_to_one():
    torch.manual_seed(1)
    mha = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    mask[0, ..., 5:] = False
    out, w = mha(x, mask=mask, need_weights=True)
    torch.testing.assert_close(out, mha(x, mask=mask))
    assert w.shape == (2, 4, 7, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7, dtype=torch.float64))
    assert (w[0, ..., 5:] == 0).all()


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "none"])
def test_transformer_encoder_shapes_causality_and_grads(norm_first, positions):
    from repro.blocks.transformer import TransformerEncoder

    torch.manual_seed(0)
    enc = TransformerEncoder(11, 16, 2, 2, max_len=20, positions=positions, norm_first=norm_first, causal=True)
    tok = torch.randint(0, 11, (3, 9))
    h, ws = enc(tok, need_weights=True)
    assert h.shape == (3, 9, 16) and len(ws) == 2 and ws[0].shape == (3, 2, 9, 9)
    torch.testing.assert_close(h, enc(tok))
    tok2 = tok.clone()
    tok2[:, 6:] = (tok2[:, 6:] + 1) % 11  # change the future
    torch.testing.assert_close(enc(tok2)[:, :6], h[:, :6])  # causal: the past does not change
    h.sum().backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if not n.startswith("pos") or positions == "learned")


def test_need_weights_uses_the_kernels_own_weights_or_refuses():
    """Softmax kernels report softmax probabilities; another kernel reports what it applies
    (its ``weights``) or need_weights raises instead of returning softmax weights it never used."""
    from repro.blocks.attention import MultiHeadAttention, softmax_weights

    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)

    def relu_attention(q, k, v, mask=None, *, causal=False, scale=None, dropout_p=0.0):
        return torch.matmul(relu_attention.weights(q, k, mask, causal=causal), v)

    relu_attention.weights = lambda q, k, mask=None, causal=False: torch.relu(q @ k.transpose(-2, -1))
    mha = MultiHeadAttention(8, 2, attn=relu_attention)
    out, w = mha(x, need_weights=True)
    assert torch.allclose(out, mha(x), atol=1e-6)
    q, k = mha.split(mha.q_proj(x)), mha.split(mha.k_proj(x))
    assert torch.allclose(w, torch.relu(q @ k.transpose(-2, -1)))
    assert not torch.allclose(w, softmax_weights(q, k))

    def opaque(q, k, v, mask=None, *, causal=False, scale=None, dropout_p=0.0):
        return v
    with pytest.raises(ValueError, match="opaque"):
        MultiHeadAttention(8, 2, attn=opaque)(x, need_weights=True)
    sm = MultiHeadAttention(8, 2)
    out, w = sm(x, need_weights=True)
    assert torch.allclose(out, sm(x), atol=1e-5) and torch.allclose(w.sum(-1), torch.ones(2, 2, 5))


def test_set_attention_replaces_a_module_kernel_with_a_function():
    from torch import nn

    from repro.blocks.attention import naive_attention
    from repro.blocks.seq2seq import TransformerSeq2Seq

    class Kernel(nn.Module):
        is_softmax = True

        def forward(self, q, k, v, mask=None, *, causal=False, scale=None, dropout_p=0.0):
            return naive_attention(q, k, v, mask, causal=causal, scale=scale)

    net = TransformerSeq2Seq(11, 11, dim=8, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=16)
    net.set_attention(Kernel())
    net.set_attention("naive")
    assert all(m.attn is naive_attention for m in net.modules() if hasattr(m, "q_proj"))
