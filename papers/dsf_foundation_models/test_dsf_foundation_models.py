"""DSF: the explicit linear time-varying system and the matrix-state recurrence equal the
parallel form of normalised linear attention (outputs and gradients, awkward shapes); the
MQAR generator; the model and the derived metrics."""

from __future__ import annotations

import types

import pytest
import torch

from repro.blocks.linear_attention import causal_linear_attention, elu_plus_one

from .data import IGNORE, mqar
from .model import (
    MQARModel,
    MQARModule,
    dsf_kernel,
    dsf_linear_attention,
    dsf_linear_attention_matrices,
    ltv_scan,
    normalisers,
)
from .recipe import Config, derive

pytestmark = pytest.mark.unit


def _features(b, steps, n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    fq = elu_plus_one(torch.randn(b, steps, n, generator=g, dtype=torch.float64)).requires_grad_()
    fk = elu_plus_one(torch.randn(b, steps, n, generator=g, dtype=torch.float64)).requires_grad_()
    v = torch.randn(b, steps, d, generator=g, dtype=torch.float64).requires_grad_()
    return fq, fk, v


@pytest.mark.parametrize("steps,n,d", [(1, 2, 3), (9, 4, 3), (13, 3, 5)])
@pytest.mark.parametrize("normalize", [True, False])
def test_explicit_dsf_system_equals_parallel_form(steps, n, d, normalize):
    fq, fk, v = _features(1, steps, n, d, seed=steps)
    par = causal_linear_attention(fq, fk, v, feature_map="identity", normalize=normalize)[0]
    lam, Bm, Cm = dsf_linear_attention_matrices(fq[0], fk[0], d, normalize)
    assert lam.shape == (steps, n * d, n * d) and Bm.shape == (steps, n * d, d) and Cm.shape == (steps, d, n * d)
    torch.testing.assert_close(ltv_scan(lam, Bm, Cm, v[0]), par, rtol=1e-11, atol=1e-12)


def test_dsf_kernel_is_the_attention_matrix():
    steps, n, d = 7, 3, 2
    fq, fk, v = _features(1, steps, n, d, seed=4)
    with torch.no_grad():
        lam, Bm, Cm = dsf_linear_attention_matrices(fq[0], fk[0], d)
        phi = dsf_kernel(lam, Bm, Cm)  # (L, L, d, d)
        scores = (fq[0] @ fk[0].T) * torch.tril(torch.ones(steps, steps, dtype=torch.float64))
        attn = scores / scores.sum(-1, keepdim=True)
        torch.testing.assert_close(phi, attn[:, :, None, None] * torch.eye(d, dtype=torch.float64), rtol=1e-11,
                                   atol=1e-13)


@pytest.mark.parametrize("b,steps,n,d", [(2, 17, 5, 3), (1, 64, 32, 8), (3, 1, 2, 2)])
@pytest.mark.parametrize("normalize", [True, False])
def test_matrix_state_recurrence_equals_parallel_form(b, steps, n, d, normalize):
    fq, fk, v = _features(b, steps, n, d, seed=b + steps)
    par = causal_linear_attention(fq, fk, v, feature_map="identity", normalize=normalize)
    rec = dsf_linear_attention(fq, fk, v, normalize=normalize)
    torch.testing.assert_close(rec, par, rtol=1e-11, atol=1e-12)
    g = torch.randn(par.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for a, r in zip(torch.autograd.grad(rec, (fq, fk, v), g), torch.autograd.grad(par, (fq, fk, v), g)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-11)


def test_wrong_transition_is_detected():
    """Without the rescaling Lambda_i = eta_{i-1}/eta_i the recurrence is not attention."""
    fq, fk, v = _features(1, 10, 3, 2, seed=2)
    with torch.no_grad():
        lam, Bm, Cm = dsf_linear_attention_matrices(fq[0], fk[0], 2)
        wrong = ltv_scan(torch.eye(6, dtype=torch.float64).expand(10, 6, 6), Bm, Cm, v[0])
        par = causal_linear_attention(fq, fk, v, feature_map="identity", normalize=True)[0]
        assert (wrong - par).abs().max() > 1e-3
        torch.testing.assert_close(normalisers(fq, fk)[0, 0], (fq[0, 0] * fk[0, 0]).sum())


def test_mqar_generator():
    x, y = mqar(200, 64, 4, 1024, seed=3)
    assert x.shape == y.shape == (200, 64)
    half = 512
    keys, values = x[:, 0:8:2], x[:, 1:8:2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < 1024)).all()
    assert all(len(set(r.tolist())) == 4 for r in keys)
    pos = y != IGNORE
    assert (pos.sum(1) == 4).all() and not pos[:, :8].any()
    for i in range(200):
        kv = dict(zip(keys[i].tolist(), values[i].tolist()))
        qs = x[i][pos[i]].tolist()
        assert sorted(qs) == sorted(kv)  # every key queried once
        assert y[i][pos[i]].tolist() == [kv[q] for q in qs]
    rest = ~pos
    rest[:, :8] = False
    assert (x[rest] == 0).all()
    x2, y2 = mqar(200, 64, 4, 1024, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(ValueError):
        mqar(10, 64, 17, 1024, seed=0)


def _cfg(**kw):
    base = dict(Config().__dict__)
    base.update(vocab_size=64, seq_len=16, num_kv=2, d_model=8, train_examples=32, test_examples=8, max_steps=2,
                batch_size=8, dsf_check_batch=4, threads=0)
    base.update(kw)
    return types.SimpleNamespace(**base)


@pytest.mark.parametrize("mixer", ["softmax", "linear"])
def test_model_trains_and_checks_dsf(mixer):
    cfg = _cfg(mixer=mixer, state_n=6)
    mod = MQARModule(cfg)
    x, y = mqar(8, 16, 2, 64, seed=0)
    loss, acc = mod._loss_acc((x, y))
    loss.backward()
    assert torch.isfinite(loss) and acc.numel() == 16
    assert all(p.grad is not None for p in mod.parameters())
    if mixer == "linear":
        assert mod.dsf_check(x[:4]) < 1e-12
    with pytest.raises(ValueError):
        MQARModel(64, 16, 8, 2, "rnn", 4)


def test_derive_handles_partial_arms():
    m = {"softmax/test/acc": 0.98, "linear_n32/test/acc": 0.4, "linear_n256/test/acc": 0.7,
         "linear_n32/test/dsf_rel_err": 1e-15, "linear_n256/test/dsf_rel_err": 3e-15}
    out = derive(m)
    assert out["gap/linear_acc_gain"] == pytest.approx(0.3)
    assert out["gap/softmax_minus_linear_n32"] == pytest.approx(0.58)
    assert out["dsf/max_rel_err"] == 3e-15
    assert derive({"softmax/test/acc": 1.0}) == {}
