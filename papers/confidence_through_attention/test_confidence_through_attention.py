"""Unit tests: the confidence terms on hand-made attention matrices, the batched scorer
against the per-sentence reference (values and gradients, padding, awkward shapes), the
corruptions, hybrid selection, and the model's alignment read-out."""

from __future__ import annotations

import math
import random
import sys

import pytest
import torch

from papers.confidence_through_attention.data import (
    CORRUPTIONS, EOS, PAD, corrupt, decoder_input, pad_batch, reversal_pairs)
from papers.confidence_through_attention.model import (
    ConfidenceNMT, alignment, confidence, confidence_naive, filter_by_confidence, hybrid_select)
from papers.confidence_through_attention.recipe import SMOKE, Config

pytestmark = pytest.mark.unit


def _one(alpha, p=6.0):
    return {k: float(v[0]) for k, v in confidence(alpha[None], cdp_power=p).items()}


def test_diagonal_alignment_is_maximally_confident():
    c = _one(torch.eye(6))
    assert c == pytest.approx({"cdp": 0.0, "ap_out": 0.0, "ap_in": 0.0, "total": 0.0}, abs=1e-7)
    anti = _one(torch.eye(6).flip(1))  # reversal: a permutation is just as confident
    assert anti["total"] == pytest.approx(0.0, abs=1e-7)


def test_uniform_attention_has_the_entropy_penalties():
    n = 5
    c = _one(torch.full((n, n), 1.0 / n))
    assert c["cdp"] == pytest.approx(0.0, abs=1e-7)  # every input still receives total attention 1
    assert c["ap_out"] == pytest.approx(-math.log(n), rel=1e-6)
    assert c["ap_in"] == pytest.approx(-math.log(n), rel=1e-6)
    assert c["total"] < _one(torch.eye(n))["total"] - 3.0


def test_collapsed_attention_is_penalised_by_coverage():
    n = 4
    a = torch.zeros(n, n)
    a[:, 0] = 1.0  # every output token looks at input 0
    c = _one(a)
    # input 0 receives 4 (|1-4|^6 = 729), the others 0 (|1-0|^6 = 1)
    assert c["cdp"] == pytest.approx(-(math.log(730) + 3 * math.log(2)) / 4, rel=1e-6)
    assert c["ap_out"] == pytest.approx(0.0, abs=1e-7)  # each row is sharp
    assert c["ap_in"] == pytest.approx(-math.log(n) / n, rel=1e-6)  # input 0 spreads over 4 outputs
    assert c["total"] < -1.0
    assert _one(a, p=2.0)["cdp"] == pytest.approx(-(math.log(10) + 3 * math.log(2)) / 4, rel=1e-6)


def test_ranking_diagonal_above_blurred_above_uniform():
    n = 7
    eye = torch.eye(n)
    blur = torch.softmax(-((torch.arange(n)[:, None] - torch.arange(n)[None]).float() ** 2), dim=1)
    uni = torch.full((n, n), 1.0 / n)
    t = [_one(x)["total"] for x in (eye, blur, uni)]
    assert t[0] > t[1] > t[2]


@pytest.mark.parametrize("p", [6.0, 2.0])
def test_batched_equals_naive_values_and_gradients_with_padding(p):
    g = torch.Generator().manual_seed(3)
    B, I, J = 5, 9, 7
    logits = torch.randn(B, I, J, generator=g, dtype=torch.float64)
    n_out = [9, 1, 4, 7, 2]
    n_in = [7, 3, 1, 5, 6]
    src_mask = torch.arange(J)[None] < torch.tensor(n_in)[:, None]
    tgt_mask = torch.arange(I)[None] < torch.tensor(n_out)[:, None]
    logits = logits.masked_fill(~src_mask[:, None, :], -1e9)
    alpha = torch.softmax(logits, -1)
    alpha[1, 0, 0] = 1.0  # an exact one-hot row and a zero column
    alpha[1, 0, 1:] = 0.0
    a1 = alpha.clone().requires_grad_(True)
    a2 = alpha.clone().requires_grad_(True)
    fast = confidence(a1, src_mask, tgt_mask, p)
    for b in range(B):
        ref = confidence_naive(a2[b], n_out[b], n_in[b], p)
        for k in fast:
            assert float(fast[k][b]) == pytest.approx(float(ref[k]), rel=1e-10, abs=1e-12), (b, k)
    fast["total"].sum().backward()
    sum(confidence_naive(a2[b], n_out[b], n_in[b], p)["total"] for b in range(B)).backward()
    assert torch.allclose(a1.grad * tgt_mask[:, :, None] * src_mask[:, None, :],
                          a2.grad * tgt_mask[:, :, None] * src_mask[:, None, :], atol=1e-10)


