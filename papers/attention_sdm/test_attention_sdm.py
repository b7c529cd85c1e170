"""The fast closed forms against brute force: the circle-intersection count against
enumeration of {0,1}^n, the pattern-based SDM read against the neuron-based SDM with a
neuron at every address, the attention read against the explicit softmax of the Hamming
distance, and the optimal-radius formulas against their defining equations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from .data import noisy_queries, random_patterns
from .model import (
    attention_read,
    attention_weights,
    fit_beta,
    hamming_distances,
    intersection_count,
    intersection_table,
    memory_optimal_fraction,
    neuron_sdm_read,
    sdm_read,
    snr_optimal_fraction,
    space_fraction_to_radius,
)

pytestmark = pytest.mark.unit


def _all_addresses(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((0, 1), repeat=n)), dtype=torch.int64)


@pytest.mark.parametrize("n", [1, 6, 9])
def test_intersection_count_matches_enumeration(n):
    space = _all_addresses(n).numpy()
    rng = np.random.default_rng(n)
    for d in range(n + 1):
        for dv in range(n + 1):
            x = rng.integers(0, 2, n)
            y = x.copy()
            flip = rng.choice(n, dv, replace=False)
            y[flip] = 1 - y[flip]
            hx = (space != x).sum(1)
            hy = (space != y).sum(1)
            assert intersection_count(n, d, dv) == int(((hx <= d) & (hy <= d)).sum()), (n, d, dv)


def test_intersection_edge_cases_and_staircase():
    n = 64
    for d in (5, 11, 15):
        assert intersection_count(n, d, 0) == sum(math.comb(n, i) for i in range(d + 1))  # a whole ball
        assert intersection_count(n, d, 2 * d + 1) == 0  # balls too far apart
        assert intersection_count(n, d, 2 * d) > 0
        for j in range(1, d + 1):  # the identity the README's R^2 analysis rests on
            assert intersection_count(n, d, 2 * j - 1) == intersection_count(n, d, 2 * j)
    with pytest.raises(ValueError):
        intersection_count(4, 2, 5)


def test_intersection_table_scales_with_neurons():
    full = intersection_table(12, 3)
    part = intersection_table(12, 3, neurons=2**10)
    np.testing.assert_allclose(part, full / 4)


def test_hamming_distances():
    a = random_patterns(7, 13, seed=1)
    b = random_patterns(5, 13, seed=2)
    ref = (a[:, None, :] != b[None, :, :]).sum(-1)
    assert torch.equal(hamming_distances(a, b), ref)


@pytest.mark.parametrize("n,d,m", [(8, 2, 5), (10, 3, 12), (9, 4, 30)])
def test_pattern_sdm_equals_neuron_sdm_with_every_address_a_neuron(n, d, m):
    patterns = random_patterns(m, n, seed=n + d)
    pointers = random_patterns(m, n, seed=n + d + 100)  # heteroassociative, to catch an address/pointer mix-up
    queries, _ = noisy_queries(patterns, 17, 1, seed=3)
    neurons = _all_addresses(n)
    ref = neuron_sdm_read(queries, patterns, pointers, neurons, d)
    fast = sdm_read(queries, patterns, pointers, intersection_table(n, d))
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)


def test_attention_read_is_softmax_of_hamming_similarity():
    n, beta = 16, 7.3
    patterns = random_patterns(40, n, seed=0)
    pointers = random_patterns(40, n, seed=9).double()
    queries, _ = noisy_queries(patterns, 11, 3, seed=4)
    x = 1.0 - 2.0 * hamming_distances(queries, patterns).double() / n
    ref_w = torch.softmax(beta * x, dim=-1)
    torch.testing.assert_close(attention_weights(queries, patterns, beta), ref_w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(attention_read(queries, patterns, pointers, beta), ref_w @ pointers,
                               rtol=1e-12, atol=1e-12)


def test_sdm_read_of_unreachable_query_is_nan():
    patterns = torch.zeros(3, 8, dtype=torch.int64)
    query = torch.ones(1, 8, dtype=torch.int64)  # 8 bits from every pattern; radius 2 reaches at most 4
    assert torch.isnan(sdm_read(query, patterns, patterns, intersection_table(8, 2))).all()


def test_fit_beta_recovers_an_exact_exponential_and_orders_radii():
    fits = [fit_beta(64, d) for d in (5, 11, 15)]
    assert all(f.beta > 0 and 0 < f.r2 <= 1 for f in fits)
    assert fits[0].beta > fits[1].beta > fits[2].beta  # larger circles: flatter weighting
    assert fits[1].dvs == tuple(range(11))


def test_optimal_radius_formulas():
    n, r, m = 64, 2.0**64, 1024
    p = snr_optimal_fraction(m, r)
    assert math.isclose(p, (2 * m * r) ** (-1 / 3))
    pm = memory_optimal_fraction(n, r)
    from scipy.stats import binom, norm

    z = norm.ppf(0.5 ** (1 / n))
    assert math.isclose(2 * r**2 * pm**3 - 3 * r * z**2 * pm**2, z**2, rel_tol=1e-9)
    for frac in (p, pm, 1e-3, 0.3):
        d = space_fraction_to_radius(n, frac)
        assert binom.cdf(d, n, 0.5) >= frac > binom.cdf(d - 1, n, 0.5)


def test_noisy_queries_flip_exactly_k_bits():
    patterns = random_patterns(20, 32, seed=5)
    for k in (0, 1, 7):
        q, target = noisy_queries(patterns, 25, k, seed=k)
        assert ((q != patterns[target]).sum(-1) == k).all()
