"""The shared linear-attention block: the parallel (masked) form, the recurrent (state)
form and the non-causal form agree, outputs and gradients, on awkward shapes."""

from __future__ import annotations

import pytest
import torch

from repro.blocks.attention import get_attention
from repro.blocks.linear_attention import (
    causal_linear_attention,
    decay_mask,
    elu_plus_one,
    get_feature_map,
    linear_attention,
    linear_attention_fn,
    recurrent_linear_attention,
)

pytestmark = pytest.mark.unit

SHAPES = [  # (batch, heads, n, d, e)
    (1, 1, 1, 3, 2),
    (2, 3, 17, 5, 7),  # odd length, d != e
    (1, 4, 33, 8, 8),
]


def _qkv(b, h, n, d, e, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed + 7 * n + d)
    q = torch.randn(b, h, n, d, generator=g, dtype=dtype).requires_grad_()
    k = torch.randn(b, h, n, d, generator=g, dtype=dtype).requires_grad_()
    v = torch.randn(b, h, n, e, generator=g, dtype=dtype).requires_grad_()
    return q, k, v


def _grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


def _naive_loop(q, k, v, phi, normalize, decay):
    """Eq. (1) written as a double loop over (t, s): the most literal reference."""
    b, h, n, _ = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    lam = torch.ones(h, dtype=q.dtype) if decay is None else torch.as_tensor(decay, dtype=q.dtype).expand(h)
    for t in range(n):
        num = torch.zeros(b, h, v.shape[-1], dtype=q.dtype)
        den = torch.zeros(b, h, dtype=q.dtype)
        for s in range(t + 1):
            w = (phi(q[:, :, t]) * phi(k[:, :, s])).sum(-1) * lam ** (t - s)
            num = num + w[..., None] * v[:, :, s]
            den = den + w
        out[:, :, t] = num / den[..., None] if normalize else num
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("normalize,fmap", [(False, "identity"), (True, "elu+1"), (True, "softmax"),
                                            (False, "elu+1")])
@pytest.mark.parametrize("decay", [None, 0.9, "per-head"])
def test_parallel_equals_recurrent(shape, normalize, fmap, decay):
    b, h, n, d, e = shape
    if decay == "per-head":
        decay = torch.linspace(0.5, 0.99, h, dtype=torch.float64)
    q, k, v = _qkv(*shape)
    par = causal_linear_attention(q, k, v, feature_map=fmap, normalize=normalize, decay=decay)
    rec = recurrent_linear_attention(q, k, v, feature_map=fmap, normalize=normalize, decay=decay)
    torch.testing.assert_close(par, rec, rtol=1e-10, atol=1e-12)
    for a, r in zip(_grads(par, (q, k, v)), _grads(rec, (q, k, v))):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("normalize", [False, True])
def test_parallel_equals_literal_double_loop(normalize):
    q, k, v = _qkv(2, 3, 9, 4, 5)
    decay = torch.tensor([1.0, 0.8, 0.5], dtype=torch.float64)
    with torch.no_grad():
        ref = _naive_loop(q, k, v, elu_plus_one, normalize, decay)
        par = causal_linear_attention(q, k, v, feature_map="elu+1", normalize=normalize, decay=decay)
    torch.testing.assert_close(par, ref, rtol=1e-10, atol=1e-12)


def test_recurrent_state_continues_across_chunks():
    q, k, v = _qkv(2, 2, 23, 4, 3)
    decay = torch.tensor([0.7, 0.95], dtype=torch.float64)
    full = recurrent_linear_attention(q, k, v, feature_map="elu+1", normalize=True, decay=decay)
    first, state = recurrent_linear_attention(q[..., :10, :], k[..., :10, :], v[..., :10, :], feature_map="elu+1",
                                              normalize=True, decay=decay, return_state=True)
    second = recurrent_linear_attention(q[..., 10:, :], k[..., 10:, :], v[..., 10:, :], feature_map="elu+1",
                                        normalize=True, decay=decay, initial_state=state)
    torch.testing.assert_close(torch.cat([first, second], dim=-2), full, rtol=1e-10, atol=1e-12)


def test_noncausal_equals_full_matrix_form():
    q, k, v = _qkv(2, 3, 19, 6, 4)
    phi = get_feature_map("elu+1")
    scores = phi(q) @ phi(k).transpose(-2, -1)
    ref = (scores / scores.sum(-1, keepdim=True)) @ v
    out = linear_attention(q, k, v, feature_map="elu+1", normalize=True)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for a, r in zip(_grads(out, (q, k, v)), _grads(ref, (q, k, v))):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)
    # unnormalised, with key padding
    keep = torch.ones(2, 3, 19, dtype=torch.bool)
    keep[0, :, 12:] = False
    out = linear_attention(q, k, v, feature_map="identity", normalize=False, key_mask=keep)
    ref = ((q @ k.transpose(-2, -1)) * keep[..., None, :]) @ v
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_causal_last_row_equals_noncausal():
    """The last causal query sees every key: it must equal the non-causal result."""
    q, k, v = _qkv(1, 2, 15, 4, 4)
    causal = causal_linear_attention(q, k, v, feature_map="elu+1", normalize=True)
    full = linear_attention(q, k, v, feature_map="elu+1", normalize=True)
    torch.testing.assert_close(causal[..., -1, :], full[..., -1, :], rtol=1e-10, atol=1e-12)


def test_decay_mask_values_and_validation():
    m = decay_mask(4, 0.5, dtype=torch.float64)
    expected = torch.tensor([[1, 0, 0, 0], [0.5, 1, 0, 0], [0.25, 0.5, 1, 0], [0.125, 0.25, 0.5, 1]],
                            dtype=torch.float64)
    torch.testing.assert_close(m, expected)
    assert decay_mask(3, torch.tensor([0.5, 0.9])).shape == (2, 3, 3)
    with pytest.raises(ValueError):
        decay_mask(3, 1.5)
    with pytest.raises(ValueError):
        decay_mask(3, 0.0)


def test_attention_interface_registration_and_masks():
    assert get_attention("linear") is linear_attention_fn
    q, k, v = _qkv(2, 2, 11, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(linear_attention_fn(q, k, v, causal=True),
                                   causal_linear_attention(q, k, v, feature_map="elu+1", normalize=True))
        torch.testing.assert_close(linear_attention_fn(q, k, v), linear_attention(q, k, v))
        keep = torch.ones(2, 1, 1, 11, dtype=torch.bool)
        keep[1, ..., 7:] = False
        torch.testing.assert_close(linear_attention_fn(q, k, v, keep),
                                   linear_attention(q, k, v, key_mask=keep[:, :, 0, :].expand(2, 2, 11)))
    with pytest.raises(ValueError):
        linear_attention_fn(q, k, v, torch.zeros(2, 1, 11, 11))


def test_fp32_agrees_with_fp64():
    q, k, v = _qkv(2, 2, 64, 8, 8)
    ref = causal_linear_attention(q, k, v, feature_map="elu+1", normalize=True)
    q32, k32, v32 = (t.detach().float() for t in (q, k, v))
    out = recurrent_linear_attention(q32, k32, v32, feature_map="elu+1", normalize=True)
    assert (out.double() - ref).abs().max() < 1e-5
