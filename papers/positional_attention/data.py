"""The algorithmic tasks and the value-generalisation split of the positional-attention
paper (Back de Luca et al., arXiv 2410.01686), following the official generator
(opallab/positional_attention, data.py; our own vectorised code).

Each sample is a length-n sequence of reals. Its value range is itself random: two
uniform draws from [low, high] give a sub-range [a, b], and the n values are uniform
in [a, b]. Training uses [-2, 2]. The test set at scale c uses [-2c, 2c] and, for
c > 1, keeps only sub-ranges that are not contained in the training range (rejection
sampling), so every OOD test sequence leaves [-2, 2]. One "scratchpad" node with
value 0 and target 0 is appended to every sequence and left out of the loss.

Targets: cumulative sum, cumulative min, sorting (not cumulative), cumulative median
(midpoint interpolation), cumulative maximum-sum subarray.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader

from repro.training import SeededRandomSampler, TensorBatches, keep_batch

TASKS = ("sum", "min", "sort", "median", "maxsub")


def sample_ranges(num: int, low: float, high: float, g: torch.Generator,
                  reject: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sub-ranges [lo, hi] of [low, high] (two uniform draws, sorted).
    ``reject=(rl, rh)``: redraw rows whose sub-range lies inside [rl, rh] (OOD test sets;
    skipped when [low, high] is the training range itself, as in the official code)."""
    ends = low + (high - low) * torch.rand(num, 2, generator=g, dtype=torch.float64)
    if reject is not None and (reject[0], reject[1]) != (low, high):
        while True:
            lo, hi = ends.min(dim=1).values, ends.max(dim=1).values
            bad = (lo >= reject[0]) & (hi <= reject[1])
            if not bad.any():
                break
            ends[bad] = low + (high - low) * torch.rand(int(bad.sum()), 2, generator=g, dtype=torch.float64)
    return ends.min(dim=1).values, ends.max(dim=1).values


def sample_values(num: int, n: int, low: float, high: float, g: torch.Generator,
                  reject: tuple[float, float] | None = None) -> torch.Tensor:
    """(num, n) values; each row uniform in its own sub-range (``sample_ranges``)."""
    lo, hi = sample_ranges(num, low, high, g, reject)
    u = torch.rand(num, n, generator=g, dtype=torch.float64)
    return (lo[:, None] + (hi - lo)[:, None] * u).float()


def cumulative_median(x: torch.Tensor) -> torch.Tensor:
    """Median of x[:, :k+1] for every k (mean of the two middle values for even k+1)."""
    return torch.stack([torch.quantile(x[:, : k + 1], 0.5, dim=1, interpolation="midpoint")
                        for k in range(x.shape[1])], dim=1)


def cumulative_max_subarray(x: torch.Tensor) -> torch.Tensor:
    """Largest sum of a non-empty contiguous subarray of x[:, :k+1], for every k (Kadane)."""
    best = torch.empty_like(x)
    cur = x[:, 0].clone()
    best[:, 0] = cur
    for k in range(1, x.shape[1]):
        cur = torch.maximum(x[:, k], cur + x[:, k])
        best[:, k] = torch.maximum(best[:, k - 1], cur)
    return best


def target(task: str, x: torch.Tensor) -> torch.Tensor:
    if task == "sum":
        return torch.cumsum(x, dim=1)
    if task == "min":
        return torch.cummin(x, dim=1).values
    if task == "sort":
        return torch.sort(x, dim=1).values
    if task == "median":
        return cumulative_median(x)
    if task == "maxsub":
        return cumulative_max_subarray(x)
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def make_set(task: str, num: int, n: int, low: float, high: float, g: torch.Generator, scratch: int,
             reject: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of shape (num, n + scratch, 1); scratch nodes are zeros."""
    x = sample_values(num, n, low, high, g, reject)
    y = target(task, x)
    pad = torch.zeros(num, scratch)
    return torch.cat([x, pad], 1)[..., None], torch.cat([y, pad], 1)[..., None]


class ValueGeneralisationData(L.LightningDataModule):
    """Training set on [train_low, train_high]; validation in distribution; one test set
    per scale c in ``test_scales`` on [c * train_low, c * train_high] (rejecting
    sub-ranges inside the training range for c > 1), tagged with its scale index."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = int(torch.initial_seed()) % (2**31) + cfg.data_seed
        self.train = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        c = self.cfg
        g = torch.Generator().manual_seed(self.seed)
        self.train = make_set(c.task, c.train_samples, c.n, c.train_low, c.train_high, g, c.scratch)
        self.val = make_set(c.task, c.test_samples, c.n, c.train_low, c.train_high, g, c.scratch)
        xs, ys, ids = [], [], []
        for i, s in enumerate(c.test_scales):
            x, y = make_set(c.task, c.test_samples, c.n, s * c.train_low, s * c.train_high, g, c.scratch,
                            reject=(c.train_low, c.train_high))
            xs.append(x)
            ys.append(y)
            ids.append(torch.full((len(x),), i, dtype=torch.long))
        self.test = (torch.cat(xs), torch.cat(ys), torch.cat(ids))

    def train_dataloader(self):
        sampler = BatchSampler(SeededRandomSampler(len(self.train[0]), self.seed), self.cfg.batch_size, drop_last=False)
        return DataLoader(TensorBatches(*self.train), batch_sampler=sampler, collate_fn=keep_batch)

    def val_dataloader(self):
        sampler = BatchSampler(range(len(self.val[0])), 1000, drop_last=False)
        return DataLoader(TensorBatches(*self.val), batch_sampler=sampler, collate_fn=keep_batch)

    def test_dataloader(self):
        sampler = BatchSampler(range(len(self.test[0])), 1000, drop_last=False)
        return DataLoader(TensorBatches(*self.test), batch_sampler=sampler, collate_fn=keep_batch)
