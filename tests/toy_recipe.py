"""A tiny training recipe used by the engine tests (not a paper): linear regression
with dropout, so that resume equivalence exercises RNG restoration too."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance
from repro.training import SeededRandomSampler, TrainConfig


@dataclass(frozen=True)
class ToyConfig(TrainConfig):
    n: int = 256
    dim: int = 8
    dropout: float = 0.1
    max_epochs: int = 4
    batch_size: int = 32
    lr: float = 0.05
    fail: bool = False  # raise inside training (error-path tests)
    sleep_per_batch: float = 0.0  # slow batches for the Ctrl-C test
    interrupt_at_epoch: int = -1  # raise KeyboardInterrupt at the end of this epoch ...
    interrupt_flag: str = ""  # ... once: only while this file does not exist yet (created when raising)
    interrupt_seed: int = -1  # ... and only in the unit of this seed (-1: any)


class ToyModule(L.LightningModule):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, 1))

    def training_step(self, batch, _):
        if self.cfg.fail:
            raise RuntimeError("deliberate failure")
        if self.cfg.sleep_per_batch:
            import time

            time.sleep(self.cfg.sleep_per_batch)
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        self.log("train/loss", loss)
        return loss

    def on_train_epoch_end(self):
        from pathlib import Path

        flag = Path(self.cfg.interrupt_flag) if self.cfg.interrupt_flag else None
        seed_ok = self.cfg.interrupt_seed in (-1, torch.initial_seed())
        if self.current_epoch == self.cfg.interrupt_at_epoch and flag is not None and not flag.exists() and seed_ok:
            flag.touch()
            raise KeyboardInterrupt

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val/loss", nn.functional.mse_loss(self.net(x).squeeze(-1), y))

    def test_step(self, batch, _):
        x, y = batch
        self.log("test/mse", nn.functional.mse_loss(self.net(x).squeeze(-1), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.cfg.lr)


class ToyData(L.LightningDataModule):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(1234)
        w = torch.randn(cfg.dim, generator=g)
        self.x = torch.randn(cfg.n, cfg.dim, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(cfg.n, generator=g)

    def train_dataloader(self):
        ds = TensorDataset(self.x, self.y)
        return DataLoader(ds, batch_size=self.cfg.batch_size, sampler=SeededRandomSampler(len(ds), seed=7))

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[:64], self.y[:64]), batch_size=64)

    def test_dataloader(self):
        return DataLoader(TensorDataset(self.x[:64], self.y[:64]), batch_size=64)


def make_recipe(claims=(), seeds: int = 1, arms=None, derive=None, metrics=("test/mse", "val/loss", "train/loss"),
                **cfg_overrides) -> Recipe:
    cfg = ToyConfig(**cfg_overrides)
    return Recipe(
        paper=Paper(slug="toy", title="Toy", arxiv="", year=2024, authors=("A. Person",)),
        config_cls=ToyConfig,
        profiles={
            "cpu": Profile("cpu", cfg, "toy", claims=tuple(claims), seeds=seeds, arms=arms or {}),
            "smoke": Profile("smoke", cfg, "toy smoke"),
        },
        metrics=tuple(metrics),
        build_model=ToyModule,
        build_data=ToyData,
        derive=derive,
    )


MSE_CLAIM = Claim(
    id="mse", metric="test/mse", reported=0.0, better="lower", bound=False,
    tolerance=Tolerance("abs", 0.5, "assumed", "toy"), source="toy", protocol="toy",
)
