"""Tests of the attention back-end recipe: the paper's back-end (set semantics, masking,
the official leave-one-out trials), the shared speaker blocks (front-end, encoders,
AM-softmax, uniformity loss), PLDA against its closed form, the metrics against hand
computation and torchmetrics, the samplers, and the cpu claim run (slow)."""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pytest
import torch

from repro.blocks.plda import PLDABackend, TwoCovPLDA
from repro.blocks.speaker import AMSoftmax, ResNet34, StatsPool, XVector, fbank, uniformity_loss

from .data import BalancedBatchSampler, pad_sets
from .model import (AttentionBackend, FeedForwardAttentionPool, backend_loss, leave_one_out_scores,
                    leave_one_out_sets)

unit = pytest.mark.unit


def _backend(dim=8, heads=2, seed=0, pooling="ffsa"):
    torch.manual_seed(seed)
    b = AttentionBackend(dim, heads, pool_hidden=5, pooling=pooling).double()
    with torch.no_grad():  # larger pooling weights than the near-uniform init, so order/mask errors show
        b.pool.w1.normal_(0, 0.5) if b.pool is not None else None
        b.pool.w2.normal_(0, 0.5) if b.pool is not None else None
    return b


# ----------------------------------------------------------------------------- the paper's back-end


@unit
@pytest.mark.parametrize("pooling", ["ffsa", "mean"])
def test_permutation_invariant_over_enrollment_order(pooling):
    b = _backend(pooling=pooling)
    g = torch.Generator().manual_seed(1)
    enroll = torch.randn(3, 5, 8, generator=g, dtype=torch.float64)
    test = torch.randn(3, 8, generator=g, dtype=torch.float64)
    ref = b.score(enroll, None, test)
    for perm in (torch.tensor([4, 2, 0, 1, 3]), torch.tensor([1, 0, 2, 3, 4])):
        torch.testing.assert_close(b.score(enroll[:, perm], None, test), ref, rtol=1e-12, atol=1e-12)
    # ... but not invariant to *which* embeddings are in the set
    assert not torch.allclose(b.score(enroll[:, :4], None, test), ref)


@unit
def test_variable_set_sizes_with_masking_equal_scoring_each_set_alone():
    """Sets of 1..N embeddings padded into one batch give the outputs and gradients of
    scoring each set on its own, and padding values never leak in."""
    b = _backend(dim=6, heads=3)
    g = torch.Generator().manual_seed(2)
    sizes = [1, 4, 2, 7, 3]
    sets = [torch.randn(k, 6, generator=g, dtype=torch.float64, requires_grad=True) for k in sizes]
    test = torch.randn(len(sizes), 6, generator=g, dtype=torch.float64)
    _, padded, mask = pad_sets([(i, s) for i, s in enumerate(sets)])
    padded = padded.double()
    padded[~mask] = 1e3  # garbage in the padding must not matter
    padded = padded.detach().requires_grad_()
    batched = b.score(padded, mask, test)
    single = torch.stack([b.score(s[None], None, t[None])[0] for s, t in zip(sets, test)])
    torch.testing.assert_close(batched, single, rtol=1e-10, atol=1e-12)
    w = torch.randn(len(sizes), generator=g, dtype=torch.float64)
    params = [p for n, p in b.named_parameters() if not n.startswith("logistic")]  # scoring skips calibration
    gb = torch.autograd.grad((batched * w).sum(), [padded, *params])
    gs = torch.autograd.grad((single * w).sum(), [*sets, *params])
    for i, k in enumerate(sizes):
        torch.testing.assert_close(gb[0][i, :k], gs[i], rtol=1e-9, atol=1e-11)
        assert torch.all(gb[0][i, k:] == 0)
    for a, c in zip(gb[1:], gs[len(sizes):]):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-11)


@unit
def test_single_enrollment_and_empty_set():
    b = _backend()
    x = torch.randn(2, 1, 8, dtype=torch.float64)
    assert torch.isfinite(b.aggregate(x)).all()
    with pytest.raises(ValueError):
        b.aggregate(x, torch.zeros(2, 1, dtype=torch.bool))


@unit
def test_feed_forward_attention_matches_per_head_loop():
    """Grouped einsum pooling == the formula head by head (outputs and gradients)."""
    torch.manual_seed(3)
    pool = FeedForwardAttentionPool(6, heads=2, hidden=4).double()
    with torch.no_grad():
        for p in pool.parameters():
            p.normal_(0, 0.7)
    h = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out, alpha = pool(h, mask)
    ref = torch.zeros(2, 6, dtype=torch.float64)
    for bi in range(2):
        k = int(mask[bi].sum())
        for hd in range(2):
            sl = h[bi, :k, hd * 3:(hd + 1) * 3]
            e = torch.relu(sl @ pool.w1[hd] + pool.b1[hd]) @ pool.w2[hd] + pool.b2[hd]
            a = torch.softmax(e, 0)
            torch.testing.assert_close(alpha[bi, hd, :k], a)
            assert torch.all(alpha[bi, hd, k:] == 0)
            ref[bi, hd * 3:(hd + 1) * 3] = a @ sl
    torch.testing.assert_close(out, ref)
    g = torch.randn(2, 6, dtype=torch.float64)
    for x, y in zip(torch.autograd.grad((out * g).sum(), (h, pool.w1)), torch.autograd.grad((ref * g).sum(), (h, pool.w1))):
        torch.testing.assert_close(x, y)


