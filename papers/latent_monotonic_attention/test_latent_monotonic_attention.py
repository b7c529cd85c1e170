"""The latent-alignment recursions against brute-force enumeration, and the models'
batching invariances."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from .data import collate, make_examples, vocab_ids
from .model import (NEG, GlobalSoftAttention, HardMonotonicAttention, LatentAttentionModule, allowed_transitions,
                    brute_force, cut_at_eos, edit_distance, forward_marginal, viterbi_align)
from .recipe import PROFILES, Config

pytestmark = pytest.mark.unit
torch.set_num_threads(1)

# (S, T, strict, max_jump): S=1, T=S (a single strict path), non-strict stays, jump limits
SHAPES = [(1, 1, True, 0), (1, 4, True, 0), (3, 3, True, 0), (2, 5, True, 0), (3, 6, True, 0), (4, 7, True, 0),
          (3, 4, False, 0), (2, 3, False, 0), (1, 3, False, 0), (3, 7, True, 3), (3, 5, False, 2)]


def random_scores(b: int, s: int, t: int, t_len, strict: bool, max_jump: int, *, dtype=torch.float64, seed=0):
    """Normalised random transitions (log-softmax over allowed next frames, as the model
    builds them) and arbitrary emission scores."""
    g = torch.Generator().manual_seed(seed)
    t_len = torch.as_tensor(t_len)
    allowed = allowed_transitions(t_len, t, strict=strict, max_jump=max_jump)[:, None]
    logits = torch.randn(b, s, t + 1, t, generator=g, dtype=dtype).masked_fill(~allowed, NEG)
    log_trans = torch.log_softmax(logits, -1).masked_fill(~allowed, NEG)
    log_emit = torch.randn(b, s, t, generator=g, dtype=dtype)
    return log_trans.requires_grad_(), log_emit.requires_grad_()


@pytest.mark.parametrize("s,t,strict,max_jump", SHAPES)
def test_forward_equals_enumeration(s, t, strict, max_jump):
    log_trans, log_emit = random_scores(1, s, t, [t], strict, max_jump)
    dp = forward_marginal(log_trans, log_emit, torch.tensor([s]))[0]
    ref, _ = brute_force(log_trans[0], log_emit[0], s, t, strict=strict, max_jump=max_jump)
    torch.testing.assert_close(dp, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s,t,strict,max_jump", SHAPES)
def test_forward_gradients_equal_enumeration(s, t, strict, max_jump):
    log_trans, log_emit = random_scores(1, s, t, [t], strict, max_jump, seed=1)
    g_dp = torch.autograd.grad(forward_marginal(log_trans, log_emit, torch.tensor([s]))[0], (log_trans, log_emit))
    ref, _ = brute_force(log_trans[0], log_emit[0], s, t, strict=strict, max_jump=max_jump)
    g_ref = torch.autograd.grad(ref, (log_trans, log_emit))
    for a, b in zip(g_dp, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("s,t,strict,max_jump", SHAPES)
def test_viterbi_is_argmax_of_enumeration(s, t, strict, max_jump):
    log_trans, log_emit = random_scores(1, s, t, [t], strict, max_jump, seed=2)
    path, score = viterbi_align(log_trans, log_emit, torch.tensor([s]))
    ref_lse, ref_path = brute_force(log_trans[0], log_emit[0], s, t, strict=strict, max_jump=max_jump)
    assert tuple(path[0].tolist()) == ref_path
    best = forward_marginal(log_trans, log_emit, torch.tensor([s]), use_max=True)[0]
    torch.testing.assert_close(score[0], best.detach())
    assert float(score[0]) <= float(ref_lse.detach()) + 1e-12


def test_probabilities_sum_to_one_over_label_sequences():
    """With normalised transitions and emissions and no dead ends (non-strict: the last
    frame can always be kept), the sum over all label sequences of length S of p(y | x)
    is 1; S=2, T=4, 3 labels. (Strictly monotonic paths that reach the last frame
    before s = S have no continuation, so there the sum is below 1.)"""
    s, t, v = 2, 4, 3
    g = torch.Generator().manual_seed(3)
    allowed = allowed_transitions(torch.tensor([t]), t, strict=False)[:, None]
    log_trans = torch.log_softmax(torch.randn(1, s, t + 1, t, generator=g, dtype=torch.float64)
                                  .masked_fill(~allowed, NEG), -1).masked_fill(~allowed, NEG)
    log_lab = torch.log_softmax(torch.randn(1, s, t, v, generator=g, dtype=torch.float64), -1)
    total = torch.stack([forward_marginal(log_trans, log_lab[..., torch.tensor(y)].diagonal(dim1=1, dim2=3)
                                          .transpose(1, 2), torch.tensor([s]))
                         for y in [(a, b) for a in range(v) for b in range(v)]]).logsumexp(0)
    torch.testing.assert_close(total, torch.zeros(1, dtype=torch.float64), atol=1e-12, rtol=0)


def test_batch_of_mixed_lengths_equals_single_examples_on_scores():
    shapes = [(3, 6), (1, 2), (2, 5), (4, 4)]
    s_max, t_max = 4, 6
    lt, le = random_scores(len(shapes), s_max, t_max, [t for _, t in shapes], True, 0, seed=4)
    s_len = torch.tensor([s for s, _ in shapes])
    batch = forward_marginal(lt, le, s_len)
    paths, _ = viterbi_align(lt, le, s_len)
    for i, (s, t) in enumerate(shapes):
        one = forward_marginal(lt[i:i + 1, :s, : t + 1, :t], le[i:i + 1, :s, :t], torch.tensor([s]))
        torch.testing.assert_close(batch[i], one[0])
        p1, _ = viterbi_align(lt[i:i + 1, :s, : t + 1, :t], le[i:i + 1, :s, :t], torch.tensor([s]))
        assert paths[i, :s].tolist() == p1[0].tolist() and paths[i, s:].eq(0).all()


def _tiny_cfg(**kw):
    return dataclasses.replace(PROFILES["smoke"].config, **kw)


def _batch(cfg, n=4, seed=0, lengths=(3, 6)):
    g = torch.Generator().manual_seed(seed)
    return collate(make_examples(n, cfg, *lengths, g), vocab_ids(cfg.vocab)[2])


@pytest.mark.parametrize("strict", [True, False])
def test_model_marginal_equals_enumeration(strict):
    """The model's own scores: DP log-likelihood == enumeration over alignments (float64)."""
    torch.manual_seed(0)
    cfg = _tiny_cfg(strict=strict, max_jump=0)
    model = HardMonotonicAttention(cfg).double()
    b = _batch(cfg, n=2, lengths=(1, 2))
    feats = b["feats"].double()
    log_trans, log_emit = model.scores(feats, b["feat_len"], b["labels"])
    ll = forward_marginal(log_trans, log_emit, b["label_len"])
    for i in range(2):
        s, t = int(b["label_len"][i]), int(b["feat_len"][i])
        ref, ref_path = brute_force(log_trans[i], log_emit[i], s, t, strict=strict)
        torch.testing.assert_close(ll[i], ref)
        path, _ = viterbi_align(log_trans[i:i + 1], log_emit[i:i + 1], b["label_len"][i:i + 1])
        assert tuple(path[0, :s].tolist()) == ref_path


