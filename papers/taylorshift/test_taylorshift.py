"""TaylorShift: the efficient form against the direct form and a literal reference
(outputs and gradients, awkward shapes), the memory/operation models behind the
crossover claims, and the error-bound metric."""

from __future__ import annotations

import math

import pytest
import torch

from repro.measure import peak_memory

from .data import random_qkv
from .experiment import crossing, forward_bound, operation_count
from .model import (
    box,
    direct_taylorshift,
    efficient_taylorshift,
    flops_crossover,
    memory_crossover,
    taylor_exp,
    taylor_softmax,
    taylorshift,
    taylorshift_attention,
)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


CASES = [  # (batch, heads, N, d)
    (1, 1, 1, 3),
    (2, 3, 37, 5),  # N not related to d
    (1, 2, 7, 16),  # N < d
    (2, 1, 130, 8),
]


def _literal(q, k, v, normalize, tau=1.0):
    """Eq. (1)-(2) written with explicit loops over queries: the readable reference."""
    if normalize:
        q = torch.nn.functional.normalize(q, dim=-1) * tau
        k = torch.nn.functional.normalize(k, dim=-1)
    rows = []
    for i in range(q.shape[-2]):
        x = (q[..., i : i + 1, :] * k).sum(-1)  # (..., N)
        w = 1 + x + x * x / 2
        rows.append((w / w.sum(-1, keepdim=True)).unsqueeze(-1).mul(v).sum(-2))
    return torch.stack(rows, dim=-2)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("normalize,tau", [(False, 1.0), (True, 1.0), (True, 2.5)])
def test_forms_agree_outputs_and_gradients(case, normalize, tau):
    b, h, n, d = case
    q, k, v = random_qkv(b, h, n, d, seed=n + d, dtype=torch.float64, requires_grad=True)
    if not normalize:
        q = (q * 0.3).detach().requires_grad_()  # keep q.k moderate for the raw forms
    ref = _literal(q, k, v, normalize, tau)
    outs = {f: taylorshift(q, k, v, form=f, normalize_input=normalize, temperature=tau)
            for f in ("direct", "efficient")}
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_g = torch.autograd.grad(ref, (q, k, v), g)
    for out in outs.values():
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        for a, r in zip(torch.autograd.grad(out, (q, k, v), g), ref_g):
            torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)


def test_inference_paths_match_autograd_paths():
    q, k, v = random_qkv(2, 2, 50, 6, seed=3, dtype=torch.float64)
    for fn in (direct_taylorshift, efficient_taylorshift):
        with torch.no_grad():
            a = fn(q, k, v)
        b = fn(q.clone().requires_grad_(), k, v)
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)


def test_taylor_softmax_and_box_identities():
    x = torch.linspace(-10, 10, 201, dtype=torch.float64)
    assert (taylor_exp(x) >= 0.5).all()  # 1 + x + x^2/2 >= 1/2
    s = taylor_softmax(torch.randn(4, 9, dtype=torch.float64))
    torch.testing.assert_close(s.sum(-1), torch.ones(4, dtype=torch.float64))
    q, k = torch.randn(3, 5, 7, dtype=torch.float64).unbind(0)[:2]
    torch.testing.assert_close((box(q, q) * box(k, k)).sum(-1), (q * k).sum(-1) ** 2)


def test_auto_switches_at_n0():
    d = 4
    n0 = flops_crossover(d)
    assert n0 == 21
    q, k, v = random_qkv(1, 1, 30, d, seed=0, dtype=torch.float64)
    torch.testing.assert_close(taylorshift(q, k, v), taylorshift(q, k, v, form="efficient"))
    torch.testing.assert_close(taylorshift(q, k, v, n0=100), taylorshift(q, k, v, form="direct"))
    with pytest.raises(ValueError):
        taylorshift(q, k, v, form="fast")
    with pytest.raises(NotImplementedError):
        taylorshift_attention(q, k, v, causal=True)


def test_analytic_memory_crossover_solves_the_memory_model():
    for d in (8, 16, 32, 64, 128):
        n = memory_crossover(d)
        assert math.isclose(2 * n * n + n, n * (d * d + 2 * d + 2) + d * d * (d + 1), rel_tol=1e-12)
    assert round(memory_crossover(32)) == 574 and round(memory_crossover(64)) == 2174


@pytest.mark.parametrize("d", [8, 16])
def test_memory_of_each_form_is_the_analysed_model(d):
    """Direct keeps 2 N^2 floats (the N row sums come after the scores are freed); efficient N (d^2 + 2d + 2) + d^2 (d+1) plus lower-order
    terms (+ the N d output in both): the buffers the analytic crossover counts."""
    n = 300
    q, k, v = random_qkv(1, 1, n, d, seed=0)
    with torch.no_grad():
        pd, _ = peak_memory(lambda: direct_taylorshift(q, k, v))
        pe, _ = peak_memory(lambda: efficient_taylorshift(q, k, v))
    assert pd.peak_bytes == 4 * 2 * n * n
    model = n * (d * d + 2 * d + 2) + d * d * (d + 1)
    extra = d * (d + 1) + (d + 1) + n * (d + 1)  # key summary, column sums, q @ k1 temporary
    assert 4 * model <= pe.peak_bytes <= 4 * (model + extra), (pe.peak_bytes, 4 * model)


def test_operation_counts():
    n, d = 100, 8
    assert operation_count("direct", n, d) == 4 * n * n * d
    assert operation_count("efficient", n, d) == 4 * n * d * (d + 1) ** 2


def test_crossing_interpolates():
    assert math.isclose(crossing(lambda n: 100.5 - n), 100.5)
    assert math.isclose(crossing(lambda n: 3 * (40 - n), lo=3), 40.0)
    with pytest.raises(ValueError):
        crossing(lambda n: -1.0)


def test_forward_bound_metric_detects_a_wrong_form():
    q, k, v = random_qkv(1, 2, 211, 8, seed=4, dtype=torch.float64)
    ref = taylorshift(q, k, v, form="direct")
    bound = forward_bound(q, k, v, ref, 211 + 64 + 16 + 24, 1.0)
    q32, k32, v32 = q.float(), k.float(), v.float()
    good = taylorshift(q32, k32, v32, form="efficient").double()
    assert ((good - ref).abs() / bound).max() < 1
    qn = torch.nn.functional.normalize(q32, dim=-1)
    kn = torch.nn.functional.normalize(k32, dim=-1)
    wrong = efficient_taylorshift(qn, kn, v32, coef=(0.5, 1.0, 1.01)).double()  # 1% off in one coefficient
    assert ((wrong - ref).abs() / bound).max() > 10
