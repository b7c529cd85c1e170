"""Head gates, importance scores, ablations and pruning schedules of Michel et al. (2019)
on tiny models, plus the recipe's derived metrics and figure."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from repro.blocks.seq2seq import TransformerSeq2Seq

from .data import EOS, FIRST_SYMBOL, PAD, decoder_input, make_split, vocab_size
from .model import (KINDS, ablate_one, accuracy, all_heads, head_importance, importance_order, iterative_pruning_masks,
                    keep_only, ones_mask, per_example_loss, prune, pruning_masks, random_order, rank_correlation)
from .recipe import PROFILES, RECIPE, derive, plot

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


def _tiny(seed=0, heads=4, layers=2):
    torch.manual_seed(seed)
    v = vocab_size(6)
    net = TransformerSeq2Seq(v, v, dim=16, heads=heads, encoder_layers=layers, decoder_layers=layers, ffn_dim=24,
                             dropout=0.0, norm_first=True, share_embeddings=True, pad_id=PAD, max_positions=16)
    return net.double().eval()


def _batch(n=3, seed=1):
    return make_split(n, 6, 2, 5, seed)


def _mha(net, kind, layer):
    return {"encoder": net.encoder[layer].attn, "decoder": net.decoder[layer].attn,
            "cross": net.decoder[layer].cross}[kind]


def test_sorting_task():
    t = make_split(50, 10, 3, 7, seed=0)
    for src, tgt in zip(t["src"], t["tgt"]):
        s = src[src != PAD]
        assert 3 <= len(s) <= 7 and len(set(s.tolist())) == len(s) and (s >= FIRST_SYMBOL).all()
        n = len(s)
        assert tgt[:n].tolist() == sorted(s.tolist()) and tgt[n] == EOS and (tgt[n + 1:] == PAD).all()
    prev = decoder_input(t["tgt"])
    assert (prev[:, 1:][t["tgt"][:, :-1] != EOS] == t["tgt"][:, :-1][t["tgt"][:, :-1] != EOS]).all()
    assert not (prev == EOS).any()


def test_importance_equals_finite_differences_per_example():
    """I_h = mean_x |dL(x)/dxi_h| (one backward with per-example gates) against central
    differences of each example's loss in xi_h, every head of every kind."""
    net, b = _tiny(layers=1), _batch()
    scores = head_importance(net, [b], normalize=False)
    eps = 1e-6
    for kind, layer, h in all_heads(ones_mask(net)):
        fd = torch.zeros(b["src"].shape[0], dtype=torch.float64)
        for sign in (1, -1):
            m = {k: v.double() for k, v in ones_mask(net).items()}
            m[kind][layer, h] += sign * eps
            with torch.no_grad():
                fd += sign * per_example_loss(net, b, m)
        expected = (fd / (2 * eps)).abs().mean()
        torch.testing.assert_close(scores[kind][layer, h].double(), expected, rtol=1e-5, atol=1e-8)


def test_importance_at_a_partial_mask_and_normalisation():
    net, b = _tiny(1), _batch(4, 2)
    base = ablate_one(ones_mask(net), ("cross", 0, 1))
    raw = head_importance(net, [b], base_mask=base, normalize=False)
    # the gradient at xi_h = 0 is still defined (first-order estimate of putting the head back)
    eps = 1e-6
    fd = 0
    for sign in (1, -1):
        m = {k: v.double().clone() for k, v in base.items()}
        m["cross"][0, 1] += sign * eps
        with torch.no_grad():
            fd = fd + sign * per_example_loss(net, b, m)
    torch.testing.assert_close(raw["cross"][0, 1].double(), (fd / (2 * eps)).abs().mean(), rtol=1e-5, atol=1e-8)
    norm = head_importance(net, [b], base_mask=base)
    for k in KINDS:
        torch.testing.assert_close(norm[k].norm(dim=-1), torch.ones(2, dtype=norm[k].dtype))
        torch.testing.assert_close(norm[k], raw[k] / raw[k].norm(dim=-1, keepdim=True))
    # two batches = the example-weighted mean of the two
    b2 = _batch(2, 5)
    both = head_importance(net, [b, b2], normalize=False)
    one, two = head_importance(net, [b], normalize=False), head_importance(net, [b2], normalize=False)
    for k in KINDS:
        torch.testing.assert_close(both[k], (4 * one[k] + 2 * two[k]) / 6)


@pytest.mark.parametrize("kind", KINDS)
def test_gate_zero_equals_removing_the_head(kind):
    """xi_h = 0 gives the same outputs as deleting head h's slice of the output projection."""
    net, b = _tiny(3), _batch(3, 4)
    prev = decoder_input(b["tgt"])
    layer, h = 1, 2
    with torch.no_grad():
        masked = net(b["src"], prev, head_mask=ablate_one(ones_mask(net), (kind, layer, h)))
        dh = net.dim // net.heads
        _mha(net, kind, layer).out_proj.weight[:, h * dh:(h + 1) * dh] = 0.0
        removed = net(b["src"], prev)
    torch.testing.assert_close(masked, removed, rtol=1e-12, atol=1e-12)


