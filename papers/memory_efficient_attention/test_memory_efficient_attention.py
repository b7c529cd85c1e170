"""Chunked attention against the naive reference: outputs and gradients, awkward
shapes, masks, large logits; and the memory measurement it is judged by."""

from __future__ import annotations

import math

import pytest
import torch

from repro.blocks.attention import get_attention, naive_attention
from repro.measure import peak_memory

from .model import chunked_attention, summarize_chunk

pytestmark = pytest.mark.unit

CASES = [  # (batch, heads, lq, lk, d, dv, query_chunk, key_chunk)
    (1, 1, 1, 1, 3, 3, 4, 4),
    (2, 3, 37, 53, 8, 5, 8, 16),  # nothing divides anything
    (1, 2, 100, 100, 16, 16, 30, 7),
    (2, 1, 64, 64, 4, 4, 64, 64),  # a single chunk each
    (1, 1, 129, 257, 8, 8, 1000, 1000),  # chunks larger than the sequence
]


def _qkv(b, h, lq, lk, d, dv, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(lq * 31 + lk)
    q = (torch.randn(b, h, lq, d, generator=g, dtype=dtype) * scale).requires_grad_()
    k = (torch.randn(b, h, lk, d, generator=g, dtype=dtype) * scale).requires_grad_()
    v = torch.randn(b, h, lk, dv, generator=g, dtype=dtype).requires_grad_()
    return q, k, v


def _check(case, scale=1.0, **kw):
    b, h, lq, lk, d, dv, qc, kc = case
    q, k, v = _qkv(b, h, lq, lk, d, dv, scale)
    ref = naive_attention(q, k, v, **kw)
    out = chunked_attention(q, k, v, query_chunk=qc, key_chunk=kc, **kw)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=ref.dtype)
    for a, r in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("case", CASES)
def test_equals_standard_attention(case):
    _check(case)


@pytest.mark.parametrize("case", CASES[1:3])
def test_causal_and_masks(case):
    b, h, lq, lk = case[:4]
    if lq <= lk:
        _check(case, causal=True)
    mask = torch.rand(b, 1, lq, lk, generator=torch.Generator().manual_seed(1)) > 0.5
    mask[..., -1] = True  # every row keeps at least one key
    _check(case, mask=mask)
    _check(case, mask=torch.randn(b, 1, lq, lk, dtype=torch.float64))
    key_padding = torch.ones(b, 1, 1, lk, dtype=torch.bool)
    key_padding[..., : lk // 3] = False  # whole key chunks masked out
    _check(case, mask=key_padding)


def test_large_logits_stay_finite_and_exact():
    q, k, v = _qkv(1, 1, 50, 70, 8, 8, scale=30.0, dtype=torch.float32)  # logits in the hundreds
    naive_exp = torch.exp(q @ k.transpose(-1, -2))
    assert not torch.isfinite(naive_exp).all(), "the test must reach the overflow regime"
    out = chunked_attention(q, k, v, query_chunk=16, key_chunk=16)
    assert torch.isfinite(out).all()
    ref = naive_attention(q.double(), k.double(), v.double())
    assert (out.double() - ref).abs().max() < 1e-4


def test_fully_masked_row_is_nan_like_the_reference():
    q, k, v = _qkv(1, 1, 4, 6, 3, 3)
    mask = torch.ones(1, 1, 4, 6, dtype=torch.bool)
    mask[..., 2, :] = False
    out = chunked_attention(q, k, v, mask, query_chunk=2, key_chunk=2)
    ref = naive_attention(q, k, v, mask)
    assert torch.isnan(out[..., 2, :]).all() and torch.isnan(ref[..., 2, :]).all()
    torch.testing.assert_close(out[..., [0, 1, 3], :], ref[..., [0, 1, 3], :])


def test_summary_rescaling_identity():
    """Section 3: combining two chunk summaries by their maxima gives the softmax."""
    q, k, v = _qkv(1, 1, 3, 10, 4, 4)
    with torch.no_grad():
        v1, w1, m1 = summarize_chunk(q, k[..., :4, :], v[..., :4, :])
        v2, w2, m2 = summarize_chunk(q, k[..., 4:, :], v[..., 4:, :])
        m = torch.maximum(m1, m2)
        a1, a2 = torch.exp(m1 - m), torch.exp(m2 - m)
        out = (v1 * a1[..., None] + v2 * a2[..., None]) / (w1 * a1 + w2 * a2)[..., None]
        torch.testing.assert_close(out, naive_attention(q, k, v, scale=1.0))


def test_registered_in_the_attention_interface():
    assert get_attention("chunked") is chunked_attention


def test_working_memory_is_bounded_by_the_chunks():
    n, d, qc, kc = 2048, 16, 256, 512
    q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
    with torch.no_grad():
        naive, _ = peak_memory(lambda: naive_attention(q, k, v))
        chunked, _ = peak_memory(lambda: chunked_attention(q, k, v, query_chunk=qc, key_chunk=kc))
    assert naive.peak_bytes >= 2 * n * n * 4  # scores and softmax alive together, fp32
    # one score buffer of qc x kc, plus per-chunk summaries of the current query chunk
    bound = qc * kc * 4 * 2 + (n // kc) * qc * (d + 2) * 4 * 2
    assert chunked.overhead_bytes <= bound, (chunked.overhead_bytes, bound)


def test_memory_tracker_counts_what_is_alive():
    def make():
        a = torch.empty(1000, dtype=torch.float32)  # 4000 bytes, freed
        b = torch.empty(250, dtype=torch.float64)  # 2000 bytes, returned
        return b, a.sum()

    peak, _ = peak_memory(make)
    assert peak.peak_bytes >= 6000 and peak.retained_bytes == 2000 + 4  # b and the scalar sum
    assert math.isclose(peak.overhead_bytes, peak.peak_bytes - peak.retained_bytes)
