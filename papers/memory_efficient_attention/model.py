"""Chunked attention of Rabe & Staats, "Self-attention Does Not Need O(n^2) Memory"
(arXiv 2112.05682), in PyTorch. Written from the paper's description (Sections 2-4);
the official code is a JAX listing in the paper (Figure 1).

The idea (Section 3): softmax attention for one query is a ratio of two sums,
``sum_i v_i exp(s_i) / sum_i exp(s_i)``. Both sums can be accumulated over chunks of
keys if each chunk also records its maximum logit ``m_c``; chunks are combined by
rescaling with ``exp(m_c - m)`` where ``m`` is the maximum over chunks, which keeps
the computation numerically stable (no exp of a large logit). Queries are processed
in chunks too (Section 4), so the largest live buffer is ``query_chunk x key_chunk``
instead of ``n x n``.

Differentiation (Section 5): every chunk summary is wrapped in activation
checkpointing, so backward stores only the summaries (``qc x d`` per chunk) and
recomputes one chunk's scores at a time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from repro.blocks.attention import register_attention

QUERY_CHUNK = 1024  # the paper's defaults (Figure 1), chosen for minimal runtime impact on TPU
KEY_CHUNK = 4096


def summarize_chunk(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                    causal_at: tuple[int, int, int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One key chunk's contribution (Section 3): unnormalised values, the sum of the
    weights, and the chunk's max logit. ``q`` is already scaled by 1/sqrt(d).

    ``mask`` is this chunk's slice of the caller's mask (a view: no new memory, and
    nothing extra for checkpointing to keep); ``causal_at = (q0, k0, lk - lq)`` places
    the chunk in the full causal pattern. Both are applied inside, so the backward
    recomputation rebuilds them instead of storing a bias per chunk.
    """
    s = torch.matmul(q, k.transpose(-2, -1))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    if causal_at is not None:
        q0, k0, shift = causal_at
        qi = torch.arange(q0, q0 + s.shape[-2], device=s.device)[:, None]
        kj = torch.arange(k0, k0 + s.shape[-1], device=s.device)[None, :]
        s = s.masked_fill(kj > qi + shift, float("-inf"))
    m = s.amax(dim=-1, keepdim=True).detach()  # a constant for the gradient, as in the paper
    # A chunk whose keys are all masked has m = -inf; use 0 inside the exp so its weights
    # are exp(-inf) = 0 instead of NaN. The true -inf is kept for the combination step.
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        w = torch.exp(s - m_safe)
    else:  # inference: reuse the score buffer, as XLA's fusion does for the paper's JAX code
        w = s.sub_(m_safe).exp_()
    return torch.matmul(w, v), w.sum(dim=-1), m.squeeze(-1)


def query_chunk_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, q0: int,
                          lq: int, key_chunk: int, use_checkpoint: bool) -> Tensor:
    """Attention of one query chunk over all keys, key chunk by key chunk (Section 4)."""
    lk = k.shape[-2]
    values, weights, maxes = [], [], []
    for k0 in range(0, lk, key_chunk):
        k1 = min(k0 + key_chunk, lk)
        mc = None
        if mask is not None:
            mc = mask[..., q0:q0 + q.shape[-2], k0:k1] if mask.shape[-2] > 1 else mask[..., k0:k1]
        args = (q, k[..., k0:k1, :], v[..., k0:k1, :], mc, (q0, k0, lk - lq) if causal else None)
        if use_checkpoint:
            val, wsum, mx = checkpoint(summarize_chunk, *args, use_reentrant=False)
        else:
            val, wsum, mx = summarize_chunk(*args)
        values.append(val)
        weights.append(wsum)
        maxes.append(mx)
    maxes_t = torch.stack(maxes)  # (chunks, ..., qc)
    global_max = maxes_t.amax(dim=0)
    alpha = torch.exp(maxes_t - global_max)  # rescale each chunk to the common max (Section 3)
    num = sum(val * a.unsqueeze(-1) for val, a in zip(values, alpha))
    den = sum(w * a for w, a in zip(weights, alpha))
    return num / den.unsqueeze(-1)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                      scale: float | None = None, query_chunk: int = QUERY_CHUNK, key_chunk: int = KEY_CHUNK,
                      use_checkpoint: bool | None = None) -> Tensor:
    """Memory-efficient exact softmax attention (the repro attention interface).

    Same semantics as ``torch.nn.functional.scaled_dot_product_attention`` (boolean
    mask True = attend, or an additive float mask; ``causal``). Rows whose keys are all
    masked give NaN, as the reference does.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if use_checkpoint is None:
        use_checkpoint = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    q = q * scale
    lq = q.shape[-2]
    outs = []
    for q0 in range(0, lq, query_chunk):
        q1 = min(q0 + query_chunk, lq)
        outs.append(query_chunk_attention(q[..., q0:q1, :], k, v, mask, causal, q0, lq, key_chunk, use_checkpoint))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


chunked_attention.is_softmax = True  # exact softmax attention, computed in chunks
register_attention("chunked", chunked_attention)
