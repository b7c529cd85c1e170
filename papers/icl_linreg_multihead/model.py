"""One-layer multi-head softmax attention for in-context linear regression (He, Pan, Chen
& Yang, "In-Context Linear Regression Demystified", ICML 2025, arXiv 2503.12734).

The model (Section 2 of the paper; official notebook ``icl_linear.ipynb``): the query
token z_q = (x_q, 0) attends to the L example tokens z_i = (x_i, y_i) with H heads, each
of full width d+1, and the prediction is the sum of the heads' scalar outputs

    TF(Z, z_q) = sum_h O^h V^h Z softmax(Z^T K^h^T Q^h z_q / sqrt(d+1)),
    Q^h, K^h, V^h in R^{(d+1)x(d+1)},  O^h in R^{1 x (d+1)},  no biases.

The query does not attend to itself. ``MultiHeadSoftmaxRegressor`` computes this with the
suite's shared attention kernel (SDPA; per-head width d+1, so the heads are not slices of
one d+1 embedding as in ``MultiHeadAttention``); ``reference_forward`` is the formula
written head by head (tested equal, outputs and gradients).

The paper's mechanistic quantities (Section 3): per head the KQ matrix
W_KQ^h = Q^h^T K^h (score = z_q^T W_KQ^h z_i), whose x-block the paper finds diagonal
and homogeneous (~ omega_h I_d), and the OV vector u^h = (O^h V^h) in R^{d+1}, which is
last-entry-only (only y_i is read) with the last entries summing to ~zero across heads.
``kq_matrices`` and ``ov_vectors`` extract them; ``pattern_metrics`` summarises them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from repro.blocks.attention import sdpa_attention


class MultiHeadSoftmaxRegressor(nn.Module):
    def __init__(self, d: int, heads: int, attn=sdpa_attention) -> None:
        super().__init__()
        self.d, self.heads, self.width = d, heads, d + 1
        w = self.width
        self.q_proj = nn.Linear(w, heads * w, bias=False)
        self.k_proj = nn.Linear(w, heads * w, bias=False)
        self.v_proj = nn.Linear(w, heads * w, bias=False)
        self.o_proj = nn.Linear(heads * w, 1, bias=False)
        self.attn = attn

    def _split(self, t: Tensor) -> Tensor:  # (B, n, H*w) -> (B, H, n, w)
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.width).transpose(1, 2)

    def forward(self, z: Tensor, zq: Tensor) -> Tensor:
        """z: (B, L, d+1) examples, zq: (B, d+1) query -> (B,) predictions of y_q."""
        q = self._split(self.q_proj(zq[:, None]))
        k, v = self._split(self.k_proj(z)), self._split(self.v_proj(z))
        out = self.attn(q, k, v, scale=1.0 / math.sqrt(self.width))  # (B, H, 1, w)
        return self.o_proj(out.transpose(1, 2).reshape(len(z), -1))[:, 0]

    @torch.no_grad()
    def kq_matrices(self) -> Tensor:
        """(H, d+1, d+1): W_KQ^h with score_i = z_q^T W_KQ^h z_i (before 1/sqrt(d+1))."""
        wq = self.q_proj.weight.view(self.heads, self.width, self.width)  # rows: output dims of head h
        wk = self.k_proj.weight.view(self.heads, self.width, self.width)
        return torch.einsum("hoa,hob->hab", wq, wk)

    @torch.no_grad()
    def ov_vectors(self) -> Tensor:
        """(H, d+1): u^h with head h's output = u^h . (attention-weighted z)."""
        wv = self.v_proj.weight.view(self.heads, self.width, self.width)
        wo = self.o_proj.weight.view(self.heads, self.width)
        return torch.einsum("ho,hoa->ha", wo, wv)


def reference_forward(z: Tensor, zq: Tensor, model: MultiHeadSoftmaxRegressor) -> Tensor:
    """The paper's formula head by head with explicit softmax (readable reference)."""
    w = model.width
    wq = model.q_proj.weight.view(model.heads, w, w)
    wk = model.k_proj.weight.view(model.heads, w, w)
    wv = model.v_proj.weight.view(model.heads, w, w)
    wo = model.o_proj.weight.view(model.heads, w)
    out = torch.zeros(len(z), dtype=z.dtype)
    for h in range(model.heads):
        scores = torch.einsum("bi,bli->bl", zq @ wq[h].T, z @ wk[h].T) / math.sqrt(w)
        p = torch.softmax(scores, dim=-1)
        out = out + (torch.einsum("bl,bli->bi", p, z @ wv[h].T) @ wo[h])
    return out


def pattern_metrics(model: MultiHeadSoftmaxRegressor, active_frac: float = 0.1) -> dict[str, float]:
    """The KQ/OV patterns as numbers (0 = the ideal pattern):

    * ``kq_offdiag``: ||off-diagonal of the x-block||_F / ||its diagonal||_F, mean over active heads
    * ``kq_diag_cv``: std / |mean| of the x-block diagonal (homogeneity), mean over active heads
    * ``kq_y_coupling``: ||W_KQ[:d, d]||/||diag|| (query x to example y), mean over active heads
    * ``ov_x_leak``: ||u^h[:d]|| / |u^h[d]| (OV reads only y), mean over active heads
    * ``ov_zero_sum``: |sum_h u^h[d]| / sum_h |u^h[d]| over all heads (1 for a single head)
    * ``active_heads``: heads with |u^h[d]| >= active_frac * max_h |u^h[d]|
    * ``omega_spread``: min/max of |mean diagonal| over active heads (1 = equal across heads)
    """
    d = model.d
    kq, ov = model.kq_matrices().double(), model.ov_vectors().double()
    last = ov[:, d].abs()
    active = (last >= active_frac * last.max()).nonzero().flatten().tolist()
    off, cv, coup, leak, omegas = [], [], [], [], []
    for h in active:
        xb = kq[h, :d, :d]
        diag = torch.diagonal(xb)
        off.append(float(torch.linalg.norm(xb - torch.diag(diag)) / torch.linalg.norm(diag)))
        cv.append(float(diag.std() / diag.mean().abs()))
        coup.append(float(torch.linalg.norm(kq[h, :d, d]) / torch.linalg.norm(diag)))
        leak.append(float(torch.linalg.norm(ov[h, :d]) / last[h]))
        omegas.append(float(diag.mean().abs()))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {
        "kq_offdiag": mean(off), "kq_diag_cv": mean(cv), "kq_y_coupling": mean(coup), "ov_x_leak": mean(leak),
        "ov_zero_sum": float(ov[:, d].sum().abs() / last.sum()), "active_heads": float(len(active)),
        "omega_spread": min(omegas) / max(omegas),
    }


__all__ = ["MultiHeadSoftmaxRegressor", "reference_forward", "pattern_metrics"]
