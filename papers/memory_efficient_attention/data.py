"""Inputs for the measurements: random queries, keys and values (the paper uses no
dataset). ``logit_scale`` > 1 stretches q and k so that logits reach the hundreds,
the regime where a softmax without max-subtraction overflows (Section 3's
numerical-stability argument)."""

from __future__ import annotations

import torch


def random_qkv(batch: int, heads: int, n: int, d: int, *, seed: int, dtype=torch.float32, device="cpu",
               logit_scale: float = 1.0, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, heads, n, d)
    s = logit_scale ** 0.5
    q, k, v = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    q, k = q * s, k * s
    out = [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (q, k, v)]
    return tuple(out)
