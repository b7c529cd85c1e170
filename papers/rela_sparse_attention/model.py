"""Rectified Linear Attention (ReLA; Zhang, Titov & Sennrich, "Sparse Attention with
Linear Units", EMNLP 2021, arXiv 2104.07012), and the sparse baselines it is compared to.

The delta over softmax attention (paper, Sec. 3 and Figure 1):

* scores: ``ReLU(Q K^T / sqrt(d_h))`` replaces ``softmax(Q K^T / sqrt(d_h))``: the weights are
  not a distribution; every negative score is exactly zero (sparsity), and a query whose
  scores are all negative attends to nothing ("null attention").
* output normalisation: the attention output of all heads, concatenated, passes through
  RMSNorm (Zhang & Sennrich 2019) before the output projection, ``LN(ReLU(.) V)``, to keep
  its scale stable now that the weights no longer sum to one.
* ReLA-g: a gate on the normalised output. We follow the authors' released code
  (bzhangGo/zero, ``modules/rela.py``, ``gated_rms_norm``):
  ``o' = g * o / sqrt(mean(o^2) + eps) * sigmoid(w * o)`` with a gain ``g`` (init 1) and an
  element-wise gate vector ``w`` (TF's default Glorot-uniform init for a vector of size d,
  U(+-sqrt(3/d))). Masked keys get weight 0 (the code multiplies masked scores by 0
  before the ReLU).
* ReLA-i (RMSNorm without gate, with a special initialisation of the gain) is not
  implemented: the initialisation could not be read from the paper text here (README).

Implementation: ``ReLAKernel`` is an ``nn.Module`` with the shared attention-kernel
signature ``fn(q, k, v, mask, causal=..., scale=..., dropout_p=...)``; one instance (its own
RMSNorm/gate parameters) is installed per attention layer of ``TransformerSeq2Seq``
(``install``), so the shared ``MultiHeadAttention`` keeps its projections, caching for
incremental decoding and head masks. ``rela_reference`` is a loop-by-loop reference for
the equivalence tests. ``ProbKernel`` gives recorded softmax / sparsemax / 1.5-entmax
weights (the paper's baselines; ``entmax`` package) with the same interface.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.attention import MultiHeadAttention, causal_mask, softmax_weights
from repro.blocks.seq2seq import TransformerSeq2Seq


def _allowed(q: Tensor, k: Tensor, mask: Tensor | None, causal: bool) -> Tensor | None:
    """Boolean ``(..., Lq, Lk)``-broadcastable mask of the keys each query may see."""
    allowed = None
    if causal:
        allowed = causal_mask(q.shape[-2], k.shape[-2], q.device)
    if mask is not None:
        if mask.dtype != torch.bool:
            mask = torch.isfinite(mask) & (mask > -1e4)  # an additive mask: -inf / large negative = masked
        allowed = mask if allowed is None else (allowed & mask)
    return allowed


def rela_weights(q: Tensor, k: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                 scale: float | None = None) -> Tensor:
    """ReLU(q k^T * scale), with masked keys set to 0 (Sec. 3, Eq. for ReLA)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    w = F.relu(torch.matmul(q, k.transpose(-2, -1)) * scale)
    allowed = _allowed(q, k, mask, causal)
    return w if allowed is None else w.masked_fill(~allowed, 0.0)


class GatedRMSNorm(nn.Module):
    """RMSNorm over the last dimension with an optional element-wise sigmoid gate
    (``gate=True``: ReLA-g as in the authors' ``gated_rms_norm``)."""

    def __init__(self, dim: int, gate: bool = True, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))
        self.gate = nn.Parameter(torch.empty(dim).uniform_(-math.sqrt(3.0 / dim), math.sqrt(3.0 / dim))) \
            if gate else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.scale * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y * torch.sigmoid(self.gate * x) if self.gate is not None else y


