"""HeadMask: Random-k and Impt-k mask sampling, the importance scores they rest on (against
an independent per-example computation and the sixteen_heads implementation), the masked
training step, the inequality measures and the recipe."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from papers.headmask_nmt.data import EOS, PAD, collate, decoder_input, make_toy, per_example_loss
from papers.headmask_nmt.model import (HeadMaskModule, analyse, cv, gate_loss, gini, impt_k_mask, random_k_mask,
                                       token_accuracy)
from repro.head_importance import batch_importance, flat, head_importance, ones_mask

unit = pytest.mark.unit


def _cfg(**kw):
    from papers.headmask_nmt.recipe import Config

    base = dict(dim=12, heads=3, layers=2, ffn_dim=16, dropout=0.0, n_words=10, max_len=6, mask_k=4)
    base.update(kw)
    return Config(**base)


def _batch(n=5, seed=1):
    t = make_toy(n, 10, 3, 6, seed=seed, lexicon_seed=2)
    return collate([{k: v[i] for k, v in t.items()} | {"idx": i} for i in range(n)])


def _module(**kw):
    torch.manual_seed(0)
    return HeadMaskModule(_cfg(**kw), vocab_size=14, seed=0).double()


@unit
def test_random_k_masks_exactly_k_heads_uniformly():
    net = _module().net
    base = ones_mask(net)
    assert sum(v.numel() for v in base.values()) == 18
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(18)
    draws = 3000
    for _ in range(draws):
        m = random_k_mask(base, 4, g)
        f = flat(m)
        assert int((f == 0).sum()) == 4 and set(f.unique().tolist()) <= {0.0, 1.0}
        counts += (f == 0).float()
    freq = counts / draws  # each head masked with probability k/n = 4/18
    assert torch.allclose(freq, torch.full((18,), 4 / 18), atol=0.035)
    a = random_k_mask(base, 4, torch.Generator().manual_seed(5))
    b = random_k_mask(base, 4, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)  # reproducible from the generator
    assert set(a) == {"encoder", "decoder", "cross"} and a["cross"].shape == (2, 3)
    with pytest.raises(ValueError):
        random_k_mask(base, 19)


@unit
def test_impt_k_masks_the_k_most_important_heads():
    scores = {"encoder": torch.tensor([[0.1, 0.9], [0.3, 0.3]]), "decoder": torch.tensor([[0.5, 0.0], [0.2, 0.8]]),
              "cross": torch.tensor([[0.3, 0.05], [0.7, 0.6]])}
    m = impt_k_mask(scores, 3)
    assert m["encoder"][0, 1] == 0 and m["decoder"][1, 1] == 0 and m["cross"][1, 0] == 0
    assert int((flat(m) == 0).sum()) == 3
    tie = impt_k_mask(scores, 5)  # 0.9, 0.8, 0.7, 0.6, 0.5: the fifth is decoder[0,0]
    assert tie["decoder"][0, 0] == 0 and tie["encoder"][1, 0] == 1
    assert int((flat(impt_k_mask(scores, 0)) == 0).sum()) == 0


@unit
def test_batch_importance_equals_per_example_gradients():
    net = _module().net.eval()
    batch = _batch()
    base = ones_mask(net)
    scores, n = batch_importance(net, batch, gate_loss, base)
    assert n == 5
    ref = {k: torch.zeros_like(v) for k, v in base.items()}
    for i in range(5):  # one example at a time, plain (layers, heads) gates
        one = {k: v[i:i + 1] for k, v in batch.items()}
        gates = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        loss = per_example_loss(net, one, gates).sum()
        for k, g in zip(gates, torch.autograd.grad(loss, list(gates.values()))):
            ref[k] += g.abs()
    for k in base:
        assert torch.allclose(scores[k], ref[k].to(scores[k].dtype), atol=1e-9)


@unit
def test_importance_matches_sixteen_heads_implementation():
    sixteen = pytest.importorskip("papers.sixteen_heads.model")
    net = _module().net.eval()
    batches = [_batch(4, seed=s) for s in (1, 2)]
    ours = head_importance(net, batches, gate_loss, normalize=True)

    def remap(b):  # sixteen_heads' loss reads the same src/tgt layout and decoder input convention
        return {"src": b["src"], "tgt": b["tgt"]}

    theirs = sixteen.head_importance(net, [remap(b) for b in batches], normalize=True)
    for k in ours:
        assert torch.allclose(ours[k], theirs[k].to(ours[k].dtype), atol=1e-8)


@unit
def test_training_step_masks_heads_as_configured():
    batch = _batch()
    for mode in ("none", "random", "impt"):
        mod = _module(mask=mode)
        mask = mod.train_head_mask(batch)
        if mode == "none":
            assert mask is None
            continue
        assert int((flat(mask) == 0).sum()) == 4
        if mode == "impt":
            scores, _ = batch_importance(mod.net, batch, gate_loss, ones_mask(mod.net))
            s = flat(scores)
            top = set(torch.topk(s, 4).indices.tolist())
            assert set((flat(mask) == 0).nonzero()[:, 0].tolist()) == top
        loss = mod.training_step(batch, 0)
        loss.backward()
        assert torch.isfinite(loss)
        # a masked head is really off: zeroing it changes the loss, and gradients reach every unmasked projection
        assert all(p.grad is not None for n, p in mod.net.named_parameters() if "q_proj" in n)


@unit
def test_masking_a_head_changes_the_output_and_full_mask_is_identity():
    net = _module().net.eval()
    b = _batch()
    full = ones_mask(net)
    out = net(b["src"], decoder_input(b["tgt"]))
    assert torch.allclose(net(b["src"], decoder_input(b["tgt"]), head_mask=full), out)
    m = {k: v.clone() for k, v in full.items()}
    m["cross"][1, 2] = 0
    assert not torch.allclose(net(b["src"], decoder_input(b["tgt"]), head_mask=m), out)


@unit
def test_cv_and_gini_known_values():
    assert cv(torch.tensor([1.0, 1.0, 1.0])) == pytest.approx(0.0)
    assert cv(torch.tensor([1.0, 3.0])) == pytest.approx(0.5)
    assert gini(torch.tensor([2.0, 2.0, 2.0, 2.0])) == pytest.approx(0.0)
    assert gini(torch.tensor([0.0, 0.0, 0.0, 4.0])) == pytest.approx(0.75)  # (n-1)/n for one holder
    assert gini(torch.tensor([0.0, 0.0])) == 0.0


@unit
def test_analyse_reports_inequality_measures():
    net = _module().net
    bs = [_batch(6, seed=3)]
    m = analyse(net, bs, bs)
    for key in ("importance/cv", "importance/gini", "ablation/drop_std", "ablation/drop_max", "ablation/base_acc"):
        assert key in m and m[key] == m[key]
    assert m["ablation/base_acc"] == pytest.approx(token_accuracy(net, bs))
    assert (bs[0]["tgt"] == EOS).sum() == 6 and (bs[0]["src"] != PAD).any()


@unit
def test_recipe_is_consistent():
    from papers.headmask_nmt.recipe import RECIPE, derive

    assert {"cpu", "smoke", "full"} <= set(RECIPE.profiles)
    assert RECIPE.profiles["cpu"].seeds >= 3
    cfg = RECIPE.profiles["cpu"].config
    assert cfg.mask_k == 3 and cfg.heads * cfg.layers * 3 == 24  # 12.5%, as 18 of 144
    full = RECIPE.profiles["full"].config
    assert full.mask_k == 18 and full.heads * full.layers * 3 == 144
    d = derive({"baseline/importance/cv": 1.0, "random_k/importance/cv": 0.7, "baseline/test/bleu": 50.0,
                "random_k/test/bleu": 49.0})
    assert d["gap/imp_cv_random_k_minus_baseline"] == pytest.approx(-0.3)
    assert d["gap/bleu_random_k_minus_baseline"] == pytest.approx(-1.0)
    assert dataclasses.is_dataclass(cfg)


@unit
def test_plot_draws_the_figure(tmp_path):
    from papers.headmask_nmt.recipe import plot

    per_seed = {f"{a}/{k}": [1.0, 2.0, None] for a in ("baseline", "random_k", "impt_k")
                for k in ("importance/cv", "ablation/drop_std", "test/bleu")}
    plot(per_seed, tmp_path)
    assert (tmp_path / "head_inequality.png").stat().st_size > 1000
