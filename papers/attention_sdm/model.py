"""Sparse Distributed Memory read-out and its softmax-attention approximation, after
Bricken & Pehlevan, "Attention Approximates Sparse Distributed Memory" (NeurIPS 2021,
arXiv 2111.05498). Written from the paper's description (Sections 1-2); the official
notebooks (TrentBrick/attention-approximates-sdm) were read for the settings only.

The paper's delta, in three pieces:

1. **Circle intersection** (Section 2, Appendix B.1). Patterns and neurons live in
   {0,1}^n. A pattern is written into every neuron within Hamming distance d of its
   address; a query reads every neuron within d of itself. Pattern mu therefore reaches
   the query through the neurons in the intersection of two Hamming balls of radius d
   whose centres are d_v = d(query, pattern) apart. With r neurons at random addresses
   the expected number there is (r / 2^n) * |B_d(x) ∩ B_d(y)|; with r = 2^n (the paper's
   "Transformer Attention setting", every address a neuron) it *is* the count.
   ``intersection_count`` counts it exactly: split the coordinates into the d_v where the
   centres differ and the n - d_v where they agree; an address that flips a agreeing and
   b differing coordinates of x is a + b from x and a + (d_v - b) from y, so
   |∩| = sum over {a + b <= d, a + d_v - b <= d} of C(n - d_v, a) C(d_v, b).
2. **SDM read** (Eq. 1-2 of the paper): the output is the intersection-weighted average
   of the pattern pointers, sum_mu I(d_v^mu) p_p^mu / sum_mu I(d_v^mu), binarised at 1/2.
3. **Attention approximation** (Section 2, "Attention Approximates SDM"): I(d_v) decays
   approximately exponentially in d_v, so after normalisation it is close to
   softmax(beta * x) with x = 1 - 2 d_v / n the cosine similarity of the bipolar vectors.
   beta is fitted by a log-linear regression of log I on x over d_v = 0 .. d - 1 (the
   range of the official ``fit_beta``). The attention read is the suite's standard
   softmax attention (``repro.blocks.attention.naive_attention``) on unit-norm bipolar
   queries and keys with ``scale = beta``; nothing about attention is rewritten here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from repro.blocks.attention import naive_attention, softmax_weights


def intersection_count(n: int, d: int, dv: int) -> int:
    """|{z in {0,1}^n : H(z, x) <= d and H(z, y) <= d}| for H(x, y) = dv (exact integer)."""
    if not (0 <= dv <= n and 0 <= d <= n):
        raise ValueError(f"need 0 <= dv, d <= n, got n={n}, d={d}, dv={dv}")
    total = 0
    for b in range(dv + 1):
        a_max = min(d - b, d - (dv - b), n - dv)
        if a_max < 0:
            continue
        cb = math.comb(dv, b)
        total += cb * sum(math.comb(n - dv, a) for a in range(a_max + 1))
    return total


def intersection_table(n: int, d: int, neurons: float | None = None) -> np.ndarray:
    """Expected neurons in the intersection for every d_v = 0..n (float64).

    ``neurons=None`` means r = 2^n (every address holds a neuron), where the expectation
    equals the exact count; otherwise it is scaled by r / 2^n.
    """
    counts = np.array([float(intersection_count(n, d, dv)) for dv in range(n + 1)])
    if neurons is not None:
        counts = counts * (float(neurons) / 2.0**n)
    return counts


def hamming_to_cosine(dv, n: int):
    """Cosine similarity of the bipolar (+-1) versions of two binary vectors dv apart."""
    return 1.0 - 2.0 * np.asarray(dv, dtype=np.float64) / n


@dataclass(frozen=True)
class BetaFit:
    beta: float  # slope of log I against the cosine similarity
    bias: float
    r2: float  # coefficient of determination of the log-linear fit
    dvs: tuple[int, ...]  # Hamming distances used in the fit


def fit_beta(n: int, d: int, fit_range: int | None = None) -> BetaFit:
    """Least-squares fit log I(d_v) = beta * x(d_v) + bias over d_v = 0..fit_range-1
    (default d, as the official ``fit_beta``); returns beta and the fit's R^2."""
    k = d if fit_range is None else fit_range
    dvs = np.arange(0, k)
    logs = np.log(np.array([float(intersection_count(n, d, int(v))) for v in dvs]))
    x = hamming_to_cosine(dvs, n)
    beta, bias = np.polyfit(x, logs, 1)
    pred = beta * x + bias
    ss_res = float(((logs - pred) ** 2).sum())
    ss_tot = float(((logs - logs.mean()) ** 2).sum())
    return BetaFit(float(beta), float(bias), 1.0 - ss_res / ss_tot, tuple(int(v) for v in dvs))