class ReLAKernel(nn.Module):
    """ReLU attention + RMSNorm(+gate) over the concatenated heads, as an attention
    kernel: ``(B, H, Lq, d) -> (B, H, Lq, d)``. ``record=True`` keeps the last weights."""

    def __init__(self, dim: int, gate: bool = True, eps: float = 1e-8) -> None:
        super().__init__()
        self.norm = GatedRMSNorm(dim, gate=gate, eps=eps)
        self.record = False
        self.last_weights: Tensor | None = None

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                scale: float | None = None, dropout_p: float = 0.0) -> Tensor:
        w = rela_weights(q, k, mask, causal=causal, scale=scale)
        if self.record:
            self.last_weights = w.detach()
        if dropout_p > 0.0:
            w = F.dropout(w, dropout_p)
        o = torch.matmul(w, v)  # (B, H, Lq, d)
        b, h, n, d = o.shape
        o = self.norm(o.transpose(1, 2).reshape(b, n, h * d))
        return o.view(b, n, h, d).transpose(1, 2)


class ProbKernel(nn.Module):
    """Normalised attention with a recorded weight matrix: ``softmax``, ``sparsemax`` or
    ``entmax15`` (Peters et al. 2019, the paper's sparse baselines; ``entmax`` package)."""

    def __init__(self, kind: str = "softmax") -> None:
        super().__init__()
        if kind not in ("softmax", "sparsemax", "entmax15"):
            raise ValueError(f"unknown normaliser {kind!r}")
        self.kind = kind
        self.record = False
        self.last_weights: Tensor | None = None

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                scale: float | None = None, dropout_p: float = 0.0) -> Tensor:
        if self.kind == "softmax":
            w = softmax_weights(q, k, mask, causal=causal, scale=scale)
        else:
            import entmax

            scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
            s = torch.matmul(q, k.transpose(-2, -1)) * scale
            allowed = _allowed(q, k, mask, causal)
            if allowed is not None:
                s = s.masked_fill(~allowed, -1e9)  # finite: entmax's sort-based solver needs it
            fn = entmax.sparsemax if self.kind == "sparsemax" else entmax.entmax15
            w = fn(s.float(), dim=-1).to(q.dtype)
        if self.record:
            self.last_weights = w.detach()
        if dropout_p > 0.0:
            w = F.dropout(w, dropout_p)
        return torch.matmul(w, v)


def attention_layers(net: TransformerSeq2Seq) -> dict[str, list[MultiHeadAttention]]:
    """The attention modules of each kind, in layer order."""
    return {"encoder": [b.attn for b in net.encoder], "decoder": [b.attn for b in net.decoder],
            "cross": [b.cross for b in net.decoder]}


def install(net: TransformerSeq2Seq, attention: str) -> None:
    """Give every attention layer its kernel: ``softmax`` (the shared SDPA path),
    ``rela`` (ReLA-g, one kernel with its own parameters per layer), ``rela_nogate``
    (RMSNorm only, an ablation), ``sparsemax`` or ``entmax15``."""
    for layers in attention_layers(net).values():
        for mha in layers:
            if attention == "softmax":
                continue
            if attention in ("rela", "rela_nogate"):
                mha.attn = ReLAKernel(mha.dim, gate=attention == "rela")
            else:
                mha.attn = ProbKernel(attention)


@contextmanager
def recording(net: TransformerSeq2Seq) -> Iterator[dict[str, list[nn.Module]]]:
    """Record every layer's attention weights (``kernel.last_weights``). Softmax layers
    (the SDPA path, which returns no weights) are swapped for a recorded softmax kernel of
    the same function for the duration."""
    saved, kernels = [], {}
    for kind, layers in attention_layers(net).items():
        kernels[kind] = []
        for mha in layers:
            if not isinstance(mha.attn, (ReLAKernel, ProbKernel)):
                saved.append((mha, mha.attn))
                mha.attn = ProbKernel("softmax")
            mha.attn.record = True
            kernels[kind].append(mha.attn)
    try:
        yield kernels
    finally:
        for ks in kernels.values():
            for k in ks:
                k.record, k.last_weights = False, None
        for mha, fn in saved:
            mha._modules.pop("attn", None)  # the recorded kernel was registered as a child module
            mha.attn = fn


