"""Beam search and greedy decoding against hand-computed tables of next-token probabilities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from repro.decoding import (
    Hypothesis, beam_search, greedy_search, length_penalty, max_lengths, reorder_state,
)

pytestmark = pytest.mark.unit

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4
V = 5


def table_step(tables):
    """A "decoder" whose next-token distribution is a fixed table keyed by the prefix
    (generated tokens after bos); ``state["sid"]`` says which sentence's table a row
    uses. Unlisted prefixes end the sentence (eos with probability 1)."""

    def step(tokens, state):
        rows = []
        for row, sid in zip(tokens.tolist(), state["sid"].tolist()):
            probs = tables[sid].get(tuple(row[1:]), {EOS: 1.0})
            p = torch.zeros(V, dtype=torch.float64)
            for tok, pr in probs.items():
                p[tok] = pr
            rows.append(p.log())
        return torch.stack(rows), state

    return step


def run_beam(tables, k, alpha=0.0, penalty="gnmt", max_len=10, n_best=1):
    sid = torch.arange(len(tables))
    return beam_search(table_step(tables), {"sid": sid}, len(tables), bos=BOS, eos=EOS, beam_size=k,
                       max_len=max_len, alpha=alpha, penalty=penalty, n_best=n_best)


def run_greedy(tables, max_len=10):
    return greedy_search(table_step(tables), {"sid": torch.arange(len(tables))}, len(tables), bos=BOS, eos=EOS,
                         max_len=max_len)


# greedy takes A (0.6) then eos (0.4): P = 0.24; beam 2 also keeps B and finds B eos: 0.4 * 0.9 = 0.36
GARDEN_PATH = {(): {A: 0.6, B: 0.4}, (A,): {A: 0.3, B: 0.3, EOS: 0.4}, (B,): {A: 0.05, B: 0.05, EOS: 0.9}}
# the empty output has P = 0.3 (|Y| = 1); "A A A" has 0.7 * 0.4 = 0.28 (|Y| = 4)
SHORT_VS_LONG = {(): {A: 0.7, EOS: 0.3}, (A,): {A: 1.0}, (A, A): {A: 1.0}, (A, A, A): {EOS: 0.4, B: 0.6},
                 (A, A, A, B): {EOS: 0.1, B: 0.9}}


def test_beam_finds_the_hand_computed_best_and_greedy_does_not():
    g = run_greedy([GARDEN_PATH])[0]
    assert g.tokens == [A] and g.log_prob == pytest.approx(math.log(0.24))
    best = run_beam([GARDEN_PATH], k=2)[0][0]
    assert best.tokens == [B] and best.log_prob == pytest.approx(math.log(0.36))
    assert best.score == pytest.approx(math.log(0.36))  # alpha = 0: no normalisation
    two = run_beam([GARDEN_PATH], k=2, n_best=2)[0]
    assert [h.tokens for h in two] == [[B], [A]]
    assert [h.log_prob for h in two] == pytest.approx([math.log(0.36), math.log(0.24)])


def test_length_penalty_changes_the_choice_as_computed_by_hand():
    # alpha = 0: log 0.3 = -1.204 > log 0.28 = -1.273, the empty output wins
    h0 = run_beam([SHORT_VS_LONG], k=2, n_best=2)[0]
    assert [h.tokens for h in h0] == [[], [A, A, A]]
    # GNMT alpha = 1: lp(1) = 1, lp(4) = 9/6; -1.204 < log(0.28) / 1.5 = -0.849, the long one wins
    h1 = run_beam([SHORT_VS_LONG], k=2, alpha=1.0, n_best=2)[0]
    assert [h.tokens for h in h1] == [[A, A, A], []]
    assert h1[0].score == pytest.approx(math.log(0.28) / 1.5)
    assert h1[0].log_prob == pytest.approx(math.log(0.28))
    assert h1[1].score == pytest.approx(math.log(0.3))
    # alpha = 0.2: lp(4) = 1.5 ** 0.2 = 1.0845, -1.273 / 1.0845 = -1.174 > -1.204: long wins already
    assert run_beam([SHORT_VS_LONG], k=2, alpha=0.2)[0][0].tokens == [A, A, A]
    # alpha = 0.1: lp(4) = 1.0414, -1.222 < -1.204: short still wins
    assert run_beam([SHORT_VS_LONG], k=2, alpha=0.1)[0][0].tokens == []
    # the power form |Y| ** alpha: log(0.28) / 4 > log(0.3) / 1
    hp = run_beam([SHORT_VS_LONG], k=2, alpha=1.0, penalty="power")[0][0]
    assert hp.tokens == [A, A, A] and hp.score == pytest.approx(math.log(0.28) / 4)


def test_length_penalty_formulas():
    assert length_penalty(1, 0.6) == pytest.approx(1.0)
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(3, 0.5, "power") == pytest.approx(math.sqrt(3))
    with pytest.raises(ValueError, match="unknown length penalty"):
        length_penalty(3, 0.5, "nope")


def random_table(seed, max_depth=6, eos_boost=0.7):
    """Distributions for every prefix over {A, B} up to ``max_depth``; eos grows likelier."""
    g = torch.Generator().manual_seed(seed)
    table = {}
    for n in range(max_depth + 1):
        for prefix in itertools.product([A, B], repeat=n):
            w = torch.rand(3, generator=g, dtype=torch.float64) + torch.tensor([eos_boost * n, 0, 0])
            w = w / w.sum()
            table[prefix] = {EOS: float(w[0]), A: float(w[1]), B: float(w[2])}
    return table


@pytest.mark.parametrize("seed", range(6))
def test_beam_size_one_is_greedy(seed):
    tables = [random_table(seed), random_table(seed + 100, eos_boost=0.2)]
    greedy = run_greedy(tables, max_len=5)
    beam = run_beam(tables, k=1, alpha=0.6, max_len=5)
    for g, (b,) in zip(greedy, beam):
        assert b.tokens == g.tokens
        assert b.log_prob == pytest.approx(g.log_prob)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_a_beam_holding_every_prefix_finds_the_exhaustive_optimum(alpha):
    max_len = 3
    table = random_table(7, eos_boost=0.1)
    seqs = [list(s) for n in range(max_len + 1) for s in itertools.product([A, B], repeat=n)]

    def logp(seq):
        lp = sum(math.log(table[tuple(seq[:i])][tok]) for i, tok in enumerate(seq))
        return lp + math.log(table[tuple(seq)][EOS])  # at max_len the forced eos keeps its probability

    best = max(seqs, key=lambda s: logp(s) / length_penalty(len(s) + 1, alpha))
    (h,) = run_beam([table], k=16, alpha=alpha, max_len=max_len)[0]
    assert h.tokens == best
    assert h.log_prob == pytest.approx(logp(best))
    allh = run_beam([table], k=16, alpha=alpha, max_len=max_len, n_best=15)[0]
    assert sorted(tuple(x.tokens) for x in allh) == sorted(tuple(s) for s in seqs)  # all 15, each once


def test_max_length_forces_eos_and_batches_with_different_source_lengths():
    # eos has probability 0.001 after the first token: never chosen unless forced
    never_ends = {p: {A: 0.4995, B: 0.4995, EOS: 0.001}
                  for n in range(1, 12) for p in itertools.product([A, B], repeat=n)}
    never_ends[()] = {A: 0.5, B: 0.5}
    tables = [GARDEN_PATH, never_ends, SHORT_VS_LONG, never_ends]
    src_len = torch.tensor([7, 2, 5, 4])
    limits = max_lengths(src_len, 1.5, 1)  # floor(1.5 |X| + 1)
    assert limits.tolist() == [11, 4, 8, 7]
    batch = run_beam(tables, k=3, alpha=0.6, max_len=limits, n_best=2)
    for i, table in enumerate(tables):
        alone = run_beam([table], k=3, alpha=0.6, max_len=int(limits[i]), n_best=2)[0]
        key = lambda hyps: [(h.tokens, round(h.score, 10)) for h in hyps]  # noqa: E731
        assert key(batch[i]) == key(alone)
        assert all(len(h.tokens) <= limits[i] for h in batch[i])
    assert len(batch[1][0].tokens) == 4 and len(batch[3][0].tokens) == 7  # cut at the limit, eos forced
    # the forced eos keeps the model's log-probability, as fairseq's forced eos does
    assert batch[1][0].log_prob == pytest.approx(math.log(0.5) + 3 * math.log(0.4995) + math.log(0.001))
    assert batch[0][0].tokens == [B] and batch[2][0].tokens == [A, A, A]
    g = greedy_search(table_step(tables), {"sid": torch.arange(4)}, 4, bos=BOS, eos=EOS, max_len=limits)
    assert [len(h.tokens) for h in g] == [1, 4, 5, 7]  # greedy: A A A B B (then an unlisted prefix: eos)


def test_n_best_is_sorted_and_checked():
    hyps = run_beam([random_table(3)], k=4, alpha=0.6, n_best=4, max_len=6)[0]
    assert len(hyps) == 4 and len({tuple(h.tokens) for h in hyps}) == 4
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    for h in hyps:
        assert h.score == pytest.approx(h.log_prob / length_penalty(len(h.tokens) + 1, 0.6))
    with pytest.raises(ValueError, match="n_best"):
        run_beam([GARDEN_PATH], k=2, n_best=3)


def test_reorder_state_walks_nests_and_passes_other_values():
    st = {"x": torch.arange(3), "c": [{"k": torch.arange(6).view(3, 2)}], "step": 4, "t": (torch.ones(3),)}
    out = reorder_state(st, torch.tensor([2, 2, 0]))
    assert out["x"].tolist() == [2, 2, 0] and out["c"][0]["k"].tolist() == [[4, 5], [4, 5], [0, 1]]
    assert out["step"] == 4 and isinstance(out["t"], tuple)
    assert isinstance(Hypothesis([1], 0.0, 0.0), Hypothesis)
