"""A small, standard Transformer (pre-norm by default) with a pluggable attention
kernel, for papers whose delta is elsewhere (a task, a loss, an analysis) or inside
the attention function (pass ``attn=`` or swap ``block.attn.attn``).

``forward(..., need_weights=True)`` also returns each layer's attention probabilities
(computed explicitly), which interpretability papers read.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention, sdpa_attention


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: type[nn.Module] = nn.GELU):
        super().__init__(nn.Linear(dim, hidden), activation(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class TransformerBlock(nn.Module):
    """x + Attn(LN(x)), then x + FFN(LN(x)) (``norm_first=True``, pre-norm), or the
    original post-norm order of Vaswani et al. (``norm_first=False``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, *,
                 attn: Callable[..., Tensor] = sdpa_attention, norm_first: bool = True,
                 cross_attention: bool = False, activation: type[nn.Module] = nn.GELU,
                 ffn_dim: int | None = None, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(dim, heads, attn=attn, dropout=attn_dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross = MultiHeadAttention(dim, heads, attn=attn, dropout=attn_dropout) if cross_attention else None
        self.norm_cross = nn.LayerNorm(dim) if cross_attention else None
        self.ffn = FeedForward(dim, ffn_dim or int(dim * mlp_ratio), dropout, activation)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def _sub(self, x: Tensor, norm: nn.Module, fn) -> tuple[Tensor, Tensor | None]:
        h = norm(x) if self.norm_first else x
        out = fn(h)
        weights = None
        if isinstance(out, tuple):
            out, weights = out
        x = x + self.drop(out)
        return (x if self.norm_first else norm(x)), weights

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False, context: Tensor | None = None,
                context_mask: Tensor | None = None, need_weights: bool = False, head_mask: Tensor | None = None,
                cross_head_mask: Tensor | None = None):
        """``head_mask``/``cross_head_mask``: per-head gates of the self-/cross-attention
        (see ``MultiHeadAttention``)."""
        x, w = self._sub(x, self.norm1, lambda h: self.attn(h, mask=mask, causal=causal, need_weights=need_weights,
                                                            head_mask=head_mask))
        if self.cross is not None:
            if context is None:
                raise ValueError("a cross-attention block needs context")
            x, _ = self._sub(x, self.norm_cross, lambda h: self.cross(h, context, mask=context_mask,
                                                                      head_mask=cross_head_mask))
        x, _ = self._sub(x, self.norm2, self.ffn)
        return (x, w) if need_weights else x


def sinusoidal_positions(n: int, dim: int, device=None) -> Tensor:
    """The fixed sinusoidal encoding of Vaswani et al. (2017), Section 3.5."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    angle = pos / torch.pow(10000.0, i / dim)
    pe = torch.zeros(n, dim, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return pe


class TransformerEncoder(nn.Module):
    """Token embedding + positions + ``layers`` blocks + final norm. ``positions``:
    ``learned`` (up to ``max_len``), ``sinusoidal`` or ``none``."""

    def __init__(self, vocab: int, dim: int, heads: int, layers: int, *, max_len: int = 512,
                 positions: Literal["learned", "sinusoidal", "none"] = "learned", mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attn: Callable[..., Tensor] = sdpa_attention, norm_first: bool = True,
                 causal: bool = False) -> None:
        super().__init__()
        self.dim, self.causal, self.positions = dim, causal, positions
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim) if positions == "learned" else None
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_ratio, dropout, attn=attn, norm_first=norm_first) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) * math.sqrt(self.dim) if self.positions == "sinusoidal" else self.embed(tokens)
        n = tokens.shape[1]
        if self.positions == "learned":
            x = x + self.pos(torch.arange(n, device=tokens.device))
        elif self.positions == "sinusoidal":
            x = x + sinusoidal_positions(n, self.dim, tokens.device)
        return self.drop(x)

    def forward(self, tokens: Tensor, mask: Tensor | None = None, need_weights: bool = False):
        """``mask``: boolean key-padding mask ``(B, L)`` (True = real token) or a full
        ``(B, L, L)`` mask. Returns hidden states (and per-layer attention weights)."""
        x = self.embed_tokens(tokens)
        if mask is not None and mask.dim() == 2:
            mask = mask[:, None, None, :]
        weights = []
        for block in self.blocks:
            out = block(x, mask=mask, causal=self.causal, need_weights=need_weights)
            if need_weights:
                x, w = out
                weights.append(w)
            else:
                x = out
        x = self.norm(x)
        return (x, weights) if need_weights else x
