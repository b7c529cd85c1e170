"""Inputs for the measurements: random queries, keys and values (the efficiency analysis
needs no dataset). Drawn in float64 from a seeded generator and cast, so the float32
computation and its float64 reference see the same numbers; ``device="meta"`` gives
shape-only tensors for operation counting."""

from __future__ import annotations

import torch


def random_qkv(batch: int, heads: int, n: int, d: int, *, seed: int, dtype=torch.float32, device="cpu",
               requires_grad: bool = False):
    if str(device) == "meta":
        return tuple(torch.empty(batch, heads, n, d, dtype=dtype, device="meta") for _ in range(3))
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(batch, heads, n, d, generator=g, dtype=torch.float64) for _ in range(3)]
    return tuple(t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in out)


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=g, dtype=torch.float64).to(device=t.device, dtype=t.dtype)