# --------------------------------------------------------------------------- references
def rela_reference(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, norm: GatedRMSNorm,
                   scale: float | None = None) -> Tensor:
    """Loop-by-loop ReLA for tests (differentiable): for every batch element, query
    position and head, ``sum_j max(0, q.k_j * scale) v_j`` over the allowed keys; then the
    gated RMSNorm over the concatenated heads, one position at a time.
    ``allowed``: ``(B, Lq, Lk)`` booleans."""
    b, h, lq, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    rows = []
    for bi in range(b):
        per_pos = []
        for i in range(lq):
            heads = []
            for hi in range(h):
                acc = torch.zeros(d, dtype=q.dtype)
                for j in range(k.shape[2]):
                    if allowed[bi, i, j]:
                        s = (q[bi, hi, i] * k[bi, hi, j]).sum() * scale
                        acc = acc + torch.clamp_min(s, 0.0) * v[bi, hi, j]
                heads.append(acc)
            x = torch.cat(heads)  # the concatenated heads of position i
            y = norm.scale * x / torch.sqrt((x * x).sum() / x.numel() + norm.eps)
            if norm.gate is not None:
                y = y / (1.0 + torch.exp(-norm.gate * x))
            per_pos.append(y)
        rows.append(torch.stack(per_pos))
    return torch.stack(rows).view(b, lq, h, d).transpose(1, 2)


# --------------------------------------------------------------------------- analysis (Sec. 5)
def attention_statistics(net: TransformerSeq2Seq, batches: list[dict[str, Tensor]], forward) -> dict[str, float]:
    """Sparsity rate, null-attention rate and (with gold ``align``) alignment accuracy.

    * sparsity (Sec. 5, "sparsity rate"): the fraction of attention weights that are exactly
      0 among the (query, key) pairs a query may attend (real queries, unmasked keys).
    * null attention: the fraction of (real query, head) rows whose weights are all 0.
    * alignment: for the cross-attention of every decoder layer and head, the fraction of
      real target words (</s> excluded) whose largest weight falls on the gold source word
      (a row of zeros counts as a miss); reported for the best head and averaged over
      heads (the paper's AER figure shows best-head and head-average curves)."""
    from repro.nmt import PAD, decoder_input

    zero = {k: 0 for k in ("encoder", "decoder", "cross")}
    total, nulls, rows = dict(zero), dict(zero), dict(zero)
    hit, n_align = None, 0
    net.eval()
    with torch.no_grad(), recording(net) as kernels:
        for b in batches:
            src, tgt = b["src"], b["tgt"]
            forward(net, b)
            s_real = src != PAD
            t_real = decoder_input(tgt) != PAD
            t_real[:, 0] = True
            qk = {"encoder": (s_real, s_real), "decoder": (t_real, t_real), "cross": (t_real, s_real)}
            for kind, ks in kernels.items():
                q_real, k_real = qk[kind]
                for kern in ks:
                    w = kern.last_weights  # (B, H, Lq, Lk)
                    valid = q_real[:, None, :, None] & k_real[:, None, None, :]
                    if kind == "decoder":
                        valid = valid & causal_mask(w.shape[-2], w.shape[-1], w.device)
                    valid = valid.expand_as(w)
                    total[kind] += int(valid.sum())
                    zero[kind] += int(((w == 0) & valid).sum())
                    row_real = q_real[:, None, :].expand(w.shape[0], w.shape[1], w.shape[2])
                    rows[kind] += int(row_real.sum())
                    nulls[kind] += int(((w * valid).sum(-1).eq(0) & row_real).sum())
            if "align" in b:
                gold = b["align"]  # (B, T) source index per target position, -1 at </s>/padding
                words = gold >= 0
                cross = torch.stack([k.last_weights for k in kernels["cross"]])  # (L, B, H, T, S)
                top = cross.argmax(-1)  # (L, B, H, T)
                null = cross.sum(-1).eq(0)
                good = (top == gold[None, :, None, :]) & ~null & words[None, :, None, :]
                h = good.sum(dim=(1, 3)).double()  # (L, H)
                hit = h if hit is None else hit + h
                n_align += int(words.sum())
    out: dict[str, float] = {}
    all_zero = sum(zero.values())
    out["attn/sparsity"] = all_zero / max(sum(total.values()), 1)
    out["attn/null_rate"] = sum(nulls.values()) / max(sum(rows.values()), 1)
    for kind in total:
        out[f"attn/sparsity_{kind}"] = zero[kind] / max(total[kind], 1)
        out[f"attn/null_rate_{kind}"] = nulls[kind] / max(rows[kind], 1)
    if hit is not None and n_align:
        acc = 100.0 * hit / n_align
        out["align/best_head_acc"] = float(acc.max())
        out["align/mean_head_acc"] = float(acc.mean())
    return out
