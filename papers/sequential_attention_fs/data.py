"""Data: generated sparse linear-regression problems (for the OMP equivalence) and
scikit-learn's bundled 8x8 digits (for the MLP feature selection; ships with
scikit-learn, no download)."""

from __future__ import annotations

import numpy as np
import torch


def regression_problem(n: int, d: int, k_true: int, noise: float, *, seed: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                         list[int]]:
    """Gaussian design with unit-norm columns (OMP's convention), y = X b* + noise with
    b* supported on ``k_true`` random features (N(0,1) coefficients), y scaled to unit norm.
    float64. Returns (X, y, true support)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=0, keepdim=True)
    support = torch.randperm(d, generator=g)[:k_true]
    beta = torch.zeros(d, dtype=torch.float64)
    beta[support] = torch.randn(k_true, generator=g, dtype=torch.float64)
    signal = X @ beta
    y = signal + noise * signal.norm() / np.sqrt(n) * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y / y.norm(), sorted(int(i) for i in support)


class DigitsData:
    """sklearn ``load_digits`` (1797 images, 64 pixels in 0..16, 10 classes), pixels scaled
    to [0, 1]. Split once with a fixed ``split_seed``: 20 % test (stratified), then 12.5 % of
    the rest for validation (the official ``val_ratio``). ``subset`` caps the training set
    (smoke runs)."""

    def __init__(self, batch_size: int = 256, split_seed: int = 0, shuffle_seed: int = 0, subset: int = 0) -> None:
        self.batch_size, self.split_seed, self.shuffle_seed, self.subset = batch_size, split_seed, shuffle_seed, subset
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = x.astype(np.float32) / 16.0
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=self.split_seed)
        x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.125, stratify=y_tr,
                                                  random_state=self.split_seed)
        if self.subset:
            x_tr, y_tr = x_tr[: self.subset], y_tr[: self.subset]
        for name, (a, b) in {"train": (x_tr, y_tr), "val": (x_va, y_va), "test": (x_te, y_te)}.items():
            self.splits[name] = (torch.from_numpy(a), torch.from_numpy(b).long())

    @property
    def num_features(self) -> int:
        return 64

    @property
    def num_classes(self) -> int:
        return 10