@pytest.mark.parametrize("arch", ["hard_monotonic", "global_soft"])
def test_model_batch_equals_per_example(arch):
    """Padding never changes a sequence's log-likelihood, alignment or decoding."""
    torch.manual_seed(0)
    cfg = _tiny_cfg(attention=arch)
    model = LatentAttentionModule(cfg).model.double().eval()
    b = _batch(cfg, n=4, lengths=(2, 6))
    feats = b["feats"].double()
    ll = model.log_likelihood(feats, b["feat_len"], b["labels"], b["label_len"])
    hyp = model.greedy(feats, b["feat_len"], 10)
    for i in range(4):
        t, s = int(b["feat_len"][i]), int(b["label_len"][i])
        one = model.log_likelihood(feats[i:i + 1, :t], b["feat_len"][i:i + 1], b["labels"][i:i + 1, :s],
                                   b["label_len"][i:i + 1])
        torch.testing.assert_close(ll[i], one[0])
        alone = model.greedy(feats[i:i + 1, :t], b["feat_len"][i:i + 1], 10)[0].tolist()
        assert cut_at_eos(hyp[i].tolist(), model.eos) == cut_at_eos(alone, model.eos)
    if arch == "hard_monotonic":
        paths, _ = model.align(feats, b["feat_len"], b["labels"], b["label_len"])
        for i in range(4):
            t, s = int(b["feat_len"][i]), int(b["label_len"][i])
            p1, _ = model.align(feats[i:i + 1, :t], b["feat_len"][i:i + 1], b["labels"][i:i + 1, :s],
                                b["label_len"][i:i + 1])
            assert paths[i, :s].tolist() == p1[0].tolist()
            assert all(x < y for x, y in zip(p1[0].tolist(), p1[0].tolist()[1:])), "alignment not monotonic"


def test_viterbi_criterion_trains_and_every_parameter_gets_a_gradient():
    cfg = _tiny_cfg(train_criterion="viterbi")
    module = LatentAttentionModule(cfg)
    loss = module.training_step(_batch(cfg), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in module.parameters())


def test_data_layout_and_edit_distance():
    cfg = Config()
    g = torch.Generator().manual_seed(0)
    ex = make_examples(20, cfg, 4, 8, g)
    eos = vocab_ids(cfg.vocab)[0]
    for e in ex:
        syms = e["labels"][:-1]
        assert e["labels"][-1] == eos and 4 <= len(syms) <= 8
        assert (syms[1:] != syms[:-1]).all()
        frames = e["feats"].argmax(-1)  # noise 0.3: argmax recovers most frames
        d = e["seg_end"] - e["seg_start"]
        assert ((d >= 2) & (d <= 4)).all() and (e["seg_start"][1:] == e["seg_end"][:-1]).all()
        assert (frames[e["seg_start"]] == syms).float().mean() > 0.5
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [1, 2]) == 2
    assert edit_distance([1, 2, 3], [3, 2, 1]) == 2
    assert isinstance(GlobalSoftAttention(cfg), torch.nn.Module)
