"""The nearest-neighbour target of Amsel, Yehudai & Bruna (Section 3/4 of arXiv 2407.16153):
a query ``y`` and a context ``x_1..x_N``, all i.i.d. uniform on the unit sphere S^{d-1};
the target is the context vector most aligned with the query,
``f(y, X) = x_{j*}``, ``j* = argmax_j <y, x_j>``.

Samples are drawn once per (split, seed) from a seeded generator, so every arm of a
seed sees the same training and test sets.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, TensorDataset

from repro.training import SeededRandomSampler, TensorBatches, keep_batch


def sphere(shape: tuple[int, ...], d: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform samples on S^{d-1}: normalised standard Gaussians (rotation invariant)."""
    x = torch.randn(*shape, d, generator=generator)
    return x / x.norm(dim=-1, keepdim=True)


def nearest_neighbour_target(y: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """x_{j*} with j* = argmax_j <y, x_j>; y: (B, d), X: (B, N, d) -> (B, d)."""
    j = torch.einsum("bd,bnd->bn", y, X).argmax(dim=-1)
    return X[torch.arange(X.shape[0]), j]


def make_split(n: int, d: int, context: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = sphere((n,), d, g)
    X = sphere((n, context), d, g)
    return TensorDataset(y, X, nearest_neighbour_target(y, X))


class NearestNeighbourData(L.LightningDataModule):
    """Train/val/test splits of the target; the seed of the run (set by the engine
    before ``build_data``) picks the samples."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = int(torch.initial_seed()) % (2**31) + cfg.data_seed
        self.train = self.val = self.test = None

    def setup(self, stage: str | None = None) -> None:
        c = self.cfg
        if self.train is None:
            # distinct streams per split: the test set never overlaps the training set's draws
            self.train = make_split(c.train_samples, c.d, c.context, self.seed * 3 + 0)
            self.val = make_split(c.val_samples, c.d, c.context, self.seed * 3 + 1)
            self.test = make_split(c.test_samples, c.d, c.context, self.seed * 3 + 2)

    def train_dataloader(self):
        # the engine's resume-exact shuffling: Lightning calls set_epoch on batch_sampler.sampler
        sampler = BatchSampler(SeededRandomSampler(len(self.train), self.seed), self.cfg.batch_size, drop_last=True)
        return DataLoader(TensorBatches(*self.train.tensors), batch_sampler=sampler, collate_fn=keep_batch)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=len(self.val))

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=4096)