@unit
def test_initial_pooling_is_close_to_mean_pooling():
    """With the official N(0, 0.01) initialisation the pooling weights start near uniform."""
    torch.manual_seed(0)
    pool = FeedForwardAttentionPool(32, heads=2)
    h = torch.randn(4, 6, 32)
    _, alpha = pool(h, torch.ones(4, 6, dtype=torch.bool))
    assert (alpha - 1 / 6).abs().max() < 1e-3


@unit
def test_leave_one_out_trials_match_the_official_construction():
    """[i, a, b] = cos(x[a, i], aggregate(x[b] without its i-th)); labels on the diagonal."""
    b = _backend(dim=4, heads=2)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    scores, labels = leave_one_out_scores(b, x)
    assert scores.shape == labels.shape == (4, 3, 3)
    for i, a, c in itertools.product(range(4), range(3), range(3)):
        rest = torch.cat([x[c, :i], x[c, i + 1:]])
        want = torch.nn.functional.cosine_similarity(b.aggregate(rest[None])[0], x[a, i], dim=0)
        torch.testing.assert_close(scores[i, a, c], want)
        assert labels[i, a, c] == float(a == c)
    sets = leave_one_out_sets(x)
    assert torch.equal(sets[1, 2], x[1, [0, 1, 3]])
    loss, _, lab = backend_loss(b, x)
    assert loss.ndim == 0 and lab.sum() == 3 * 4 and torch.isfinite(loss)


@unit
def test_backend_trains_state_dict_round_trips():
    b = _backend(dim=8).float()
    x = torch.randn(4, 3, 8)
    loss, _, _ = backend_loss(b, x)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in b.parameters())
    c = AttentionBackend(8, 2, pool_hidden=5)
    c.load_state_dict(b.state_dict())
    with torch.no_grad():
        assert torch.equal(b.aggregate(x[:, :2]), c.aggregate(x[:, :2]))


# ----------------------------------------------------------------------------- shared speaker blocks


@unit
def test_fbank_shape_and_mean_normalisation():
    wave = torch.sin(torch.arange(16000) * 0.05) * 0.3 + 0.01 * torch.randn(16000)
    f = fbank(wave)
    assert f.shape == (98, 80)  # 1 s, 25 ms windows every 10 ms (snip_edges)
    assert f.mean(0).abs().max() < 1e-4
    assert fbank(wave[:100]).shape[1] == 80  # shorter than a window: padded, not an error


@unit
def test_stats_pool_matches_numpy():
    x = torch.randn(2, 3, 11, dtype=torch.float64)
    out = StatsPool(eps=0)(x)
    ref = np.concatenate([x.numpy().mean(-1), x.numpy().std(-1)], -1)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)


@unit
@pytest.mark.parametrize("enc", [XVector(80, 16, 24, 8), ResNet34(80, base=2, layers=(1, 1, 1, 1), emb_dim=8),
                                 ResNet34(80, base=2, layers=(3, 4, 6, 3), emb_dim=8)])
def test_encoders_handle_any_length_and_train(enc):
    for t in (3, 37, 150):
        assert enc.eval()(torch.randn(2, t, 80)).shape == (2, 8)
    enc.train()
    out = enc(torch.randn(4, 40, 80))
    out.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


@unit
def test_xvector_is_the_paper_topology():
    x = XVector()  # 512 channels, 1500 stats, 512 embedding (Snyder et al. 2018)
    convs = [m for m in x.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.kernel_size[0], c.dilation[0], c.out_channels) for c in convs] == [
        (5, 1, 512), (3, 2, 512), (3, 3, 512), (1, 1, 512), (1, 1, 1500)]
    assert x.segment6.in_features == 3000 and x.segment6.out_features == 512
    r = ResNet34()
    assert [len(s) for s in r.stages] == [3, 4, 6, 3]


@unit
def test_am_softmax_margin_and_uniformity_loss():
    torch.manual_seed(0)
    head = AMSoftmax(4, 3, margin=0.2, scale=30.0)
    emb = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 1, 0])
    loss, cos = head(emb, y)
    logits = 30.0 * (cos - 0.2 * torch.nn.functional.one_hot(y, 3))
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, y))
    z = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=-1)
    naive = math.log(sum(math.exp(-2 * float((z[i] - z[j]).pow(2).sum()))
                         for i in range(6) for j in range(6) if i != j) / 30)
    assert uniformity_loss(z) == pytest.approx(naive, rel=1e-9)


