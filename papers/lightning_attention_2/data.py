"""Inputs for the measurements: random queries, keys and values (the kernel claims
need no dataset). Drawn in float64 from a seeded generator, then cast, so that the
float32 computation and its float64 reference see the same numbers."""

from __future__ import annotations

import torch


def random_qkv(batch: int, heads: int, n: int, d: int, e: int, *, seed: int, dtype=torch.float32, device="cpu",
               scale: float = 1.0, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, n, d, generator=g, dtype=torch.float64) * scale
    k = torch.randn(batch, heads, n, d, generator=g, dtype=torch.float64) * scale
    v = torch.randn(batch, heads, n, e, generator=g, dtype=torch.float64)
    return tuple(t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (q, k, v))


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded upstream gradient with the shape of ``t`` (float64 draw, cast)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=g, dtype=torch.float64).to(device=t.device, dtype=t.dtype)
