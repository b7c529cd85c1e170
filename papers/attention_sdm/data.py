"""Inputs: random binary patterns (the paper's analysis assumes random pattern addresses
and pointers, Section 1) and noisy queries made by flipping k bits of a stored pattern."""

from __future__ import annotations

import torch


def random_patterns(m: int, n: int, *, seed: int) -> torch.Tensor:
    """m autoassociative patterns in {0,1}^n (addresses = pointers), int64."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (m, n), generator=g, dtype=torch.int64)


def noisy_queries(patterns: torch.Tensor, num: int, flips: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` queries, each a randomly chosen pattern with exactly ``flips`` bits flipped.
    Returns (queries, index of the source pattern)."""
    g = torch.Generator().manual_seed(seed)
    m, n = patterns.shape
    target = torch.randint(0, m, (num,), generator=g)
    q = patterns[target].clone()
    for i in range(num):
        idx = torch.randperm(n, generator=g)[:flips]
        q[i, idx] = 1 - q[i, idx]
    return q, target