def test_padding_does_not_change_a_sentence_score():
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(4, 3, generator=g), -1)
    alone = confidence(a[None])["total"][0]
    padded = torch.zeros(1, 6, 5)
    padded[0, :4, :3] = a
    padded[0, 4:, :] = 0.2  # garbage in padded rows/columns
    sm = torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool)
    tm = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert float(confidence(padded, sm, tm)["total"][0]) == pytest.approx(float(alone), abs=1e-6)


def test_hybrid_selection_matches_the_official_rule():
    assert hybrid_select([-1.0, -2.0, -3.0], [-2.0, -1.0, -3.0]) == [0, 1, 1]  # ties go to the second system


def test_filtering_keeps_the_most_confident_in_order():
    items = ["a", "b", "c", "d", "e"]
    assert filter_by_confidence(items, [-0.1, -2.0, -0.5, -0.5, -3.0], 0.6) == ["a", "c", "d"]
    assert filter_by_confidence(items, [0.0] * 5, 0.4) == ["a", "b"]  # ties: earlier first
    assert filter_by_confidence(items, [0.0] * 5, 0.0) == []
    with pytest.raises(ValueError):
        filter_by_confidence(items, [0.0], 0.5)


def test_corruptions_always_differ_and_keep_their_kind():
    rng = random.Random(0)
    for n in (1, 2, 3, 10):
        t = list(range(10, 10 + n))
        other = [99, 98]
        for kind in CORRUPTIONS:
            c = corrupt(t, kind, rng, other)
            assert c != t
            if kind == "repeat":
                assert len(c) == n + max(1, round(0.3 * n))
            if kind == "drop" and n > 1:
                assert len(c) == n - min(max(1, round(0.3 * n)), n - 1)
    with pytest.raises(ValueError):
        corrupt([1, 2], "shuffle", rng, [3])


def test_reversal_pairs_and_padding():
    pairs = reversal_pairs(50, 5, 2, 6, seed=1)
    assert all(t == s[::-1] and 2 <= len(s) <= 6 for s, t in pairs)
    assert pairs == reversal_pairs(50, 5, 2, 6, seed=1)
    x = pad_batch([[4, 5], [6]])
    assert x.tolist() == [[4, 5, EOS], [6, EOS, PAD]]
    assert decoder_input(x).tolist() == [[2, 4, 5], [2, 6, PAD]]


def test_alignment_rows_are_distributions_over_real_source_tokens():
    torch.manual_seed(0)
    cfg = Config(dim=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32)
    m = ConfidenceNMT(cfg, 4 + cfg.n_symbols).eval()
    src = pad_batch([[4, 5, 6], [7]])
    tgt = pad_batch([[6, 5, 4], [7, 7]])
    a = alignment(m.net, src, tgt)
    assert a.shape == (2, 4, 4)
    assert torch.allclose(a.sum(-1), torch.ones(2, 4), atol=1e-5)
    assert float(a[1, :, 2:].abs().max()) == 0.0  # padded source positions get no attention


def test_recipe_imports_no_torch_at_module_level():
    import subprocess

    code = ("import sys, papers.confidence_through_attention.recipe as r; "
            "assert 'torch' not in sys.modules; print(len(r.CPU_CLAIMS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert SMOKE.task == "iwslt14"
