"""MTA against standard attention and the paper's formulas; causality; head-mixing groups;
the toy-task generator's invariants; and a tiny model that learns."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from repro.blocks.attention import naive_attention, sdpa_attention

from .data import (
    EOS, N_SPECIAL, QSEP, SEP, TaskSpec, answer_slice, blocks_for_length, decode, make_splits, sample_examples,
)
from .model import (
    Attention, TransformerLM, depth_scale, head_mix, identity_kq_kernel, key_query_conv, kq_padding,
    multi_token_attention,
)
from .recipe import CPU_CONFIG, SMOKE_CONFIG, Config

pytestmark = pytest.mark.unit

F64 = torch.float64


def _qkv(b, h, n, d, seed=0):
    g = torch.Generator().manual_seed(seed * 101 + n)
    return [torch.randn(b, h, n, d, generator=g, dtype=F64).requires_grad_() for _ in range(3)]


def _grads(out, inputs, seed=0):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


# ------------------------------------------------------------------ identity == standard

CASES = [  # (batch, heads, length, head_dim, (c_q, c_k), (post c_q, c_k), c_h)
    (1, 1, 1, 4, (2, 9), None, None),
    (2, 2, 7, 8, (2, 9), (3, 5), 2),
    (1, 4, 37, 8, (3, 4), (2, 2), 4),  # even key kernels, odd length
    (2, 6, 33, 5, (1, 1), (4, 7), 3),
    (1, 2, 65, 16, (6, 11), (6, 11), 2),  # the paper's LM kernel sizes
]


@pytest.mark.parametrize("case", CASES)
def test_identity_kernels_equal_standard_attention(case):
    """Identity kernels and identity head mixing (pre- and post-softmax): outputs and
    gradients equal softmax attention (the naive reference and the SDPA path)."""
    b, h, n, d, pre, post, ch = case
    q, k, v = _qkv(b, h, n, d)
    eye = torch.eye(ch, dtype=F64).repeat(h // ch, 1, 1) if ch else None
    out = multi_token_attention(
        q, k, v, kq_kernel=identity_kq_kernel(h, *pre).double(),
        post_kq_kernel=identity_kq_kernel(h, *post).double() if post else None,
        pre_head_weight=eye, post_head_weight=eye)
    ref = naive_attention(q, k, v, causal=True)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, sdpa_attention(q, k, v, causal=True), rtol=1e-10, atol=1e-10)
    for a, r in zip(_grads(out, (q, k, v)), _grads(ref, (q, k, v))):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def _cfg(**kw):
    base = dict(dim=24, heads=3, layers=2, ffn_hidden=32, attn_dropout=0.0, q_kernel=2, k_kernel=9)
    base.update(kw)
    return dataclasses.replace(Config(), **base)


@pytest.mark.parametrize("extras", [{}, {"post_q_kernel": 3, "post_k_kernel": 5, "head_kernel": 3},
                                    {"head_kernel": 3, "head_mix_pre_softmax": True}])
def test_identity_mta_layer_equals_softmax_layer(extras):
    """A whole attention layer (projections, RoPE) in MTA mode with identity kernels equals
    the standard layer with the same weights: outputs and every weight's gradient."""
    torch.manual_seed(0)
    mta = Attention(_cfg(attention="mta", **extras), layer=0).double()
    std = Attention(_cfg(attention="softmax"), layer=0).double()
    std.load_state_dict({k: v for k, v in mta.state_dict().items() if k in std.state_dict()})
    from .model import rope_tables

    x = torch.randn(2, 29, 24, dtype=F64)
    cos, sin = (t.double() for t in rope_tables(29, 8, 1e5))
    a, r = mta(x, cos, sin), std(x, cos, sin)
    torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    ga = torch.autograd.grad(a.sum(), [mta.wq.weight, mta.wk.weight, mta.wv.weight, mta.wo.weight])
    gr = torch.autograd.grad(r.sum(), [std.wq.weight, std.wk.weight, std.wv.weight, std.wo.weight])
    for u, w in zip(ga, gr):
        torch.testing.assert_close(u, w, rtol=1e-9, atol=1e-12)


def test_group_norm_and_gate_act_on_standard_output():
    """With identity kernels, MTA with group norm (+ depth scaling) and gating equals standard
    attention followed by the same per-head RMS norm, scale and sigmoid gate."""
    torch.manual_seed(0)
    layer = Attention(_cfg(attention="mta", layers=3, group_norm=True, depth_scale=True, gating=True),
                      layer=2).double()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.gate.bias.fill_(0.3)
    q, k, v = _qkv(2, 3, 17, 8)
    out = layer.head_outputs(layer.attend(q, k, v))
    base = naive_attention(q, k, v, causal=True)
    rms = base * torch.rsqrt(base.pow(2).mean(-1, keepdim=True) + 1e-5) * layer.norm.weight
    rms = rms * (1 - (0.8 - 0.6 * math.exp(-0.3 * 2)))
    ref = rms * torch.sigmoid(rms @ layer.gate.weight.T + layer.gate.bias)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert depth_scale(0) == pytest.approx(0.8)


