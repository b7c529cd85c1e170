"""Lightning Attention-2 (Qin et al., arXiv 2401.04658): causal linear attention with
decay, computed block by block ("tiling") in the forward *and* the backward pass.

The quantity is the decayed causal linear attention of TransNormerLLM (the shared
reference ``repro.blocks.linear_attention.causal_linear_attention`` with the identity
feature map, no normalisation):

    O = [(Q K^T) * M] V,      M_ts = lambda^(t-s) for s <= t, else 0.          (Sec. 3)

The paper's delta is *how* it is computed (Sec. 3.2, Algorithms 1 and 2). The sequence is
cut into blocks of B rows. For block i (rows i0..i0+m-1, local index r = t - i0):

* intra-block, "left product" (conventional attention inside the block):
  ``O_intra = [(Q_i K_i^T) * D] V_i`` with ``D_rs = lambda^(r-s)``, ``s <= r``;
* inter-block, "right product" (the kernel trick between blocks) through the running
  state ``KV_i = sum_{s < i0} lambda^(i0-1-s) k_s v_s^T`` (d x e):
  ``O_inter = Lambda Q_i KV_i``, ``Lambda = diag(lambda^(r+1))``;
* state update: ``KV_{i+1} = lambda^m KV_i + (Lambda' K_i)^T V_i``,
  ``Lambda' = diag(lambda^(m-1-r))``.

Each step is O(B^2 d + B d e) per block, so the cost per token does not depend on the
sequence length n (no cumsum over n, the problem of earlier causal linear attention).

Backward (Algorithm 2): the gradients are themselves linear attentions,
``dQ = [(dO V^T) * M] K`` (causal: a forward-direction block loop with the same state
KV), and ``dK = [(V dO^T) * M^T] Q``, ``dV = [(K Q^T) * M^T] dO`` (anti-causal: a
reverse block loop with the state ``dKV = sum_{t >= i0+m} lambda^(t-i0-m) q_t dO_t^T``).
Only q, k, v are saved for backward; nothing of size n x n exists in either pass.

The official kernels are Triton (GPU); this is a PyTorch transcription of the same
algorithm (block loop in Python, batched over batch and heads), so it is
hardware-agnostic and runs on the CPU. The decay is a fixed per-head constant as in
TransNormerLLM (``tnl_decay``); it receives no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK = 64  # the official forward kernel's block size (lightning_attn2.py, BLOCK = 64)


def alibi_slopes(heads: int) -> list[float]:
    """Per-head rates s_h = 2^(-8 h / H), h = 1..H (the ALiBi geometric sequence that
    TransNormerLLM's decay lambda_h = exp(-s_h) uses; defined here for any H, the
    power-of-two case being the one in the official code)."""
    return [2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)]


def tnl_decay(heads: int, dtype=torch.float32) -> Tensor:
    """lambda_h = exp(-s_h), one decay per head, shape (H,)."""
    return torch.exp(-torch.tensor(alibi_slopes(heads), dtype=torch.float64)).to(dtype)


def _log_decay(decay: float | Tensor | None, like: Tensor) -> Tensor | None:
    """log(lambda) shaped ``lead + (1, 1)`` for broadcasting, or None (lambda = 1)."""
    if decay is None:
        return None
    lam = torch.as_tensor(decay, dtype=like.dtype, device=like.device)
    if torch.any(lam <= 0) or torch.any(lam > 1):
        raise ValueError("decay must lie in (0, 1]")
    return torch.log(lam).reshape(lam.shape + (1, 1))


def _pow(log_lam: Tensor, exponent: Tensor) -> Tensor:
    """lambda^exponent for an exponent vector (m,) -> lead + (m, 1)."""
    return torch.exp(log_lam * exponent.reshape(-1, 1))


def _intra_mask(m: int, log_lam: Tensor | None, like: Tensor) -> Tensor:
    """D_rs = lambda^(r-s) for s <= r, else 0; (m, m) or lead + (m, m)."""
    r = torch.arange(m, device=like.device)
    diff = (r[:, None] - r[None, :]).to(like.dtype)
    lower = diff >= 0
    if log_lam is None:
        return lower.to(like.dtype)
    return torch.where(lower, torch.exp(log_lam * diff.clamp(min=0)), torch.zeros((), dtype=like.dtype,
                                                                                   device=like.device))


def _blocks(n: int, block: int) -> list[tuple[int, int]]:
    return [(i0, min(i0 + block, n)) for i0 in range(0, n, block)]


class _BlockConstants:
    """The decay factors of one block size m, computed once and reused by every block of
    that size (Algorithm 1 computes M and Lambda before its loop, as the official kernel
    does): D (m x m), and the row factors lambda^(r+1) (inter-block queries),
    lambda^(m-1-r) (state update), lambda^r and lambda^(m-r) (backward), lambda^m."""

    def __init__(self, log_lam: Tensor | None, like: Tensor) -> None:
        self.log_lam, self.like = log_lam, like
        self._cache: dict[int, dict[str, Tensor | None]] = {}

    def __call__(self, m: int) -> dict[str, Tensor | None]:
        if m not in self._cache:
            lam, like = self.log_lam, self.like
            r = torch.arange(m, device=like.device, dtype=like.dtype)
            c: dict[str, Tensor | None] = {"D": _intra_mask(m, lam, like)}
            if lam is None:
                c.update(q_inter=None, k_state=None, q_state=None, k_inter=None, block=None)
            else:
                c.update(q_inter=_pow(lam, r + 1), k_state=_pow(lam, m - 1 - r), q_state=_pow(lam, r),
                         k_inter=_pow(lam, m - r), block=torch.exp(lam * m))
            c["Dt"] = c["D"].transpose(-2, -1)
            self._cache[m] = c
        return self._cache[m]


def _scale(x: Tensor, f: Tensor | None) -> Tensor:
    return x if f is None else x * f


def _decayed_add(state: Tensor, f: Tensor | None, upd: Tensor) -> Tensor:
    return state + upd if f is None else state * f + upd


def tiled_forward(q: Tensor, k: Tensor, v: Tensor, log_lam: Tensor | None, block: int) -> Tensor:
    """Algorithm 1: intra-block left product + inter-block right product with the
    running KV state."""
    n, d, e = q.shape[-2], q.shape[-1], v.shape[-1]
    out = torch.empty(*q.shape[:-1], e, dtype=q.dtype, device=q.device)
    kv = torch.zeros(*q.shape[:-2], d, e, dtype=q.dtype, device=q.device)
    consts = _BlockConstants(log_lam, q)
    for i0, i1 in _blocks(n, block):
        c = consts(i1 - i0)
        qi, ki, vi = q[..., i0:i1, :], k[..., i0:i1, :], v[..., i0:i1, :]
        o = torch.matmul(torch.matmul(qi, ki.transpose(-2, -1)) * c["D"], vi)  # intra: left product
        if i0 > 0:  # inter: right product with the state of all earlier blocks
            o = o + _scale(torch.matmul(qi, kv), c["q_inter"])
        out[..., i0:i1, :] = o
        if i1 < n:  # state update (not needed after the last block)
            kv = _decayed_add(kv, c["block"], torch.matmul(_scale(ki, c["k_state"]).transpose(-2, -1), vi))
    return out


def tiled_backward(q: Tensor, k: Tensor, v: Tensor, do: Tensor, log_lam: Tensor | None,
                   block: int) -> tuple[Tensor, Tensor, Tensor]:
    """Algorithm 2: dQ by a forward block loop (state KV), dK and dV by a reverse block
    loop (state dKV), intra-block parts by masked left products."""
    n, d, e = q.shape[-2], q.shape[-1], v.shape[-1]
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    blocks = _blocks(n, block)
    consts = _BlockConstants(log_lam, q)
    kv = torch.zeros(*q.shape[:-2], d, e, dtype=q.dtype, device=q.device)
    for i0, i1 in blocks:  # dQ_t = sum_{s<=t} lambda^(t-s) (dO_t . v_s) k_s
        c = consts(i1 - i0)
        qi, ki, vi, doi = q[..., i0:i1, :], k[..., i0:i1, :], v[..., i0:i1, :], do[..., i0:i1, :]
        g = torch.matmul(torch.matmul(doi, vi.transpose(-2, -1)) * c["D"], ki)
        if i0 > 0:
            g = g + _scale(torch.matmul(doi, kv.transpose(-2, -1)), c["q_inter"])
        dq[..., i0:i1, :] = g
        if i1 < n:
            kv = _decayed_add(kv, c["block"], torch.matmul(_scale(ki, c["k_state"]).transpose(-2, -1), vi))
    dkv = torch.zeros(*q.shape[:-2], d, e, dtype=q.dtype, device=q.device)
    for i0, i1 in reversed(blocks):  # anti-causal: later queries reach earlier keys/values
        c = consts(i1 - i0)
        qi, ki, vi, doi = q[..., i0:i1, :], k[..., i0:i1, :], v[..., i0:i1, :], do[..., i0:i1, :]
        gk = torch.matmul(torch.matmul(vi, doi.transpose(-2, -1)) * c["Dt"], qi)  # lambda^(t-s), t >= s
        gv = torch.matmul(torch.matmul(ki, qi.transpose(-2, -1)) * c["Dt"], doi)
        if i1 < n:  # contributions of all later blocks through dKV, weighted lambda^(m-s)
            gk = gk + _scale(torch.matmul(vi, dkv.transpose(-2, -1)), c["k_inter"])
            gv = gv + _scale(torch.matmul(ki, dkv), c["k_inter"])
        dk[..., i0:i1, :], dv[..., i0:i1, :] = gk, gv
        if i0 > 0:
            dkv = _decayed_add(dkv, c["block"], torch.matmul(_scale(qi, c["q_state"]).transpose(-2, -1), doi))
    return dq, dk, dv


class _LightningAttention2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, log_lam, block):
        ctx.save_for_backward(q, k, v)
        ctx.log_lam, ctx.block = log_lam, block
        return tiled_forward(q, k, v, log_lam, block)

    @staticmethod
    def backward(ctx, do):
        q, k, v = ctx.saved_tensors
        dq, dk, dv = tiled_backward(q, k, v, do.contiguous(), ctx.log_lam, ctx.block)
        return dq, dk, dv, None, None


def lightning_attention(q: Tensor, k: Tensor, v: Tensor, decay: float | Tensor | None = None,
                        block_size: int = BLOCK) -> Tensor:
    """Causal (decayed) linear attention ``[(Q K^T) * M] V`` by Lightning Attention-2's
    tiled forward and backward. ``q, k``: (..., n, d); ``v``: (..., n, e); ``decay``: None
    (lambda = 1), a float, or one value per leading index (e.g. per head, shape (H,))."""
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    log_lam = _log_decay(decay, q)
    return _LightningAttention2.apply(q, k, v, log_lam, int(block_size))


def block_flops(n: int, d: int, e: int, block: int) -> int:
    """Multiply-adds x 2 of the tiled forward for one sequence and head: per block
    (m rows) Q K^T (m^2 d), times V (m^2 e), Q KV (m d e) and the state update (m d e)."""
    total = 0
    for i0, i1 in _blocks(n, block):
        m = i1 - i0
        total += 2 * (m * m * d + m * m * e) + (2 * m * d * e if i0 > 0 else 0) + (2 * m * d * e if i1 < n else 0)
    return total


def naive_flops(n: int, d: int, e: int) -> int:
    """The masked O(n^2) form: Q K^T (n^2 d) and times V (n^2 e), multiply-adds x 2."""
    return 2 * n * n * (d + e)
