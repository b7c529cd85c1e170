"""One attention layer on the nearest-neighbour target, with H heads of rank r = d/H
(Amsel, Yehudai & Bruna, "On the Benefits of Rank in Attention Layers", arXiv 2407.16153;
ICLR 2025 version "Quality over Quantity in Attention Layers").

Section 3 (setting): a multi-head attention layer applied to a query y and a context
X = (x_1..x_N) computes

    f(y, X) = sum_h O_h V_h^T X softmax(X^T K_h Q_h^T y),   Q_h, K_h, V_h, O_h in R^{d x r},

so each head's attention matrix Q_h K_h^T has rank <= r. The standard choice is
H = d / r (what ``MultiHeadAttention(d, H)`` does): the parameter count 4 d^2 is the same
for one full-rank head (H = 1, r = d) and for d rank-1 heads (H = d, r = 1).

Section 4 (rank separation): the target y -> x_{argmax_j <y, x_j>} is approximated to any
accuracy by one full-rank head (Q K^T = beta I, V O^T = I, beta -> infinity; see
``full_rank_construction``) but not by rank-r heads unless H is exponential in d - r.

The paper's delta here is only the comparison (rank vs heads at a fixed budget); the
layer itself is the suite's shared ``MultiHeadAttention`` (no biases, as in the paper's
parameterisation), used as cross-attention from the query to the context.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor, nn

from repro.blocks.attention import MultiHeadAttention, sdpa_attention


class RankedAttention(nn.Module):
    """f(y, X) with ``heads`` heads of rank ``d // heads`` (Section 3)."""

    def __init__(self, d: int, heads: int, attn=sdpa_attention) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"d={d} must be a multiple of heads={heads} (rank r = d / H)")
        self.d, self.heads, self.rank = d, heads, d // heads
        self.attn = MultiHeadAttention(d, heads, attn=attn, bias=False)

    def forward(self, y: Tensor, X: Tensor) -> Tensor:
        """y: (B, d) query, X: (B, N, d) context -> (B, d)."""
        return self.attn(y[:, None, :], context=X)[:, 0]

    def attention_matrices(self) -> Tensor:
        """Q_h K_h^T for every head, (H, d, d): the matrix whose rank the paper bounds."""
        a = self.attn
        wq = a.q_proj.weight.view(self.heads, self.rank, self.d)  # rows of head h: Q_h^T
        wk = a.k_proj.weight.view(self.heads, self.rank, self.d)
        return torch.einsum("hrd,hre->hde", wq, wk)


def reference_forward(y: Tensor, X: Tensor, wq: Tensor, wk: Tensor, wv: Tensor, wo: Tensor, heads: int) -> Tensor:
    """Section 3's formula written head by head with explicit softmax (the readable
    reference for the fused path): sum_h O_h V_h^T X softmax(X^T K_h Q_h^T y / sqrt(r))."""
    d = y.shape[-1]
    r = d // heads
    out = torch.zeros_like(y)
    for h in range(heads):
        rows = slice(h * r, (h + 1) * r)
        q = y @ wq[rows].T  # (B, r)
        k = X @ wk[rows].T  # (B, N, r)
        v = X @ wv[rows].T  # (B, N, r)
        w = torch.softmax(torch.einsum("br,bnr->bn", q, k) / math.sqrt(r), dim=-1)
        out = out + torch.einsum("bn,bnr->br", w, v) @ wo[:, rows].T
    return out


@torch.no_grad()
def full_rank_construction(d: int, beta: float) -> RankedAttention:
    """The paper's exact representation by one full-rank head: Q K^T = beta I (the
    layer's 1/sqrt(d) scaling is undone), V O^T = I. Its error -> 0 as beta -> infinity."""
    m = RankedAttention(d, 1)
    eye = torch.eye(d)
    m.attn.q_proj.weight.copy_(eye * beta * math.sqrt(d))
    m.attn.k_proj.weight.copy_(eye)
    m.attn.v_proj.weight.copy_(eye)
    m.attn.out_proj.weight.copy_(eye)
    return m


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """||f_hat - f||^2 per sample; targets have unit norm, so its mean is the error
    relative to the zero predictor."""
    return ((pred - target) ** 2).sum(dim=-1)


class NearestNeighbourModule(L.LightningModule):
    """Trains ``RankedAttention`` by mean squared error on the target (Section 7 trains
    standard transformers by regression on the same target)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = RankedAttention(cfg.d, cfg.heads)
        self._sums: dict[str, float] = {}

    def forward(self, y, X):
        return self.model(y, X)

    def training_step(self, batch, _):
        y, X, t = batch
        loss = squared_error(self(y, X), t).mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        y, X, t = batch
        self.log("val/loss", squared_error(self(y, X), t).mean())

    def on_test_epoch_start(self):
        self._sums = {"err": 0.0, "uniform": 0.0, "n": 0.0}

    def test_step(self, batch, _):
        y, X, t = batch
        self._sums["err"] += squared_error(self(y, X), t).sum().item()
        self._sums["uniform"] += squared_error(X.mean(dim=1), t).sum().item()  # uniform attention, V O^T = I
        self._sums["n"] += y.shape[0]

    def on_test_epoch_end(self):
        n = self._sums["n"]
        self.log("test/nmse", self._sums["err"] / n)
        self.log("test/nmse_uniform", self._sums["uniform"] / n)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.cfg.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
