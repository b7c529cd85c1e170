"""Rank vs heads: the layer against the paper's formula written head by head (outputs and
gradients, awkward shapes), the rank structure, the full-rank construction, the target,
and the recipe's derived metrics and figure."""

from __future__ import annotations

import math

import pytest
import torch

from repro.blocks.attention import naive_attention

from .data import NearestNeighbourData, make_split, nearest_neighbour_target, sphere
from .model import RankedAttention, full_rank_construction, reference_forward, squared_error
from .recipe import PROFILES, RECIPE, Config, derive, plot


def _weights(m: RankedAttention):
    a = m.attn
    return a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.out_proj.weight


@pytest.mark.unit
@pytest.mark.parametrize("d,heads,n_ctx,batch", [(6, 3, 5, 7), (5, 1, 1, 3), (8, 8, 3, 4), (12, 4, 2, 1), (7, 7, 9, 2)])
@pytest.mark.parametrize("attn", ["sdpa", "naive"])
def test_layer_equals_section3_formula(d, heads, n_ctx, batch, attn):
    torch.manual_seed(d * 100 + heads)
    kernel = {"sdpa": None, "naive": naive_attention}[attn]
    m = (RankedAttention(d, heads) if kernel is None else RankedAttention(d, heads, attn=kernel)).double()
    y = torch.randn(batch, d, dtype=torch.float64, requires_grad=True)
    X = torch.randn(batch, n_ctx, d, dtype=torch.float64, requires_grad=True)
    out = m(y, X)
    ref = reference_forward(y, X, *_weights(m), heads)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out)
    params = [y, X, *_weights(m)]
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.unit
@pytest.mark.parametrize("d,heads", [(8, 1), (8, 2), (8, 8), (12, 3)])
def test_each_head_has_rank_d_over_h(d, heads):
    torch.manual_seed(0)
    mats = RankedAttention(d, heads).double().attention_matrices()
    assert mats.shape == (heads, d, d)
    ranks = torch.linalg.matrix_rank(mats)
    assert (ranks == d // heads).all(), ranks
    # same parameter count whatever H: 4 d^2
    assert sum(p.numel() for p in RankedAttention(d, heads).parameters()) == 4 * d * d


@pytest.mark.unit
def test_rejects_heads_not_dividing_d():
    with pytest.raises(ValueError):
        RankedAttention(6, 4)


@pytest.mark.unit
@pytest.mark.parametrize("n_ctx", [2, 8])
def test_full_rank_construction_error_vanishes_with_beta(n_ctx):
    ds = make_split(4000, 8, n_ctx, seed=3)
    y, X, t = ds.tensors
    errs = []
    with torch.no_grad():
        for beta in (1.0, 10.0, 100.0, 1000.0):
            errs.append(squared_error(full_rank_construction(8, beta)(y, X), t).mean().item())
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.01 and errs[0] > 0.1, errs


@pytest.mark.unit
def test_target_is_the_most_aligned_context_vector():
    g = torch.Generator().manual_seed(0)
    y, X = sphere((50,), 5, g), sphere((50, 7), 5, g)
    assert torch.allclose(y.norm(dim=-1), torch.ones(50))
    t = nearest_neighbour_target(y, X)
    for b in range(50):
        best = max(range(7), key=lambda j: float(y[b] @ X[b, j]))
        assert torch.equal(t[b], X[b, best])


@pytest.mark.unit
def test_data_is_seeded_and_batched():
    cfg = Config(d=4, train_samples=300, val_samples=10, test_samples=20, batch_size=64)
    torch.manual_seed(5)
    a = NearestNeighbourData(cfg)
    a.setup()
    torch.manual_seed(5)
    b = NearestNeighbourData(cfg)
    b.setup()
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert not torch.equal(a.train.tensors[0][:20], a.test.tensors[0])
    loader = a.train_dataloader()
    y, X, t = next(iter(loader))
    assert y.shape == (64, 4) and X.shape == (64, cfg.context, 4) and t.shape == (64, 4)
    assert len(loader) == 300 // 64
    first = next(iter(loader))[0]
    loader.batch_sampler.sampler.set_epoch(1)  # what Lightning calls each epoch
    assert not torch.equal(first, next(iter(loader))[0])


@pytest.mark.unit
def test_derive_and_plot(tmp_path):
    m = {"full_d4/test/nmse": 0.1, "rank1_d4/test/nmse": 0.2, "full_d16/test/nmse": 0.05,
         "rank1_d16/test/nmse": 0.5, "h4_d16/test/nmse": 0.2}
    out = derive(m)
    assert math.isclose(out["gap/ratio_d16"], 10.0) and math.isclose(out["gap/ratio_h4_d16"], 4.0)
    assert math.isclose(out["gap/log10_ratio_growth"], 1.0 - math.log10(2.0))
    plot({k: [v, v * 1.1] for k, v in {**m, **out}.items()}, tmp_path)
    assert (tmp_path / "error_vs_d_and_heads.png").stat().st_size > 0


@pytest.mark.unit
def test_claims_only_use_arms_the_profile_trains():
    cpu = PROFILES["cpu"]
    assert {"full_d16", "rank1_d16", "h4_d16", "full_d4", "rank1_d32"} <= set(cpu.arms)
    fake = {f"{a}/test/nmse": 0.1 for a in cpu.arms}
    derived = derive(fake)
    for c in cpu.claims:
        assert c.metric in derived or c.metric in fake, c.metric
    assert all(c.kind == "expectation" for c in cpu.claims) and RECIPE.skips["full"]


@pytest.mark.cpu_claim
@pytest.mark.slow
def test_one_full_rank_head_learns_the_target():
    """A short real training run: one full-rank head at d = 8 beats uniform attention
    (error 0.5) by a wide margin; a broken layer or loss would not."""
    import lightning as L

    from .model import NearestNeighbourModule

    cfg = Config(d=8, heads=1, train_samples=20_000, max_steps=400)
    torch.manual_seed(0)
    module, dm = NearestNeighbourModule(cfg), NearestNeighbourData(cfg)
    trainer = L.Trainer(max_steps=cfg.max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    (res,) = trainer.test(module, datamodule=dm, verbose=False)
    assert res["test/nmse"] < 0.25, res
