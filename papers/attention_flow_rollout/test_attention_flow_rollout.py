"""Attention rollout and flow against references: rollout = sum over paths of products
(enumerated), flow (networkx) = closed forms for one and two layers, the scipy fast
path = networkx on awkward shapes, flow >= rollout (a rollout path decomposition is a
feasible flow); blank-out and gradient importance against direct computations; the
generated agreement data; the recipe's summaries and figure."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .data import CLS, NOUNS, PAD, UNK, VOCAB, encode, make_sentences, max_length
from .experiment import analyse, blankout_importance, gradient_importance, summarise
from .model import (AgreementTransformer, attention_flow, attention_flow_fast, attention_rollout,
                    residual_attention)
from .recipe import CPU_CLAIMS, METRICS, PAPER_TABLE1_BLANKOUT, RECIPE, plot

def _random_attention(layers, heads, n, seed):
    rng = np.random.default_rng(seed)
    w = rng.random((layers, heads, n, n)) ** 3
    return w / w.sum(-1, keepdims=True)


@pytest.mark.unit
def test_residual_attention_is_half_identity_half_mean_attention():
    w = _random_attention(3, 4, 5, 0)
    a = residual_attention(w)
    np.testing.assert_allclose(a, 0.5 * w.mean(1) + 0.5 * np.eye(5), atol=1e-14)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(residual_attention(w.mean(1)), a, atol=1e-14)


@pytest.mark.unit
@pytest.mark.parametrize("layers,n", [(1, 1), (2, 3), (3, 3), (3, 4)])
def test_rollout_equals_sum_over_paths_of_products(layers, n):
    a = residual_attention(_random_attention(layers, 2, n, layers * 10 + n))
    roll = attention_rollout(a)
    for top in range(layers):
        for s, t in itertools.product(range(n), range(n)):
            total = 0.0
            for mids in itertools.product(range(n), repeat=top):
                path = (s, *mids, t)
                total += math.prod(a[top - k, path[k], path[k + 1]] for k in range(top + 1))
            assert roll[top][s, t] == pytest.approx(total, abs=1e-12)
    np.testing.assert_allclose(roll.sum(-1), 1.0, atol=1e-12)


@pytest.mark.unit
def test_flow_closed_forms_one_and_two_layers():
    a = residual_attention(_random_attention(2, 3, 4, 7))
    for s in range(4):
        np.testing.assert_allclose(attention_flow(a, 1, s), a[0, s], atol=1e-12)
        # two layers: the paths s -> j -> k through different middle nodes share no edge
        expected = [sum(min(a[1, s, j], a[0, j, k]) for j in range(4)) for k in range(4)]
        np.testing.assert_allclose(attention_flow(a, 2, s), expected, atol=1e-12)


@pytest.mark.unit
@pytest.mark.parametrize("layers,n,source", [(1, 1, 0), (1, 2, 1), (3, 5, 0), (4, 3, 2), (6, 4, 0)])
def test_fast_flow_equals_networkx(layers, n, source):
    a = residual_attention(_random_attention(layers, 2, n, 100 + layers * n))
    for layer in range(1, layers + 1):
        ref = attention_flow(a, layer, source)
        fast = attention_flow_fast(a, layer, source)
        np.testing.assert_allclose(fast, ref, atol=layers * n * n * 1e-7)
        assert (ref >= -1e-12).all() and (ref <= 1 + 1e-12).all()


@pytest.mark.unit
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flow_is_at_least_rollout(seed):
    a = residual_attention(_random_attention(4, 2, 5, seed))
    roll = attention_rollout(a)
    for layer in range(1, 5):
        for s in range(5):
            assert (attention_flow_fast(a, layer, s) >= roll[layer - 1][s] - 1e-6).all()


@pytest.mark.unit
def test_generated_sentences_label_the_subject():
    sents = make_sentences(300, seed=0, max_pps=3, max_adjs=1, p_attractor=0.7)
    n_attractors = 0
    for toks, label, subj in sents:
        words = [VOCAB[t] for t in toks]
        assert words[0] == "<cls>" and words[1] == "the"
        nouns = [i for i, w in enumerate(words) if w.rstrip("s") in NOUNS or w in NOUNS]
        assert nouns[0] == subj  # the subject is the first noun
        assert label == int(words[subj].endswith("s") and words[subj] not in NOUNS)
        n_attractors += sum(int(words[i].endswith("s") and words[i] not in NOUNS) != label for i in nouns[1:])
        assert len(toks) <= max_length(3, 1)
    assert n_attractors > 100
    labels = [s[1] for s in sents]
    assert 100 < sum(labels) < 200
    t = encode(sents[:5], max_length(3, 1))
    assert (t["tokens"][:, 0] == CLS).all()
    for b in range(5):
        assert (t["tokens"][b, int(t["length"][b]):] == PAD).all() and (t["tokens"][b, : int(t["length"][b])] != PAD).all()


def _net(seed=0):
    torch.manual_seed(seed)
    return AgreementTransformer(len(VOCAB), 16, 2, 3, max_length(3, 1)).eval()


def _batch(n=6, seed=0):
    return encode(make_sentences(n, seed=seed), max_length(3, 1))


@pytest.mark.unit
def test_blankout_importance_matches_one_sentence_at_a_time():
    net, t = _net(), _batch(5, 1)
    imp = blankout_importance(net, t["tokens"], t["length"], t["label"])
    for b in range(5):
        n = int(t["length"][b])
        toks = t["tokens"][b:b + 1, :n]
        with torch.no_grad():
            p0 = F.softmax(net(toks), -1)[0, t["label"][b]]
            for j in range(n):
                blank = toks.clone()
                blank[0, j] = UNK
                p = F.softmax(net(blank), -1)[0, t["label"][b]]
                assert float(imp[b, j]) == pytest.approx(float(p0 - p), abs=1e-5)
        assert (imp[b, n:] == 0).all()


@pytest.mark.unit
def test_gradient_importance_matches_autograd_on_embeddings():
    net, t = _net(2), _batch(4, 2)
    imp = gradient_importance(net, t["tokens"], t["label"])
    for b in range(4):
        e = net.encoder.embed(t["tokens"][b:b + 1]).detach().requires_grad_()
        enc = net.encoder
        x = e + enc.pos(torch.arange(e.shape[1]))
        mask = (t["tokens"][b:b + 1] != PAD)[:, None, None, :]
        for block in enc.blocks:
            x = block(x, mask=mask)
        logit = net.head(enc.norm(x)[:, 0])[0, t["label"][b]]
        (g,) = torch.autograd.grad(logit, e)
        torch.testing.assert_close(imp[b], g[0].sum(-1).abs(), rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.unit
def test_model_returns_same_logits_with_and_without_weights_and_trains():
    net, t = _net(3), _batch(6, 3)
    logits = net(t["tokens"])
    logits_w, weights = net(t["tokens"], need_weights=True)
    torch.testing.assert_close(logits, logits_w, rtol=1e-5, atol=1e-6)
    assert len(weights) == 3 and weights[0].shape == (6, 2, t["tokens"].shape[1], t["tokens"].shape[1])
    pad = t["tokens"] == PAD
    assert float(weights[0].detach()[:, :, 0].masked_select(pad[:, None, :].expand(-1, 2, -1)).abs().max()) == 0.0
    net.train()
    F.cross_entropy(net(t["tokens"]), t["label"]).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.unit
def test_analyse_and_summarise_shapes():
    net, t = _net(4), _batch(8, 4)
    corrs = analyse(net, t, min_tokens=3)
    n_used = int(((t["length"] - 1) >= 3).sum())
    assert all(len(rows) == n_used and all(len(r) == 3 for r in rows) for rows in corrs.values())
    finite = [v for rows in corrs.values() for r in rows for v in r if v == v]
    assert finite and all(-1 - 1e-9 <= v <= 1 + 1e-9 for v in finite)
    m = summarise(corrs, 3)
    for key in ("blankout/flow_minus_raw_L3", "grad/rollout_rise", "blankout/raw_mid", "blankout/raw_L1_minus_mid"):
        assert key in m


@pytest.mark.unit
def test_cls_decides_whether_layer1_rollout_can_differ_from_raw():
    """Without <cls> among the correlated positions, layer-1 rollout = 0.5 raw + 0.5 e_cls is
    a monotone map of raw attention: identical Spearman correlations (Table 1 shows 0.69 vs
    0.32, so the paper's protocol includes <cls>)."""
    net, t = _net(5), _batch(10, 5)
    without = analyse(net, t, min_tokens=3, include_cls=False)
    with_cls = analyse(net, t, min_tokens=3, include_cls=True)
    for imp in ("blankout", "grad"):
        np.testing.assert_allclose([r[0] for r in without[f"{imp}/raw"]], [r[0] for r in without[f"{imp}/rollout"]])
        np.testing.assert_allclose([r[0] for r in without[f"{imp}/raw"]], [r[0] for r in without[f"{imp}/flow"]])
    assert not np.allclose([r[0] for r in with_cls["blankout/raw"]], [r[0] for r in with_cls["blankout/rollout"]])


@pytest.mark.unit
def test_summarise_pattern_metrics_by_hand():
    corrs = {f"{i}/{m}": [[0.1 * (k + 1) + (0.5 if m == "flow" else 0.0) for k in range(6)]] * 2
             for i in ("blankout", "grad") for m in ("raw", "rollout", "flow")}
    m = summarise(corrs, 6)
    assert m["blankout/raw_L6"] == pytest.approx(0.6)
    assert m["blankout/raw_mid"] == pytest.approx(0.3)
    assert m["blankout/flow_minus_raw_L6"] == pytest.approx(0.5)
    assert m["blankout/rollout_rise"] == pytest.approx(0.5)
    assert m["blankout/raw_L1_minus_mid"] == pytest.approx(-0.2)


@pytest.mark.unit
def test_recipe_metrics_and_figure(tmp_path):
    assert {c.metric for c in CPU_CLAIMS} == set(METRICS)
    assert all(c.kind == "expectation" and c.bound for c in CPU_CLAIMS)
    assert "full" in RECIPE.skips and len(PAPER_TABLE1_BLANKOUT["raw"]) == 6
    per_seed = {f"{i}/{m}_L{k}": [0.1 * k, 0.2, None] for i in ("blankout", "grad")
                for m in ("raw", "rollout", "flow") for k in range(1, 7)}
    plot(per_seed, tmp_path)
    assert (tmp_path / "correlation_per_layer.png").stat().st_size > 1000


def _reference_flow(aug, layer, source):
    """Independent reference: layered DAG with (layer, position) node labels, edge from a
    query node (l, i) to a key node (l-1, j) with capacity aug[l-1, i, j],
    networkx.maximum_flow (Edmonds-Karp) to every input node."""
    import networkx as nx

    n = aug.shape[-1]
    g = nx.DiGraph()
    for lv in range(1, layer + 1):
        for i, j in itertools.product(range(n), range(n)):
            g.add_edge((lv, i), (lv - 1, j), capacity=float(aug[lv - 1, i, j]))
    return np.array([nx.maximum_flow(g, (layer, source), (0, j), flow_func=nx.algorithms.flow.edmonds_karp)[0]
                     for j in range(n)])


@pytest.mark.unit
def test_analyse_matches_independent_reference_end_to_end():
    """Audit check: the per-sentence, per-layer correlations of ``analyse`` equal those
    recomputed from scratch: raw = head-mean attention row of <cls> (query row 0) at layer
    l; rollout = (0.5 W_l + 0.5 I) ... (0.5 W_1 + 0.5 I), row 0; flow = networkx max-flow
    from node (l, <cls>) to each input node; blank-out of every position (incl. <cls>)."""
    from functools import reduce

    from scipy.stats import spearmanr

    net, t = _net(6), _batch(4, 6)
    corrs = analyse(net, t, min_tokens=3)
    with torch.no_grad():
        _, weights = net(t["tokens"], need_weights=True)
    imp = blankout_importance(net, t["tokens"], t["length"], t["label"]).numpy()
    row = 0
    for b in range(4):
        n = int(t["length"][b])
        if n - 1 < 3:
            continue
        w = np.stack([wl[b, :, :n, :n].double().numpy() for wl in weights])  # (L, H, n, n), rows = queries
        aug = np.stack([0.5 * wl.mean(0) + 0.5 * np.eye(n) for wl in w])
        for layer in range(1, len(w) + 1):
            raw = w[layer - 1].mean(0)[0]
            roll = reduce(lambda acc, al: al @ acc, aug[:layer])[0]
            flow = _reference_flow(aug, layer, 0)
            for meth, score in (("raw", raw), ("rollout", roll), ("flow", flow)):
                expected = spearmanr(score, imp[b, :n]).statistic
                assert corrs[f"blankout/{meth}"][row][layer - 1] == pytest.approx(expected, abs=1e-6), (b, layer, meth)
        row += 1
    assert row == len(corrs["blankout/flow"]) and row > 0