# ----------------------------------------------------------------------------- PLDA


def _plda_data(d=5, speakers=60, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    b_true = a @ a.T + np.eye(d)
    w_true = np.diag(rng.uniform(0.2, 0.6, d))
    x, lab = [], []
    for s in range(speakers):
        y = rng.multivariate_normal(np.zeros(d), b_true)
        n = int(rng.integers(2, 9))
        x.append(rng.multivariate_normal(y, w_true, size=n))
        lab += [s] * n
    return np.concatenate(x), np.array(lab), b_true, w_true


@unit
@pytest.mark.parametrize("n_enroll", [1, 2, 5])
def test_plda_fast_scoring_equals_joint_gaussian_closed_form(n_enroll):
    x, lab, _, _ = _plda_data()
    plda = TwoCovPLDA(iters=5).fit(x, lab)
    rng = np.random.default_rng(n_enroll)
    for _ in range(3):
        enroll = rng.normal(size=(n_enroll, x.shape[1])) * 2
        tests = rng.normal(size=(4, x.shape[1])) * 2
        fast = plda.score(enroll.mean(0, keepdims=True), [n_enroll], tests)[0]
        ref = [plda.llr_reference(enroll, t) for t in tests]
        np.testing.assert_allclose(fast, ref, rtol=1e-8, atol=1e-8)


@unit
def test_plda_em_recovers_the_generating_covariances():
    x, lab, b_true, w_true = _plda_data(d=3, speakers=600, seed=1)
    plda = TwoCovPLDA(iters=20).fit(x, lab)
    np.testing.assert_allclose(plda.W, w_true, atol=0.06)
    np.testing.assert_allclose(plda.B, b_true, rtol=0.25, atol=0.3)


@unit
def test_plda_backend_ranks_targets_above_nontargets():
    x, lab, _, _ = _plda_data(d=6, speakers=80, seed=2)
    be = PLDABackend(lda_dim=4).fit(x[lab < 70], lab[lab < 70])
    sets = [x[lab == s][:2] for s in range(70, 80)]
    tests = np.stack([x[lab == s][-1] for s in range(70, 80)])
    llr = be.score_sets(sets, tests)
    assert (np.diag(llr)[:, None] > llr - np.eye(10) * 1e9).mean() > 0.8


# ----------------------------------------------------------------------------- metrics, samplers


@unit
def test_verification_metrics_hand_computed_and_against_torchmetrics():
    from torchmetrics.classification import BinaryEER

    from .experiment import verification_metrics

    class C:
        p_target = 0.01

    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.4, 0.2, 0.1])
    m = verification_metrics(labels, scores, C)
    assert m["eer"] == pytest.approx(100 / 3)  # one miss of 3 targets / one false alarm of 3
    # minDCF(p=0.01): best threshold accepts only the top two targets: 0.01 * 1/3 / 0.01
    assert m["min_dcf"] == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 2, 4000)
    sc = rng.normal(size=4000) + lab * 1.5
    ours = verification_metrics(lab, sc, C)["eer"] / 100
    theirs = float(BinaryEER()(torch.tensor(sc), torch.tensor(lab)))
    assert ours == pytest.approx(theirs, abs=1e-3)


@unit
def test_balanced_batch_sampler_is_balanced_and_seeded():
    labels = [i // 7 for i in range(7 * 10)] + [10] * 3  # speaker 10 has too few embeddings
    s = BalancedBatchSampler(labels, n_spks=4, n_utts=5, n_batches=6, seed=3)
    batches = list(s)
    assert len(batches) == 6
    for bt in batches:
        spk = [labels[i] for i in bt]
        assert len(bt) == 20 and len(set(bt)) == 20
        assert all(len(set(spk[k * 5:(k + 1) * 5])) == 1 for k in range(4))  # 4 speakers x 5, grouped
        assert len(set(spk)) == 4 and 10 not in spk
    assert list(BalancedBatchSampler(labels, 4, 5, 6, seed=3)) == batches
    s.sampler.set_epoch(1)
    assert list(s) != batches


# ----------------------------------------------------------------------------- the cpu claim (slow)


@pytest.mark.cpu_claim
@pytest.mark.slow
def test_cpu_profile_gives_verdicts(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("the synthetic corpus needs the espeak-ng binary (apt-get install espeak-ng)")
    from repro import registry, runner
    from repro.training import TrainerOptions

    recipe = registry.get_recipe("attention_backend_asv")
    res = runner.execute(recipe, runner.RunOptions(profile="cpu", runs_root=tmp_path, wandb="disabled",
                                                   trainer=TrainerOptions(progress=False), echo=lambda s: None))
    assert not res["errors"], res["errors"]
    assert res["_exit_code"] in (0, 1)
    assert all(c["verdict"] in ("reproduced", "not-reproduced") for c in res["claims"])
