"""The attention interface shared by every paper: ``fn(q, k, v, mask) -> out``.

Shapes follow ``torch.nn.functional.scaled_dot_product_attention``: ``q`` is
``(..., Lq, d)``, ``k`` ``(..., Lk, d)``, ``v`` ``(..., Lk, dv)``; ``mask`` is either a
boolean tensor broadcastable to ``(..., Lq, Lk)`` where ``True`` means "may attend",
or a float tensor added to the logits. The standard softmax path *is* SDPA (fused
kernels on CUDA); ``naive_attention`` is the readable reference every fast path is
tested against.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttentionFn(Protocol):
    def __call__(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
        scale: float | None = None,
    ) -> Tensor: ...


def causal_mask(lq: int, lk: int, device=None) -> Tensor:
    """Boolean (lq, lk) mask, True on and below the diagonal aligned at the end
    (query i attends keys j <= i + lk - lq), as SDPA's ``is_causal`` for lq == lk."""
    i = torch.arange(lq, device=device)[:, None]
    j = torch.arange(lk, device=device)[None, :]
    return j <= i + (lk - lq)


def softmax_weights(q: Tensor, k: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                    scale: float | None = None) -> Tensor:
    """The attention probabilities softmax(q kᵀ · scale + mask), shape (..., Lq, Lk)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], q.device), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return torch.softmax(scores, dim=-1)


def naive_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                    scale: float | None = None, dropout_p: float = 0.0) -> Tensor:
    """softmax(q kᵀ · scale + mask) v, materialising the full score matrix
    (``dropout_p`` drops attention weights, as SDPA does, when > 0)."""
    weights = softmax_weights(q, k, mask, causal=causal, scale=scale)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    return torch.matmul(weights, v)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                   scale: float | None = None, dropout_p: float = 0.0) -> Tensor:
    """Standard softmax attention through PyTorch's fused SDPA (``dropout_p``: attention
    dropout; pass 0 at evaluation)."""
    if causal and mask is not None:
        cm = causal_mask(q.shape[-2], k.shape[-2], q.device)
        mask = (mask & cm) if mask.dtype == torch.bool else mask.masked_fill(~cm, float("-inf"))
        causal = False
    if causal and q.shape[-2] != k.shape[-2]:
        mask, causal = causal_mask(q.shape[-2], k.shape[-2], q.device), False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale,
                                          dropout_p=dropout_p)


# Kernels that compute exactly softmax(q k^T * scale + mask) v, whose probabilities
# ``softmax_weights`` reproduces. Another kernel (linear, ReLU, sparsemax, ...) can give
# ``need_weights=True`` its own weights through a ``weights(q, k, mask, causal=, scale=)``
# attribute, or mark itself ``is_softmax = True`` when it is an exact softmax variant.
naive_attention.is_softmax = True
sdpa_attention.is_softmax = True


def kernel_weights(kernel: Callable[..., Tensor], q: Tensor, k: Tensor, mask: Tensor | None = None, *,
                   causal: bool = False) -> Tensor:
    """The attention weights ``(B, H, Lq, Lk)`` that ``kernel`` applies to ``v``."""
    own = getattr(kernel, "weights", None)
    if callable(own):
        return own(q, k, mask, causal=causal)
    if getattr(kernel, "is_softmax", False):
        return softmax_weights(q, k, mask, causal=causal)
    name = getattr(kernel, "__name__", type(kernel).__name__)
    raise ValueError(
        f"need_weights=True: attention kernel {name!r} is not softmax attention and has no "
        "weights(q, k, mask, causal=) method, so its weights cannot be reported")


_REGISTRY: dict[str, Callable[..., Tensor]] = {
    "softmax": sdpa_attention, "sdpa": sdpa_attention, "naive": naive_attention,
}


def register_attention(name: str, fn: Callable[..., Tensor]) -> None:
    if name in _REGISTRY and _REGISTRY[name] is not fn:
        raise ValueError(f"attention {name!r} is registered already")
    _REGISTRY[name] = fn


def get_attention(name: str) -> Callable[..., Tensor]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown attention {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


class MultiHeadAttention(nn.Module):
    """Multi-head attention with a pluggable kernel ``attn`` (default: SDPA).

    ``forward(x, context=None, mask=None, causal=False)``: self-attention when
    ``context`` is None, cross-attention otherwise. ``mask`` is boolean
    ``(B, Lq, Lk)`` / ``(B, 1, Lq, Lk)`` (True = attend) or additive.

    ``dropout``: attention-weight dropout in training (passed to the kernel as
    ``dropout_p``, so a custom kernel only needs that keyword when ``dropout > 0``).
    ``head_mask``: ``(H,)`` or broadcastable to ``(B, H, 1, 1)``; multiplies each head's
    output before the output projection (the gates ξ_h of Michel et al. 2019, "Are
    Sixteen Heads Really Better than One?", Eq. 3); 0 removes the head.
    ``cache``: a dict for incremental decoding. Self-attention appends this call's
    keys/values to ``cache["k"]``/``cache["v"]`` and attends over all of them;
    cross-attention computes the context's keys/values once and reuses them.
    """

    def __init__(self, dim: int, heads: int, *, attn: Callable[..., Tensor] = sdpa_attention,
                 bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.attn, self.dropout = dim, heads, attn, dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False, need_weights: bool = False, head_mask: Tensor | None = None,
                cache: dict[str, Tensor] | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``need_weights=True`` also returns the attention weights ``(B, H, Lq, Lk)``: softmax
        probabilities computed explicitly for softmax kernels, the kernel's own ``weights``
        for others (:func:`kernel_weights`; an error if it has none)."""
        ctx = x if context is None else context
        q = self.split(self.q_proj(x))
        if cache is not None and context is not None and "k" in cache:
            k, v = cache["k"], cache["v"]  # static keys/values of the encoder output
        else:
            k, v = self.split(self.k_proj(ctx)), self.split(self.v_proj(ctx))
            if cache is not None:
                if context is None and "k" in cache:  # keys/values of the previous steps
                    k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights and getattr(self.attn, "is_softmax", False):
            weights = softmax_weights(q, k, mask, causal=causal)
            out = torch.matmul(F.dropout(weights, p) if p > 0 else weights, v)
        else:
            if need_weights:
                weights = kernel_weights(self.attn, q, k, mask, causal=causal)
            kw = {"dropout_p": p} if p > 0 else {}  # kernels without dropout need not take the keyword
            out = self.attn(q, k, v, mask, causal=causal, **kw)
        if head_mask is not None:
            out = out * (head_mask.view(1, -1, 1, 1) if head_mask.dim() == 1 else head_mask)
        b, h, n, d = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))
        return (out, weights) if need_weights else out