def hamming_distances(queries: Tensor, addresses: Tensor) -> Tensor:
    """(..., Q, n) x (M, n) binary -> (..., Q, M) integer Hamming distances."""
    q = queries.to(torch.float64)
    a = addresses.to(torch.float64)
    # |q - a| summed = q(1-a) + a(1-q) for binary entries
    return (q @ (1 - a).T + (1 - q) @ a.T).round().to(torch.long)


def sdm_weights(queries: Tensor, addresses: Tensor, table: np.ndarray) -> Tensor:
    """Unnormalised SDM weights I(d_v) of every pattern for every query (float64)."""
    lut = torch.as_tensor(table, dtype=torch.float64, device=queries.device)
    return lut[hamming_distances(queries, addresses)]


def sdm_read(queries: Tensor, addresses: Tensor, pointers: Tensor, table: np.ndarray) -> Tensor:
    """Pattern-based SDM read (Eq. 2): intersection-weighted mean of the pointers, before
    the binarising threshold. Rows whose query reaches no pattern are NaN."""
    w = sdm_weights(queries, addresses, table)
    return (w @ pointers.to(torch.float64)) / w.sum(-1, keepdim=True)


def bipolar_unit(x: Tensor) -> Tensor:
    """{0,1}^n -> unit-norm +-1/sqrt(n) vectors, so q.k is the cosine similarity."""
    return (2.0 * x.to(torch.float64) - 1.0) / math.sqrt(x.shape[-1])


def attention_weights(queries: Tensor, addresses: Tensor, beta: float) -> Tensor:
    """softmax(beta * cos(query, address)) over the patterns (the shared softmax block)."""
    return softmax_weights(bipolar_unit(queries), bipolar_unit(addresses), scale=beta)


def attention_read(queries: Tensor, addresses: Tensor, pointers: Tensor, beta: float) -> Tensor:
    """Transformer attention as an SDM read: softmax(beta q.k) v with the suite's
    reference softmax attention, queries/keys as unit bipolar vectors, values = pointers."""
    return naive_attention(bipolar_unit(queries), bipolar_unit(addresses), pointers.to(torch.float64), scale=beta)


def binarise(x: Tensor) -> Tensor:
    """SDM's read threshold: a bit is on when more than half of the weight says so."""
    return (x > 0.5).to(torch.int64)


def neuron_sdm_read(queries: Tensor, addresses: Tensor, pointers: Tensor, neuron_addresses: Tensor,
                    d: int) -> Tensor:
    """Neuron-based SDM (Section 1): write every pattern into all neurons within d of its
    address, read by summing the neurons within d of the query. O(r) per query, so only
    for small n; the reference that ``sdm_read`` is tested against."""
    write = (hamming_distances(neuron_addresses, addresses) <= d).to(torch.float64)  # (r, M)
    storage = write @ pointers.to(torch.float64)  # (r, n): superposed pointers per neuron
    counts = write.sum(-1)  # patterns stored per neuron
    read = (hamming_distances(queries, neuron_addresses) <= d).to(torch.float64)  # (Q, r)
    return (read @ storage) / (read @ counts).unsqueeze(-1)


# --- Optimal Hamming radii (paper Section 1 "Hamming distance", Appendix B.5) -------------
# The paper quotes three reference radii for n = 64, r = 2^n, m ~ 1024 (the Transformer
# setting). Two of them have closed forms from Kanerva's analysis of random patterns,
# implemented here from the formulas (the official notebook Optimal_d.ipynb was read for
# the conventions: a fraction p of the space is turned into the radius whose ball holds
# that fraction, the inverse binomial CDF; the memory-capacity z-score is per bit, for a
# whole-pattern retrieval probability of 1/2).


def space_fraction_to_radius(n: int, p: float) -> int:
    """Smallest radius d whose Hamming ball holds at least a fraction p of {0,1}^n."""
    from scipy.stats import binom

    return int(binom.ppf(p, n, 0.5))


def snr_optimal_fraction(m: int, r: float) -> float:
    """Kanerva's signal-to-noise-optimal activated fraction p* = (2 m r)^(-1/3)."""
    return float((2.0 * m * r) ** (-1.0 / 3.0))


def memory_optimal_fraction(n: int, r: float, retrieval_prob: float = 0.5) -> float:
    """Fraction p* maximising the number of storable patterns at a per-bit z-score z:
    the positive root of 2 r^2 p^3 - 3 r z^2 p^2 - z^2 = 0 (stationary point of the
    capacity expression). Solved in the rescaled variable t = p r^(2/3), which keeps the
    cubic well conditioned for r = 2^64."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    z = float(norm.ppf(retrieval_prob ** (1.0 / n)))
    c = 3.0 * z * z * r ** (-1.0 / 3.0)

    def g(t: float) -> float:
        return 2.0 * t**3 - c * t * t - z * z

    hi = 1.0
    while g(hi) < 0:
        hi *= 2.0
    t = brentq(g, 0.0, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    return float(t * r ** (-2.0 / 3.0))
