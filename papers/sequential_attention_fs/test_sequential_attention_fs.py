"""Sequential Attention pieces against explicit references: the masked softmax (outputs
and gradients), the selection schedule, our OMP against scikit-learn, the profile
objective against a direct minimisation and finite differences, the closed-form vertex
choice against brute force, and a short end-to-end selection run."""

from __future__ import annotations

import pytest
import torch

from .data import DigitsData, regression_problem
from .experiment import sklearn_omp_order
from .model import (
    FeatureSelectionMLP,
    SequentialAttentionMask,
    global_minimiser_choice,
    masked_softmax,
    masked_softmax_reference,
    omp_sequence,
    profile_objective,
    sequential_attention_linear,
    train_and_test,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


@pytest.mark.parametrize("d,cands", [(1, [0]), (7, [0, 3, 6]), (13, list(range(13))), (5, [4])])
def test_masked_softmax_matches_reference_outputs_and_gradients(d, cands):
    logits = (torch.randn(d, generator=torch.Generator().manual_seed(d), dtype=torch.float64) * 3).requires_grad_()
    mask = torch.zeros(d, dtype=torch.float64)
    mask[cands] = 1
    out, ref = masked_softmax(logits, mask), masked_softmax_reference(logits, mask)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    assert torch.all(out[mask == 0] == 0) and torch.isclose(out.sum(), torch.tensor(1.0, dtype=torch.float64))
    g = torch.randn(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (ga,) = torch.autograd.grad(out, logits, g)
    (gb,) = torch.autograd.grad(masked_softmax_reference(logits, mask), logits, g)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-14)


def test_masked_softmax_with_no_candidate_is_zero():
    assert torch.equal(masked_softmax(torch.randn(4), torch.zeros(4)), torch.zeros(4))


def test_schedule_warmup_phases_and_selection():
    torch.manual_seed(0)
    m = SequentialAttentionMask(10, 4, start=0.2)
    assert m.phase(0.0) == -1 and m.phase(0.19) == -1 and m.phase(0.2) == 0 and m.phase(0.99) == 3
    assert torch.equal(m(0.1), torch.ones(10))  # warm-up: everything passes
    w = m(0.25)  # phase 0: softmax over all, nothing selected yet
    assert m.num_selected == 0 and torch.isclose(w.sum(), torch.tensor(1.0))
    with torch.no_grad():
        m.logits.zero_()
        m.logits[7] = 5.0  # the trained favourite of phase 0
    before = m.logits.detach().clone()
    w = m(0.45)  # phase 1 has started: phase 0's selection happens first
    assert m.selected_indices() == [7] and w[7] == 1.0
    assert not torch.equal(m.logits.detach(), before) and m.logits.detach().abs().max() < 1e-3  # reset
    assert torch.isclose(w.sum(), torch.tensor(2.0))  # selected weight 1 + softmax over the rest
    m(0.5, update=False)
    assert m.num_selected == 1
    m.catch_up(1.0)
    sel = m.selected_indices()
    assert len(sel) == 4 and len(set(sel)) == 4 and sel[0] == 7


def test_selection_never_repeats_a_feature():
    m = SequentialAttentionMask(3, 3, start=0.0)
    with torch.no_grad():
        m.logits.copy_(torch.tensor([9.0, 0.0, 0.0]))
    m.catch_up(1.0)
    assert sorted(m.selected_indices()) == [0, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_our_omp_matches_scikit_learn(seed):
    X, y, _ = regression_problem(120, 30, 6, 0.3, seed=seed)
    assert omp_sequence(X, y, 8) == sklearn_omp_order(X, y, 8)


def test_profile_objective_is_the_inner_minimum_and_differentiable():
    X, y, _ = regression_problem(40, 8, 3, 0.2, seed=3)
    sel, lam = [2, 5], 3.0
    cand = [j for j in range(8) if j not in sel]
    w = torch.randn(len(cand), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    s = torch.softmax(w, -1)
    # direct minimisation of the joint objective over b by gradient-free normal equations
    Z = torch.cat([X[:, sel], X[:, cand] * s], 1)
    b = torch.linalg.lstsq(torch.cat([Z, torch.cat([torch.zeros(len(cand), len(sel), dtype=torch.float64),
                                                    lam**0.5 * torch.eye(len(cand), dtype=torch.float64)], 1)]),
                           torch.cat([y, torch.zeros(len(cand), dtype=torch.float64)]).unsqueeze(-1)).solution.squeeze()
    direct = 0.5 * ((y - Z @ b) ** 2).sum() + 0.5 * lam * (b[len(sel):] ** 2).sum()
    torch.testing.assert_close(profile_objective(w, X, y, sel, lam), direct, rtol=1e-10, atol=1e-12)
    wg = w.clone().requires_grad_()
    (g,) = torch.autograd.grad(profile_objective(wg, X, y, sel, lam), wg)
    eps = 1e-6
    fd = torch.stack([(profile_objective(w + eps * e, X, y, sel, lam) - profile_objective(w - eps * e, X, y, sel, lam))
                      / (2 * eps) for e in torch.eye(len(cand), dtype=torch.float64)])
    torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-9)


def test_vertex_choice_matches_brute_force():
    X, y, _ = regression_problem(60, 9, 3, 0.2, seed=5)
    sel, lam = [1], 0.7
    cand = [j for j in range(9) if j not in sel]
    vals = []
    for i in range(len(cand)):
        w = torch.full((len(cand),), -60.0, dtype=torch.float64)
        w[i] = 60.0  # softmax = one-hot on candidate i (to 1e-52)
        vals.append(float(profile_objective(w, X, y, sel, lam)))
    assert global_minimiser_choice(X, y, sel, lam) == cand[min(range(len(vals)), key=vals.__getitem__)]


def test_linear_sequential_attention_equals_omp_on_small_problems():
    for seed in range(3):
        X, y, _ = regression_problem(80, 15, 4, 0.1, seed=10 + seed)
        sa, tw = sequential_attention_linear(X, y, 5, 1e6, generator=torch.Generator().manual_seed(seed))
        assert sa == sklearn_omp_order(X, y, 5)
        assert min(tw) >= 0.99


def test_selection_run_end_to_end():
    dm = DigitsData(subset=256)
    dm.setup()
    torch.manual_seed(0)
    model = FeatureSelectionMLP(64, 10, "sa", num_select=4)
    acc = train_and_test(model, dm, epochs=3, lr=1e-2, batch_size=64, seed=0)
    assert 0.0 <= acc <= 1.0
    sel = model.selector.selected_indices()
    assert len(sel) == 4 and len(set(sel)) == 4
    x, y = dm.splits["train"][0][:32], dm.splits["train"][1][:32]
    model.train()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None for p in model.mlp.parameters())
    fixed = FeatureSelectionMLP(64, 10, "fixed", fixed_mask=torch.zeros(64).index_fill_(0, torch.tensor(sel), 1.0))
    x = dm.splits["test"][0][:5]
    x2 = x.clone()
    x2[:, [j for j in range(64) if j not in sel]] = 7.0  # unselected pixels cannot matter
    torch.testing.assert_close(fixed(x), fixed(x2))


def test_training_is_deterministic_given_the_seed():
    dm = DigitsData(subset=200)
    dm.setup()
    accs = []
    for _ in range(2):
        torch.manual_seed(3)
        accs.append(train_and_test(FeatureSelectionMLP(64, 10, "lly"), dm, epochs=2, lr=1e-2, batch_size=64, seed=5))
    assert accs[0] == accs[1]
