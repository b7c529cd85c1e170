"""Positional attention: the attention block against naive references (outputs and
gradients, awkward shapes), the defining property (weights independent of the data),
the task targets against plain-Python references, the value-generalisation split, and
the recipe's per-scale metrics, derived gaps and figure."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from repro.blocks.attention import naive_attention

from .data import (ValueGeneralisationData, cumulative_max_subarray, cumulative_median, make_set, sample_ranges,
                   target)
from .model import AlgorithmicTransformer, QKSourceAttention, ValueGeneralisationModule
from .recipe import PROFILES, Config, derive, plot


def _manual(attn: QKSourceAttention, x, qk_input):
    """The block written out: per head softmax(q k^T / sqrt(d_k)) v, concatenated, projected."""
    b, n, _ = x.shape
    qi = qk_input if qk_input.dim() == 3 else qk_input.expand(b, -1, -1)
    q = attn.q_proj(qi).view(b, n, attn.heads, attn.qk_dim)
    k = attn.k_proj(qi).view(b, n, attn.heads, attn.qk_dim)
    v = attn.v_proj(x).view(b, n, attn.heads, attn.dim // attn.heads)
    heads = []
    for h in range(attn.heads):
        w = torch.softmax(q[:, :, h] @ k[:, :, h].transpose(1, 2) / math.sqrt(attn.qk_dim), dim=-1)
        heads.append(w @ v[:, :, h])
    return attn.out_proj(torch.cat(heads, dim=-1))


@pytest.mark.unit
@pytest.mark.parametrize("b,n,dim,heads,qk_in,positional", [
    (3, 9, 12, 3, 9, True), (1, 5, 8, 2, 5, True), (4, 7, 6, 1, 6, False), (2, 1, 10, 5, 10, False)])
@pytest.mark.parametrize("kernel", ["sdpa", "naive", "weights"])
def test_attention_block_equals_manual(b, n, dim, heads, qk_in, positional, kernel):
    torch.manual_seed(b * 7 + n)
    attn = (QKSourceAttention(dim, heads, qk_in, attn=naive_attention) if kernel == "naive"
            else QKSourceAttention(dim, heads, qk_in)).double()
    x = torch.randn(b, n, dim, dtype=torch.float64, requires_grad=True)
    qk = torch.eye(n, dtype=torch.float64) if positional else x
    out = attn(x, qk, need_weights=True)[0] if kernel == "weights" else attn(x, qk)
    ref = _manual(attn, x, qk)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out)
    params = [x, *attn.parameters()]
    for a, r in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


@pytest.mark.unit
def test_positional_weights_do_not_depend_on_values():
    torch.manual_seed(0)
    pos = AlgorithmicTransformer(9, positional=True, layers=3)
    std = AlgorithmicTransformer(9, positional=False, layers=3)
    x1, x2 = torch.randn(4, 9, 1), 10 * torch.randn(4, 9, 1)
    with torch.no_grad():
        for w1, w2 in zip(pos.attention_weights(x1), pos.attention_weights(x2)):
            torch.testing.assert_close(w1, w2)
            torch.testing.assert_close(w1[0], w1[3])  # and the same for every sequence
        differs = [not torch.allclose(a, b) for a, b in zip(std.attention_weights(x1), std.attention_weights(x2))]
    assert all(differs)


@pytest.mark.unit
def test_model_forward_and_gradients_are_finite():
    torch.manual_seed(0)
    for positional in (True, False):
        m = AlgorithmicTransformer(9, positional=positional)
        x = torch.randn(5, 9, 1)
        out = m(x)
        assert out.shape == (5, 9, 1)
        out.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
        assert len(m.layers) == 4


def _max_subarray(row):
    return max(sum(row[i:j]) for i in range(len(row)) for j in range(i + 1, len(row) + 1))


@pytest.mark.unit
def test_targets_match_plain_python():
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(20, 7, generator=g, dtype=torch.float64) * 4 - 2)
    rows = x.tolist()
    torch.testing.assert_close(target("sum", x), torch.tensor([[sum(r[: k + 1]) for k in range(7)] for r in rows],
                                                              dtype=torch.float64))
    torch.testing.assert_close(target("min", x), torch.tensor([[min(r[: k + 1]) for k in range(7)] for r in rows],
                                                              dtype=torch.float64))
    torch.testing.assert_close(target("sort", x), torch.tensor([sorted(r) for r in rows], dtype=torch.float64))
    torch.testing.assert_close(cumulative_median(x),
                               torch.tensor([[statistics.median(r[: k + 1]) for k in range(7)] for r in rows],
                                            dtype=torch.float64))
    torch.testing.assert_close(cumulative_max_subarray(x),
                               torch.tensor([[_max_subarray(r[: k + 1]) for k in range(7)] for r in rows],
                                            dtype=torch.float64))
    with pytest.raises(ValueError):
        target("mean", x)


@pytest.mark.unit
def test_value_ranges_and_rejection():
    g = torch.Generator().manual_seed(0)
    lo, hi = sample_ranges(5000, -2.0, 2.0, g, reject=(-2.0, 2.0))  # training range: no rejection
    assert (lo >= -2).all() and (hi <= 2).all() and (lo <= hi).all()
    lo, hi = sample_ranges(5000, -20.0, 20.0, g, reject=(-2.0, 2.0))
    assert (lo >= -20).all() and (hi <= 20).all()
    assert not ((lo >= -2) & (hi <= 2)).any(), "an OOD sub-range lies inside the training range"
    x, y = make_set("min", 100, 8, -4.0, 4.0, g, scratch=1, reject=(-2.0, 2.0))
    assert x.shape == (100, 9, 1) and (x[:, 8] == 0).all() and (y[:, 8] == 0).all()
    assert x.abs().max() <= 4.0


@pytest.mark.unit
def test_per_scale_test_mse_and_scratch_excluded():
    cfg = Config(train_samples=40, test_samples=30, test_scales=(1, 3, 10), batch_size=16)
    torch.manual_seed(2)
    dm = ValueGeneralisationData(cfg)
    dm.setup()
    module = ValueGeneralisationModule(cfg)
    module.eval()
    module.on_test_epoch_start()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            module.test_step(batch, 0)
        x, y, ids = dm.test
        pred = module(x)
        for i in range(3):
            sel = ids == i
            direct = ((pred[sel, :8] - y[sel, :8]) ** 2).mean().item()
            assert math.isclose(float(module._sse[i] / module._count[i]), direct, rel_tol=1e-5)
            rel = ((pred[sel, :8] - y[sel, :8]) ** 2).sum().item() / (y[sel, :8] ** 2).sum().item()
            assert math.isclose(float(module._sse[i] / module._ssy[i]), rel, rel_tol=1e-5)
        # the scratchpad node never enters the loss
        x, y = dm.train[0][:8], dm.train[1][:8]
        y2 = y.clone()
        y2[:, 8] = 123.0
        assert torch.equal(module._mse(x, y), module._mse(x, y2))


@pytest.mark.unit
def test_derive_and_plot(tmp_path):
    m = {"positional_min/test/mse_x10": 0.01, "standard_min/test/mse_x10": 10.0,
         "positional_min/test/mse_x1": 1e-4, "standard_min/test/mse_x1": 1e-4}
    out = derive(m)
    assert math.isclose(out["gap/min/log10_ratio_x10"], 3.0) and math.isclose(out["gap/min/log10_ratio_x1"], 0.0)
    plot({k: [v, 2 * v] for k, v in m.items()}, tmp_path)
    assert (tmp_path / "mse_vs_test_range.png").stat().st_size > 0


@pytest.mark.unit
def test_claim_metrics_come_from_trained_arms():
    for name, prof in PROFILES.items():
        fake = {f"{a}/test/{k}_x{s}": 1.0 for a in prof.arms for k in ("mse", "log10_mse", "rel_mse") for s in range(1, 11)}
        fake.update(derive(fake))
        for c in prof.claims:
            assert c.metric in fake, (name, c.metric)


@pytest.mark.cpu_claim
@pytest.mark.slow
def test_positional_transformer_learns_cumulative_min():
    """Short real training: the positional Transformer's in-distribution error on
    cumulative min drops well below the target's variance (about 1)."""
    import lightning as L

    cfg = Config(task="min", train_samples=2000, test_samples=500, batch_size=100, max_epochs=15,
                 test_scales=(1,), lr=2e-3, check_val_every_n_epoch=100)
    torch.manual_seed(0)
    module, dm = ValueGeneralisationModule(cfg), ValueGeneralisationData(cfg)
    trainer = L.Trainer(max_epochs=cfg.max_epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    (res,) = trainer.test(module, datamodule=dm, verbose=False)
    assert res["test/mse_x1"] < 0.2, res
