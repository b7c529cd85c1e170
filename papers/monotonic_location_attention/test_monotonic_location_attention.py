"""Attention variants of the seq2seq model against explicit references (outputs and
gradients, masks, awkward shapes), the location attention's defining properties, the
encoder's reversal and padding invariance, the data split and the evaluation rule."""

from __future__ import annotations

import math
import random

import pytest
import torch

from .data import EOS, PAD, LengthSplitData, make_pairs, to_tensors
from .model import (ATTENTIONS, DotProductCrossAttention, LengthGeneralisationModule, LocationAttention, Seq2Seq,
                    exact_match, relative_sinusoids)
from .recipe import PROFILES, Config, plot

pytestmark = pytest.mark.unit


def test_relative_sinusoids_formula():
    delta = torch.tensor([-3, 0, 2])
    pe = relative_sinusoids(delta, 6)
    for i, d in enumerate(delta.tolist()):
        for k in range(3):
            w = 10000 ** (-2 * k / 6)
            assert math.isclose(pe[i, 2 * k].item(), math.sin(d * w), abs_tol=1e-6)
            assert math.isclose(pe[i, 2 * k + 1].item(), math.cos(d * w), abs_tol=1e-6)


def _manual_dot(att: DotProductCrossAttention, h, keys, values, mask, t):
    """s_j = ((q+u).k_j + (q+v).W_R R(j-t)) / sqrt(d), softmax over unmasked j, per head."""
    b, s, _ = keys.shape
    q = att.q(h).view(b, att.heads, att.d)
    k = att.k(keys).view(b, s, att.heads, att.d)
    v = att.v(values).view(b, s, att.heads, att.dim)
    outs = []
    for hd in range(att.heads):
        if att.relative:
            r = att.r(relative_sinusoids(torch.arange(s) - t, att.dim, h.dtype)).view(s, att.heads, att.d)[:, hd]
            sc = (torch.einsum("bd,bsd->bs", q[:, hd] + att.u[hd], k[:, :, hd])
                  + torch.einsum("bd,sd->bs", q[:, hd] + att.vb[hd], r)) / math.sqrt(att.d)
        else:
            sc = torch.einsum("bd,bsd->bs", q[:, hd], k[:, :, hd]) / math.sqrt(att.d)
        w = torch.softmax(sc.masked_fill(~mask, float("-inf")), dim=-1)
        outs.append(torch.einsum("bs,bsd->bd", w, v[:, :, hd]))
    return att.o(torch.cat(outs, dim=-1))


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("b,s,dim,heads,hd,t", [(3, 7, 6, 2, 5, 0), (1, 4, 8, 1, 8, 3), (2, 12, 10, 3, 4, 11)])
def test_dot_product_attention_equals_manual(relative, naive, b, s, dim, heads, hd, t):
    torch.manual_seed(s + t)
    att = DotProductCrossAttention(dim, heads, hd, relative=relative, naive=naive).double()
    if relative:
        with torch.no_grad():
            att.u.normal_()
            att.vb.normal_()
    h = torch.randn(b, dim, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(b, s, dim, dtype=torch.float64, requires_grad=True)
    values = torch.randn(b, s, dim, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(b, s, dtype=torch.bool)
    mask[0, s // 2 + 1:] = False  # padded sequence
    out, _ = att(h, att.prepare(keys, values), mask, t)
    ref = _manual_dot(att, h, keys, values, mask, t)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out)
    params = [h, keys, values, *att.parameters()]
    for a, r in zip(torch.autograd.grad(out, params, g, allow_unused=True),
                    torch.autograd.grad(ref, params, g, allow_unused=True)):
        if a is None or r is None:
            assert a is None and r is None
        else:
            torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("step", ["sigmoid", "controlled_relu", "relu"])
def test_location_attention_equals_section4_formula(step):
    torch.manual_seed(1)
    att = LocationAttention(6, 2, 3, step=step).double()
    b, s = 3, 9
    h = torch.randn(b, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(b, s, dtype=torch.bool)
    mask[1, 5:] = False
    past = torch.rand(b, 2, dtype=torch.float64) * 0.3
    w, expected = att.weights(h, mask, past)
    n_valid = mask.sum(-1).double()
    for i in range(b):
        unit = 1 / (n_valid[i] - 1)
        qp = att.qpos(h[i]).view(2, 3)
        for hd in range(2):
            sig = (torch.relu(qp[hd] @ att.w_sigma[hd, :, 0]) + 0.27) / n_valid[i]
            rho = qp[hd] @ att.w_rho[hd, :, 0]
            st = {"sigmoid": torch.sigmoid(5 * rho), "relu": torch.relu(rho),
                  "controlled_relu": torch.sigmoid(att.step_bias[0]) * torch.relu(rho)
                  + (1 - torch.sigmoid(att.step_bias[0])) * torch.sigmoid(5 * rho)}[step]
            mu = past[i, hd] + st * unit
            pos = torch.arange(s, dtype=torch.float64) * unit
            g = torch.exp(-(pos - mu) ** 2 / (2 * sig**2)) * mask[i]
            torch.testing.assert_close(w[i, hd], g / g.sum(), rtol=1e-8, atol=1e-12)
            torch.testing.assert_close(expected[i, hd], (w[i, hd] * pos).sum())
    assert torch.all(w[1, :, 5:] == 0) and torch.allclose(w.sum(-1), torch.ones(b, 2, dtype=torch.float64))
    w.sum().backward()
    assert h.grad is not None and torch.isfinite(h.grad).all()


def test_onestep_with_a_saturated_step_walks_one_position_per_step():
    """OneStepAttn's inductive bias: with step -> 1 and the smallest width, the focus
    starts at x_1 and moves exactly one token per decoding step, at any length."""
    att = LocationAttention(4, 1, 4, step="sigmoid")
    with torch.no_grad():
        att.qpos.weight.zero_()
        att.qpos.bias.fill_(1.0)
        att.w_rho.fill_(10.0)  # rho = 40: sigmoid(200) = 1
        att.w_sigma.fill_(-1.0)  # relu(.) = 0: sigma = 0.27 / (n + 2)
    for n in (5, 40, 100):
        mask = torch.ones(1, n + 2, dtype=torch.bool)
        past = None
        for t in range(n + 1):
            w, past = att.weights(torch.zeros(1, 4), mask, past)
            assert int(w[0, 0].argmax()) == t + 1 and w[0, 0, t + 1] > 0.99


def _model(att, **kw):
    torch.manual_seed(0)
    return Seq2Seq(att, embed_dim=8, hidden=12, head_dim=6, dropout=0.0, **kw).double().eval()


def test_reversed_encodings_inside_each_sequence():
    m = _model("bi_relative")
    with torch.no_grad():
        m.dir_gate.weight.zero_()
        m.dir_gate.bias.fill_(-1e4)  # g = 0: only the reversed encodings
    src, ls, _, _ = to_tensors([([1, 2, 3], [1]), ([4, 5, 6, 7, 8, 9], [1])])
    m.mix_directions = False
    fwd, mask, _ = m.encode(src, ls)
    m.mix_directions = True
    rev, mask2, _ = m.encode(src, ls)
    assert torch.equal(mask, mask2)
    for i, n in enumerate(ls.tolist()):
        for j in range(n + 2):
            torch.testing.assert_close(rev[i, j], fwd[i, n + 1 - j])
        assert torch.all(rev[i, n + 2:] == 0)


@pytest.mark.parametrize("att", ATTENTIONS)
def test_padding_does_not_change_a_sequence(att):
    m = _model(att)
    pairs = [([3, 1, 4, 1, 5], [3, 1, 4, 1, 5, EOS]), ([9, 2, 6, 5, 3, 5, 8, 9, 7, 9], [9] * 10 + [EOS])]
    src, ls, tgt, lt = to_tensors(pairs)
    with torch.no_grad():
        both = m(src, ls, tgt)
        alone = m(src[:1, :5], ls[:1], tgt[:1, :6])
        torch.testing.assert_close(both[0, :6], alone[0])
        greedy = m(src, ls, steps=7)
        torch.testing.assert_close(greedy[0, :6].argmax(-1), m(src[:1, :5], ls[:1], steps=6)[0].argmax(-1))


@pytest.mark.parametrize("att", ATTENTIONS)
def test_every_parameter_gets_a_gradient(att):
    torch.manual_seed(0)
    m = Seq2Seq(att, embed_dim=8, hidden=12, head_dim=6)
    src, ls, tgt, lt = to_tensors(make_pairs("reverse_copy", 6, 5, 10, random.Random(0)))
    m(src, ls, tgt).logsumexp(-1).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_exact_match_rule():
    tgt = torch.tensor([[1, 2, EOS, PAD], [4, 5, 6, EOS]])
    lt = torch.tensor([3, 4])
    pred = torch.tensor([[1, 2, EOS, 7], [4, 5, 6, 6]])
    assert exact_match(pred, tgt, lt).tolist() == [True, False]
    pred2 = torch.tensor([[1, 2, 3, EOS], [4, 5, 6, EOS]])
    assert exact_match(pred2, tgt, lt).tolist() == [False, True]


def test_data_split():
    rng = random.Random(0)
    pairs = make_pairs("reverse_copy", 300, 5, 10, rng)
    srcs = [tuple(s) for s, _ in pairs]
    assert len(set(srcs)) == 300 and all(5 <= len(s) <= 10 for s in srcs)
    assert all(t == list(reversed(s)) + [EOS] for s, t in pairs)
    assert all(t[:-1] == s for s, t in make_pairs("copy", 20, 15, 15, rng))
    with pytest.raises(ValueError):
        make_pairs("lookup", 1, 1, 1, rng)
    cfg = Config(train_samples=50, dev_samples=10, test_samples=7, test_lengths=(15, 30), eval_batch_size=4)
    torch.manual_seed(3)
    dm = LengthSplitData(cfg)
    dm.setup()
    seen = []
    for src, ls, tgt, lt, split in dm.test_dataloader():
        assert split.unique().numel() == 1  # a batch never mixes splits
        k = int(split[0])
        assert (ls == 15).all() if k == 1 else (ls == 30).all() if k == 2 else ((ls >= 5) & (ls <= 10)).all()
        seen.append(len(split))
    assert sum(seen) == 21


def test_best_dev_weights_are_tested():
    cfg = Config(attention="onestep", embed_dim=8, hidden=12, head_dim=6, test_lengths=(15,))
    module = LengthGeneralisationModule(cfg)
    best = {k: torch.zeros_like(v) for k, v in module.model.state_dict().items()}
    module.best_state, module.best_acc = best, 0.5
    module.on_test_epoch_start()
    assert all(torch.all(v == 0) for v in module.model.state_dict().values())
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    other = LengthGeneralisationModule(cfg)
    other.on_load_checkpoint(ckpt)
    assert other.best_acc == 0.5 and other.best_state is best


def test_plot_and_profiles(tmp_path):
    per_seed = {f"{t}_{a}/test/acc_{s}": [0.5, 0.7] for t in ("copy", "reverse_copy") for a in ATTENTIONS
                for s in ["iid", "len15", "len100"]}
    plot(per_seed, tmp_path)
    assert (tmp_path / "accuracy_vs_length.png").stat().st_size > 0
    for prof in PROFILES.values():
        for c in prof.claims:
            assert c.metric.split("/")[0] in prof.arms


@pytest.mark.cpu_claim
@pytest.mark.slow
def test_training_reduces_the_loss():
    """100 real steps of the Bi-Relative model on Reverse Copy: the token cross-entropy
    falls well below its start (ln 14 = 2.64)."""
    torch.manual_seed(0)
    m = Seq2Seq("bi_relative")
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    src, ls, tgt, lt = to_tensors(make_pairs("reverse_copy", 3200, 5, 10, random.Random(0)))
    losses = []
    for i in range(0, 3200, 32):
        t = tgt[i:i + 32, : int(lt[i:i + 32].max())]
        logits = m(src[i:i + 32], ls[i:i + 32], t)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[:5]) / 5 > 2.3 and sum(losses[-10:]) / 10 < 1.8, (losses[:5], losses[-10:])
