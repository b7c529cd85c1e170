"""TaylorShift (Nauen, Palacio & Dengel, arXiv 2403.02920, ICPR 2024): attention with the
Taylor softmax, computed directly in O(N^2 d) or in an "efficient" tensor-product form in
O(N d^3), whichever is cheaper for the sequence length at hand.

Taylor softmax (Sec. 3): replace exp by its second-order Taylor polynomial and normalise,

    T-SM(x)_i = (1 + x_i + x_i^2 / 2) / sum_j (1 + x_j + x_j^2 / 2),            (1)

which is positive for every x (1 + x + x^2/2 >= 1/2). Direct-TaylorShift is

    Y = T-SM(Q K^T) V                                                           (2)

with the N x N matrix materialised. Efficient-TaylorShift (Sec. 3.2) expands the square
with the tensor ("box") product a ⊠ b = (a_i b_j)_{ij} in R^{d^2}, using
(q . k)^2 = (q ⊠ q) . (k ⊠ k), and appends a column of ones to V so that the normaliser
is computed as one more value column:

    V1 = [1 | V],   Y~ = a (Q ⊠ Q) ((K ⊠ K)^T V1) + b Q (K^T V1) + c 1 (1^T V1),
    Y  = Y~[:, 1:] / Y~[:, :1]                                                   (3)

(a, b, c) = (1/2, 1, 1) are the Taylor coefficients. Every product is of size N x d^2 or
d^2 x (d+1): linear in N. The two forms are the same function; which one is cheaper
depends on N and d (Sec. 4): the analytic crossover for operations is N0(d) = d^2 + d + 1
and for memory N1(d) = ((d+1)^2 + sqrt((d+1)^4 + 8 d^2 (d+1))) / 4 (the official code's
`analysis/utils.py`, `theoretical_cutoff`; `flops_crossover`, `memory_crossover` here).

Normalisation (Sec. 3.3; official `TaylorShiftAttention`): queries and keys are
L2-normalised, queries scaled by a temperature tau, so the Taylor softmax sees
x = tau cos(q, k) in [-tau, tau]. In the efficient form the intermediate values are kept
in range by scaling q and k by d^(1/4) and V1 by 1/N and compensating the constant terms
(b sqrt(d), c d), which leaves Y unchanged.

The buffers each form keeps alive in inference are the ones the memory crossover N1(d)
counts: direct keeps the score matrix and the weight matrix (2 N^2) plus the row sums
(N); efficient keeps V1 (N (d+1)), one N x d^2 box product at a time, its N x (d+1)
result and the d^2 x (d+1) key summary. The functions below keep exactly these (the
weights are normalised in place, box products are released as soon as they are used);
README, "Memory model".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

A, B, C = 0.5, 1.0, 1.0  # Taylor coefficients of exp: 1 + x + x^2/2


def flops_crossover(d: int) -> float:
    """N0(d) = d^2 + d + 1: above it efficient-TaylorShift needs fewer operations
    (official analysis/utils.py, theoretical_cutoff(d, flops=True))."""
    return float(d * d + d + 1)


def memory_crossover(d: int) -> float:
    """N1(d): root of 2 N^2 + N = N (d^2 + 2d + 2) + d^2 (d + 1), i.e.
    ((d+1)^2 + sqrt((d+1)^4 + 8 d^2 (d+1))) / 4 (official theoretical_cutoff(d, flops=False))."""
    return 0.25 * (d * d + 2 * d + 1 + math.sqrt(d**4 + 12 * d**3 + 14 * d**2 + 4 * d + 1))


def taylor_exp(x: Tensor, a: float = A, b: float = B, c: float = C) -> Tensor:
    """a x^2 + b x + c (Eq. 1's numerator; > 0 when c > b^2 / 4a)."""
    return a * x * x + b * x + c


def taylor_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Eq. (1)."""
    w = taylor_exp(x)
    return w / w.sum(dim=dim, keepdim=True)


def box(a: Tensor, b: Tensor) -> Tensor:
    """a ⊠ b: (..., N, d) x (..., N, d) -> (..., N, d^2), row-wise outer products."""
    return (a.unsqueeze(-1) * b.unsqueeze(-2)).flatten(-2)


def _grad_mode(*ts: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def direct_taylorshift(q: Tensor, k: Tensor, v: Tensor, *, coef: tuple[float, float, float] = (A, B, C)) -> Tensor:
    """Eq. (2): T-SM(Q K^T) V with the N x N matrices materialised, O(N^2 d)."""
    a, b, c = coef
    x = torch.matmul(q, k.transpose(-2, -1))  # N x N scores
    if _grad_mode(q, k, v):
        w = taylor_exp(x, a, b, c)
        w = w / w.sum(dim=-1, keepdim=True)
    else:  # inference: one more N x N buffer for the weights, normalised in place
        w = x.square().mul_(a).add_(x, alpha=b).add_(c)
        del x  # the scores are not needed once the weights exist
        w.div_(w.sum(dim=-1, keepdim=True))
    return torch.matmul(w, v)


def efficient_taylorshift(q: Tensor, k: Tensor, v: Tensor, *, coef: tuple[float, float, float] = (A, B, C),
                          value_scale: float = 1.0) -> Tensor:
    """Eq. (3): the same function in O(N d^3) through box products. ``value_scale``
    multiplies V1 (the normalised variant uses 1/N); it cancels in the final ratio."""
    a, b, c = coef
    v1 = torch.cat([torch.full((*v.shape[:-1], 1), value_scale, dtype=v.dtype, device=v.device),
                    v * value_scale if value_scale != 1.0 else v], dim=-1)  # N x (d+1)
    kk = box(k, k)  # N x d^2
    kv = torch.matmul(kk.transpose(-2, -1), v1)  # d^2 x (d+1): sum_j (k_j ⊠ k_j) v1_j^T
    del kk
    k1 = torch.matmul(k.transpose(-2, -1), v1)  # d x (d+1)
    s1 = v1.sum(dim=-2, keepdim=True)  # 1 x (d+1)
    qq = box(q, q)  # N x d^2
    y = torch.matmul(qq, kv)  # N x (d+1)
    del qq
    if _grad_mode(q, k, v):
        y = a * y + b * torch.matmul(q, k1) + c * s1
    else:
        y.mul_(a).add_(torch.matmul(q, k1), alpha=b).add_(s1, alpha=c)
    return y[..., 1:] / y[..., :1]


def taylorshift(q: Tensor, k: Tensor, v: Tensor, *, form: str = "auto", normalize_input: bool = True,
                temperature: float | Tensor = 1.0, n0: float | None = None) -> Tensor:
    """TaylorShift attention on (..., N, d) heads.

    ``form``: ``direct``, ``efficient`` or ``auto`` (efficient when N > ``n0``, default
    N0(d) = d^2 + d + 1, the official switching rule). With ``normalize_input`` (Sec. 3.3)
    the scores are tau cos(q, k); without it they are q . k as given."""
    n, d = q.shape[-2], q.shape[-1]
    if form == "auto":
        form = "efficient" if n > (flops_crossover(d) if n0 is None else n0) else "direct"
    if form not in ("direct", "efficient"):
        raise ValueError(f"form must be direct, efficient or auto, got {form!r}")
    if normalize_input:
        q = F.normalize(q, dim=-1) * temperature
        k = F.normalize(k, dim=-1)
    if form == "direct":
        return direct_taylorshift(q, k, v)
    if not normalize_input:
        return efficient_taylorshift(q, k, v)
    s = d**0.25  # x = (s q).(s k) / sqrt(d): keep q ⊠ q and k ⊠ k entries O(1/d) * sqrt(d)
    return efficient_taylorshift(q * s, k * s, v, coef=(A, B * math.sqrt(d), C * d), value_scale=1.0 / n)


def taylorshift_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                          scale: float | None = None) -> Tensor:
    """TaylorShift behind the suite's attention interface (normalised inputs, tau = 1,
    automatic form). Masks and causal attention are not part of the paper's method."""
    if mask is not None or causal:
        raise NotImplementedError("TaylorShift (as published) is non-causal self-attention without masks")
    return taylorshift(q, k, v)
