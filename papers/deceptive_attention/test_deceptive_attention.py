"""Deceptive attention: the task generators and their alignments, the attention-mass
penalty against a loop reference (values and gradients), the parallel teacher-forced
decoder against step-by-step decoding (outputs and gradients, awkward lengths), and the
recipe's derived metric and figure."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from .data import EOS, N_SPECIAL, PAD, SOS, alignment, encode, make_examples
from .model import DeceptiveSeq2Seq, Seq2SeqAttention, attention_mass, deception_penalty
from .recipe import CPU_CLAIMS, METRICS, PROFILES, RECIPE, derive, plot


@pytest.mark.unit
@pytest.mark.parametrize("task", ["bigram_flip", "copy", "reverse"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8])
def test_alignment_is_a_permutation_that_the_target_copies(task, n):
    al = alignment(task, n)
    assert sorted(al) == list(range(n))
    (src, trg, al2), = make_examples(task, 1, 50, n, n, seed=n)
    assert al2 == al and [src[i] for i in al] == trg


@pytest.mark.unit
def test_alignments_by_hand():
    assert alignment("bigram_flip", 5) == [1, 0, 3, 2, 4]
    assert alignment("bigram_flip", 4) == [1, 0, 3, 2]
    assert alignment("reverse", 4) == [3, 2, 1, 0]
    assert alignment("copy", 3) == [0, 1, 2]
    with pytest.raises(ValueError):
        alignment("sort", 3)


@pytest.mark.unit
def test_encoding_marks_the_aligned_source_token():
    ex = make_examples("reverse", 40, 7, 2, 6, seed=3)
    t = encode(ex, 6)
    for b, (src, trg, al) in enumerate(ex):
        n = len(src)
        assert t["src"][b, 0] == SOS and t["src"][b, n + 1] == EOS and (t["src"][b, n + 2:] == PAD).all()
        assert t["trg"][b, n + 1] == EOS and int(t["src_len"][b]) == n + 2
        imp = t["imp"][b]
        assert torch.equal(imp[:n].sum(-1), torch.ones(n))  # one impermissible token per content step
        assert imp[n:].sum() == 0  # <eos> step and padding: none
        s = imp[:n].argmax(-1)
        assert torch.equal(t["src"][b, s], t["trg"][b, 1:n + 1])  # it is the token the target copies
    assert int(t["src"][t["src"] != PAD].min()) >= SOS and int(t["src"].max()) < 7 + N_SPECIAL


def _mass_loop(attn, imp, trg_mask):
    mass, n = 0.0, 0
    for b in range(attn.shape[0]):
        for t in range(attn.shape[1]):
            if trg_mask[b, t]:
                n += 1
                for s in range(attn.shape[2]):
                    if imp[b, t, s]:
                        mass = mass + attn[b, t, s]
    return mass, n


@pytest.mark.unit
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 9, 4)])
def test_attention_mass_and_penalty_against_loop(shape):
    g = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    attn = torch.softmax(logits, -1)
    imp = (torch.rand(*shape, generator=g) < 0.3).double()
    trg_mask = torch.rand(shape[:2], generator=g) < 0.7
    trg_mask[0, 0] = True
    mass, n = attention_mass(attn, imp, trg_mask)
    ref_mass, ref_n = _mass_loop(attn, imp, trg_mask)
    assert int(n) == ref_n
    torch.testing.assert_close(mass, torch.as_tensor(ref_mass, dtype=torch.float64))
    for lam in (0.0, 0.1, 1.0):
        pen = deception_penalty(attn, imp, trg_mask, lam)
        ref = -lam * torch.log(1 - torch.as_tensor(ref_mass, dtype=torch.float64) / ref_n)
        torch.testing.assert_close(pen, ref)
        if lam and ref.requires_grad:
            (ga,) = torch.autograd.grad(pen, logits, retain_graph=True)
            (gb,) = torch.autograd.grad(ref, logits, retain_graph=True)
            torch.testing.assert_close(ga, gb)


@pytest.mark.unit
def test_penalty_grows_with_mass_and_vanishes_without_it():
    imp = torch.tensor([[[1.0, 0.0]]])
    m = torch.ones(1, 1, dtype=torch.bool)
    vals = [float(deception_penalty(torch.tensor([[[p, 1 - p]]]), imp, m, 1.0)) for p in (0.0, 0.5, 0.9, 0.99)]
    assert vals[0] == 0.0 and all(a < b for a, b in zip(vals, vals[1:]))
    assert math.isclose(vals[1], math.log(2), rel_tol=1e-6)


def _net(seed=0):
    torch.manual_seed(seed)
    return Seq2SeqAttention(vocab_size=11, emb=5, hidden=6).double()


def _batch(task="bigram_flip", n=5, lo=1, hi=7, seed=0):
    t = encode(make_examples(task, n, 8, lo, hi, seed), hi)
    return t


@pytest.mark.unit
@pytest.mark.parametrize("task,lo,hi", [("bigram_flip", 1, 7), ("reverse", 3, 3), ("copy", 2, 9)])
def test_parallel_decoder_equals_stepwise_decoder(task, lo, hi):
    net = _net()
    t = _batch(task, 6, lo, hi, seed=hi)
    src, src_len, trg = t["src"], t["src_len"], t["trg"]
    out, attn = net(src, src_len, trg)
    ref, ref_attn = net.decode_stepwise(src, src_len, trg, trg.shape[1] - 1)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(attn, ref_attn, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out)
    params = [p for p in net.parameters()]
    for a, b in zip(torch.autograd.grad((out * g).sum() + attn.sum(), params, allow_unused=True),
                    torch.autograd.grad((ref * g).sum() + ref_attn.sum(), params, allow_unused=True)):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.unit
def test_attention_is_a_distribution_over_real_source_tokens():
    net = _net(1)
    t = _batch("copy", 7, 1, 6, seed=1)
    _, attn = net(t["src"], t["src_len"], t["trg"])
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:2], dtype=attn.dtype))
    assert (attn.masked_select((t["src"] == PAD)[:, None, :].expand_as(attn)) == 0).all()
    with torch.no_grad():
        g_logits, g_attn = net.greedy(t["src"], t["src_len"], 4)
    assert g_logits.shape == (7, 4, 11) and g_attn.shape == (7, 4, t["src"].shape[1])


@pytest.mark.unit
def test_penalty_moves_attention_off_the_aligned_token():
    """A few gradient steps on the penalty alone must lower the mass (sign of R's gradient)."""
    cfg = SimpleNamespace(vocab=8, emb=8, hidden=8, dropout=0.0, lam=1.0, lr=5e-2)
    torch.manual_seed(0)
    m = DeceptiveSeq2Seq(cfg)
    t = encode(make_examples("copy", 32, 8, 3, 6, 0), 6)
    opt = torch.optim.Adam(m.parameters(), lr=cfg.lr)
    masses = []
    for _ in range(15):
        _, pen, _, attn, _, trg_mask = m._loss(t)
        mass, n = attention_mass(attn, t["imp"], trg_mask)
        masses.append(float(mass.detach() / n))
        opt.zero_grad()
        pen.backward()
        opt.step()
    assert masses[-1] < 0.5 * masses[0], masses


@pytest.mark.unit
def test_derive_plot_and_claims_are_consistent(tmp_path):
    m = {"flip_l0/test/acc": 99.0, "flip_l1/test/acc": 97.5, "copy_l0/test/acc": 90.0}
    assert derive(m) == {"flip/acc_cost": pytest.approx(1.5)}
    per_seed = {f"{s}_{tag}/{k}": [50.0, 60.0, None] for s in ("flip", "copy", "reverse") for tag in ("l0", "l1")
                for k in ("test/acc", "test/attn_mass")}
    plot(per_seed, tmp_path)
    assert (tmp_path / "accuracy_and_attention_mass.png").stat().st_size > 1000
    assert {c.metric for c in CPU_CLAIMS} <= set(METRICS)
    arms = PROFILES["cpu"].arms
    assert len(arms) == 6 and {a["lam"] for a in arms.values()} == {0.0, 1.0}
    assert all(c.kind == "expectation" and c.seeds == 3 for c in CPU_CLAIMS)
    assert "full" in RECIPE.skips