# ------------------------------------------------------------------ the paper's formulas


def _paper_kq(scores, theta_paper, cq, ck, exact):
    """[kq-exact] (exact=True) or Conv2d(Mask_0) written as the paper's double sum, in loops.
    theta_paper[h][i'][j' + ⌊c_k/2⌋] for i' = 0..c_q-1, j' = -⌊c_k/2⌋..⌈c_k/2⌉-1."""
    b, h, n, _ = scores.shape
    out = torch.zeros_like(scores)
    for i in range(n):
        for j in range(n):
            acc = torch.zeros(b, h, dtype=scores.dtype)
            for ip in range(cq):
                for jp in range(-(ck // 2), math.ceil(ck / 2)):
                    r, c = i - ip, j - jp
                    if r < 0 or c < 0 or c >= n:
                        continue
                    visible = (i >= c) if exact else (r >= c)  # exact indicator vs Mask_0
                    if visible:
                        acc = acc + theta_paper[:, ip, jp + ck // 2] * scores[:, :, r, c]
            out[:, :, i, j] = acc
    return out


def _kernel_from_paper(theta_paper, cq, ck):
    """Our (H, 1, c_q, c_k) cross-correlation kernel for the paper's θ_{i', j'}."""
    _, left, _ = kq_padding(cq, ck)
    h = theta_paper.shape[0]
    kern = torch.zeros(h, 1, cq, ck, dtype=theta_paper.dtype)
    for ip in range(cq):
        for jp in range(-(ck // 2), math.ceil(ck / 2)):
            kern[:, 0, cq - 1 - ip, left - jp] = theta_paper[:, ip, jp + ck // 2]
    return kern


@pytest.mark.parametrize("cq,ck", [(2, 9), (3, 4), (1, 5), (4, 1)])
def test_conv_matches_the_papers_sum_with_mask0(cq, ck):
    g = torch.Generator().manual_seed(cq * 10 + ck)
    scores = torch.randn(2, 3, 13, 13, generator=g, dtype=F64)
    theta = torch.randn(3, cq, ck, generator=g, dtype=F64)
    from repro.blocks.attention import causal_mask

    ours = key_query_conv(scores, _kernel_from_paper(theta, cq, ck), causal_mask(13, 13))
    torch.testing.assert_close(ours, _paper_kq(scores, theta, cq, ck, exact=False), rtol=1e-12, atol=1e-12)


def test_single_query_row_kernel_equals_exact_masking():
    """With c_q = 1 the simplified Mask_0 scheme is exactly the paper's indicator 1[i >= j - j']:
    the full MTA weights equal Softmax of the exact sum, computed from q and k."""
    q, k, v = _qkv(1, 2, 11, 4, seed=3)
    theta = torch.randn(2, 1, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    _, w = multi_token_attention(q, k, v, kq_kernel=_kernel_from_paper(theta, 1, 5), return_weights=True)
    logits = _paper_kq(q @ k.transpose(-2, -1) / 2.0, theta, 1, 5, exact=True)
    logits = logits.masked_fill(torch.ones(11, 11, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(w, torch.softmax(logits, -1), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ causality and heads


@pytest.mark.parametrize("attention", ["softmax", "mta"])
def test_future_tokens_do_not_change_past_outputs(attention):
    """Every MTA piece on, with random (non-identity) kernels: logits before position t do not
    depend on tokens at t or later."""
    torch.manual_seed(0)
    cfg = _cfg(attention=attention, layers=3, post_q_kernel=3, post_k_kernel=5, head_kernel=3,
               group_norm=True, depth_scale=True, gating=True)
    model = TransformerLM(cfg, vocab=30).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "kernel" in name or "head" in name:
                p.normal_(0, 0.5)
    x = torch.randint(0, 30, (2, 41))
    for t in (0, 1, 17, 40):
        y = x.clone()
        y[:, t:] = torch.randint(0, 30, y[:, t:].shape)
        with torch.no_grad():
            a, b = model(x), model(y)
        torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-12)
        if t < 40:
            assert not torch.allclose(a[:, t:], b[:, t:])


def test_causal_gradients_through_mta():
    """The gradient of the output at position i w.r.t. q, k, v at positions > i is zero."""
    q, k, v = _qkv(1, 2, 15, 4)
    g = torch.Generator().manual_seed(0)
    kern = torch.randn(2, 1, 3, 7, generator=g, dtype=F64)
    out = multi_token_attention(q, k, v, kq_kernel=kern, post_kq_kernel=torch.randn(2, 1, 2, 5, generator=g,
                                dtype=F64), post_head_weight=torch.randn(1, 2, 2, generator=g, dtype=F64))
    for i in (0, 6, 13):
        grads = torch.autograd.grad(out[:, :, i].sum(), (q, k, v), retain_graph=True)
        for gr in grads:
            assert gr[:, :, i + 1:].abs().max() == 0


def test_head_mixing_stays_within_groups():
    h, ch = 6, 2
    w = torch.randn(h // ch, ch, ch, generator=torch.Generator().manual_seed(0), dtype=F64)
    for src in range(h):
        maps = torch.zeros(1, h, 5, 5, dtype=F64)
        maps[:, src] = torch.rand(5, 5, dtype=F64)
        out = head_mix(maps, w)
        group = src // ch
        touched = {hh for hh in range(h) if out[:, hh].abs().max() > 0}
        assert touched == set(range(group * ch, (group + 1) * ch))
        for hh in touched:  # the paper's A_new^h = sum_h' w[h', h] A^h'
            torch.testing.assert_close(out[:, hh], w[group, src % ch, hh % ch] * maps[:, src])


# ------------------------------------------------------------------ the toy task


def _parse(row, spec):
    text = decode(row)
    assert text.startswith("<bos>") and text.endswith("<eos>")
    body = text[len("<bos>"):-len("<eos>")]
    context, rest = body.split("#")
    query, answer = rest[:spec.query_len], rest[spec.query_len:]
    return context.split("."), query, answer


@pytest.mark.parametrize("spec", [TaskSpec(), TaskSpec(6, 5, 2, 26), TaskSpec(10, 4, 3, 8)])
def test_generator_invariants(spec):
    splits = make_splits(spec, {"test": 200, "val": 50, "train": 300}, seed=1)
    rows = np.concatenate(list(splits.values()))
    assert rows.shape == (550, spec.length) and rows.dtype == np.uint8
    contexts = set()
    for row in rows:
        blocks, query, answer = _parse(row, spec)
        assert len(blocks) == spec.n_blocks and all(len(b) == spec.block_len for b in blocks)
        assert all(len(set(b)) == spec.block_len for b in blocks), "letters within a block are distinct"
        assert all(ch < chr(ord("a") + spec.n_letters) for b in blocks for ch in b)
        assert len(set(blocks)) == spec.n_blocks, "blocks of one example are distinct"
        assert len(set(query)) == spec.query_len
        assert answer in blocks and set(query) <= set(answer), "the answer block holds every query letter"
        holders = [b for b in blocks if set(query) <= set(b)]
        assert holders == [answer], "exactly one block holds every query letter"
        contexts.add(".".join(blocks))
    assert len(contexts) == len(rows), "contexts are unique over all splits"


def test_official_sizes_and_scored_positions():
    spec = TaskSpec()
    assert blocks_for_length(319, 5, 2) == 52 and spec.length == 321  # official seq_len: 321
    row = make_splits(spec, {"test": 1}, seed=0)["test"][0]
    target = row[1:][answer_slice(spec)]  # what the model predicts at the scored positions
    _, _, answer = _parse(row, spec)
    assert decode(target) == answer + "<eos>"
    assert row[1:][answer_slice(spec).start - 1] >= N_SPECIAL  # predicted from the last query letter
    assert row[-spec.block_len - spec.query_len - 2] == QSEP and EOS == row[-1] and SEP in row


def test_splits_are_deterministic_and_test_set_is_stable():
    spec = TaskSpec(6, 5, 2, 26)
    a = make_splits(spec, {"test": 100, "val": 10, "train": 50}, seed=5)
    b = make_splits(spec, {"test": 100, "val": 10, "train": 500}, seed=5)
    c = make_splits(spec, {"test": 100, "val": 10, "train": 50}, seed=6)
    assert np.array_equal(a["test"], b["test"]) and np.array_equal(a["val"], b["val"])
    assert not np.array_equal(a["test"], c["test"])


def test_query_letters_come_from_random_positions():
    spec = TaskSpec(4, 5, 2, 26)
    blocks, target, query = sample_examples(spec, 4000, np.random.default_rng(0))
    tblock = blocks[np.arange(4000), target]
    pos = (tblock[:, :, None] == query[:, None, :]).argmax(1)  # (n, L) position of each query letter
    assert set(np.unique(pos[:, 0])) == set(range(spec.block_len))
    assert np.bincount(target, minlength=4).min() > 800  # the target block is anywhere


# ------------------------------------------------------------------ learning


@pytest.mark.parametrize("attention", ["softmax", "mta"])
def test_tiny_model_loss_decreases(attention):
    from .data import build_datamodule
    from .model import build_module

    torch.manual_seed(0)
    cfg = dataclasses.replace(SMOKE_CONFIG, attention=attention, lr=3e-3, attn_dropout=0.0)
    module, dm = build_module(cfg), build_datamodule(cfg)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr)
    losses = []
    for _ in range(25):  # fit one batch: the loss must fall well below its start
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_profiles_keep_the_official_mta_kernels():
    for cfg in (Config(), CPU_CONFIG):
        assert (cfg.q_kernel, cfg.k_kernel, cfg.heads, cfg.layers) == (2, 9, 2, 4)
        assert not (cfg.head_kernel or cfg.group_norm or cfg.gating or cfg.post_q_kernel)