def test_all_ones_mask_is_the_plain_model_and_keep_only():
    net, b = _tiny(4), _batch(5, 6)
    prev = decoder_input(b["tgt"])
    with torch.no_grad():
        torch.testing.assert_close(net(b["src"], prev, head_mask=ones_mask(net)), net(b["src"], prev))
    m = keep_only(ones_mask(net), ("decoder", 1, 3))
    assert m["decoder"][1].tolist() == [0, 0, 0, 1] and m["decoder"][0].sum() == 4 and m["encoder"].sum() == 8
    acc, seq = accuracy(net, [b], m)
    assert 0 <= acc <= 100 and 0 <= seq <= 100


def test_prune_follows_order_and_keeps_a_head_per_layer():
    mask = {"encoder": torch.ones(2, 3), "decoder": torch.ones(1, 3), "cross": torch.ones(1, 3)}
    scores = {"encoder": torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]]),
              "decoder": torch.tensor([[0.05, 0.06, 0.07]]), "cross": torch.tensor([[1.0, 1.1, 1.2]])}
    order = importance_order(scores)
    assert order[:4] == [("decoder", 0, 0), ("decoder", 0, 1), ("decoder", 0, 2), ("encoder", 0, 0)]
    out, n = prune(mask, order, 4)
    # the decoder layer keeps its last head (0.07); the 4th removal moves on to the encoder
    assert n == 4 and out["decoder"].tolist() == [[0, 0, 1]]
    assert out["encoder"].tolist() == [[0, 0, 1], [1, 1, 1]]
    out0, n0 = prune(mask, order, 4, min_heads_per_layer=0)
    assert n0 == 4 and out0["decoder"].sum() == 0 and out0["encoder"].tolist() == [[0, 1, 1], [1, 1, 1]]
    # asking for everything stops at one head per layer
    full, nmax = prune(mask, order, 12)
    assert nmax == 12 - 4 and all((v.sum(dim=-1) == 1).all() for v in full.values())
    # nested schedule: fractions of all 12 heads
    masks = pruning_masks(mask, order, [0.0, 0.25, 0.5])
    removed = [12 - int(sum(v.sum() for v in m.values())) for m in masks]
    assert removed == [0, 3, 6]
    for a, b in zip(masks, masks[1:]):
        assert all((b[k] <= a[k]).all() for k in a)
    # the alive filter and a random order cover every head once
    assert ("decoder", 0, 0) not in importance_order(scores, out)
    r = random_order(mask, torch.Generator().manual_seed(0))
    assert sorted(r) == sorted(all_heads(mask))


def test_iterative_pruning_counts_and_nesting():
    net, b = _tiny(5), _batch(4, 7)
    masks = iterative_pruning_masks(net, [b], [0.0, 0.25, 0.5, 0.9])
    n = 3 * 2 * 4
    removed = [n - int(sum(v.sum() for v in m.values())) for m in masks]
    assert removed[:3] == [0, 6, 12] and removed[3] == n - 6  # 90% capped at one head per layer
    for a, c in zip(masks, masks[1:]):
        assert all((c[k] <= a[k]).all() for k in a)


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)


def test_derive_and_plot_on_synthetic_values(tmp_path):
    per_seed = {}
    for s in range(3):
        m = {"test/acc": 99.0, "ablation/frac_under_1pt": 0.9}
        for i, p in enumerate(range(0, 90, 10)):
            m[f"prune/importance_p{p:02d}"] = 99.0 - 0.2 * i * i
            m[f"prune/random_p{p:02d}"] = 99.0 - 1.0 * i * i - s
        for k in KINDS:
            m[f"ablation/{k}_L0_H0"] = -0.1 * s
        m.update(derive(m))
        for k, v in m.items():
            per_seed.setdefault(k, []).append(v)
    assert per_seed["prune/importance_drop_p40"][0] == pytest.approx(0.2 * 16)
    assert per_seed["gap/importance_minus_random_p50"][1] == pytest.approx(-0.2 * 25 + 25 + 1)
    assert per_seed["gap/importance_minus_random_p00"][0] == pytest.approx(0.0)
    for c in PROFILES["cpu"].claims:
        assert c.metric in per_seed
    plot(per_seed, tmp_path)
    assert (tmp_path / "pruning_curve.png").stat().st_size > 1000


def test_recipe_profiles():
    assert RECIPE.measure is not None and "full" in RECIPE.skips and "full" not in RECIPE.profiles
    cpu = PROFILES["cpu"]
    assert cpu.slow and cpu.seeds == 3 and cpu.budget_minutes <= 8
    assert all(c.kind == "expectation" for c in cpu.claims) and not PROFILES["smoke"].claims
    assert dataclasses.replace(cpu.config, max_steps=1).max_steps == 1
