"""Training harness: the shared config base, the Lightning ``Trainer`` factory, and
the pieces that make runs resumable and deterministic.

Scale follows DESIGN.md: one machine is Lightning on the available devices; beyond
it, Lightning's own strategies through ``--devices/--num-nodes/--strategy``.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import Dataset, Sampler

from .recipe import TrainConfig  # noqa: F401  (re-exported: recipes may import it from here too)


@dataclass
class TrainerOptions:
    """Flags of ``repro run`` that shape the Trainer, recorded in the ledger."""

    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    deterministic: bool = False
    progress: bool | None = None  # None: a rich bar when stdout is a terminal
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
            "strategy": self.strategy, "precision": self.precision, "deterministic": self.deterministic,
        }


class SeededRandomSampler(Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch). Lightning calls ``set_epoch``
    before every epoch, so a resumed run sees exactly the order a straight run sees."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, int(seed) % (2**31), 0  # any int seed (e.g. torch.initial_seed())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class TensorBatches(Dataset):
    """Equal-length tensors served a whole batch at a time: ``__getitems__`` gathers the
    batch with one tensor index instead of collating single rows, so a step's data cost
    is one gather. Give tensors positionally (batches are tuples) or one dict of tensors
    (batches are dicts); use with a batch sampler and ``collate_fn=keep_batch``."""

    def __init__(self, *tensors: torch.Tensor | dict[str, torch.Tensor]) -> None:
        self.named = len(tensors) == 1 and isinstance(tensors[0], dict)
        self.tensors = tensors[0] if self.named else tensors
        first = next(iter(self.tensors.values())) if self.named else self.tensors[0]
        self.n = len(first)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):  # one row (DataLoaders with a batch sampler use __getitems__)
        if self.named:
            return {k: v[i] for k, v in self.tensors.items()}
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx)
        if self.named:
            return {k: v[idx] for k, v in self.tensors.items()}
        return tuple(t[idx] for t in self.tensors)


def keep_batch(batch):
    """``collate_fn`` for ``TensorBatches``: the gathered batch is already collated."""
    return batch


class TokenBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples holding at most ``max_tokens`` tokens each,
    padding included (``len(batch) * max(lengths in batch) <= max_tokens``), as
    fairseq's ``--max-tokens`` batching and the ~25k-token batches of Vaswani et al.
    (2017, Section 5.1, "sentence pairs were batched together by approximate sequence
    length"). Our own code.

    ``lengths[i]``: the cost of example i; pass max(source, target length) so that both
    padded tensors fit. Each epoch sorts by length with ties broken at random, packs
    greedily, and (``shuffle``) shuffles the order of the batches, all from a generator
    seeded by (seed, epoch); Lightning calls ``set_epoch``, so resumed runs see the same
    batches. ``max_sentences`` optionally caps the batch size. An example longer than
    ``max_tokens`` is an error. Single process: under DDP give each rank its own shard.
    """

    def __init__(self, lengths: list[int] | torch.Tensor, max_tokens: int, seed: int = 0, *,
                 max_sentences: int | None = None, shuffle: bool = True) -> None:
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        too_long = (self.lengths > max_tokens).nonzero()[:, 0].tolist()
        if too_long:
            raise ValueError(f"{len(too_long)} examples are longer than max_tokens={max_tokens} "
                             f"(first indices: {too_long[:5]})")
        self.max_tokens, self.max_sentences, self.shuffle = max_tokens, max_sentences, shuffle
        self.seed, self.epoch = int(seed) % (2**31), 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g)
        order = perm[torch.sort(self.lengths[perm], stable=True).indices].tolist()  # by length, random ties
        batches, cur, longest = [], [], 0
        for i in order:
            n = int(self.lengths[i])
            full = self.max_sentences is not None and len(cur) >= self.max_sentences
            if cur and (full or (len(cur) + 1) * max(longest, n) > self.max_tokens):
                batches.append(cur)
                cur, longest = [], 0
            cur.append(i)
            longest = max(longest, n)
        if cur:
            batches.append(cur)
        if self.shuffle:
            batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class RNGStateCheckpoint(Callback):
    """Stores the Python/NumPy/torch RNG states in each checkpoint and restores them on
    resume, so dropout and on-the-fly sampling continue as in an uninterrupted run."""

    # Stored as tensors and plain lists so that checkpoints load with torch.load's safe
    # ``weights_only=True`` default (no pickled NumPy objects).
    def state_dict(self) -> dict[str, Any]:
        version, mt, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": [version, list(mt), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, mt, gauss = state["python"]
        random.setstate((version, tuple(mt), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    from lightning.pytorch import seed_everything as _seed

    _seed(seed, workers=True, verbose=False)


def make_trainer(
    cfg: TrainConfig,
    opts: TrainerOptions,
    unit_dir: Path,
    logger: Any = None,
    callbacks: list[Callback] | None = None,
    **overrides: Any,
) -> Trainer:
    """A Trainer with checkpoints in ``unit_dir/checkpoints`` (``last.ckpt`` every epoch,
    and on an exception or Ctrl-C), a CSV log beside it, and the run's device flags."""
    ckpt_dir = unit_dir / "checkpoints"
    progress = opts.progress if opts.progress is not None else sys.stdout.isatty()
    every = getattr(cfg, "checkpoint_every_n_epochs", 1)
    cbs: list[Callback] = [
        # on Ctrl-C or a crash: a separate file (OnExceptionCheckpoint deletes its own file
        # after a clean finish, so it must not share the rolling checkpoint's name)
        OnExceptionCheckpoint(dirpath=ckpt_dir, filename="interrupted"),
        RNGStateCheckpoint(),
    ]
    if every > 0:  # one rolling checkpoint, overwritten every `every` epochs
        cbs.insert(0, ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, every_n_epochs=every,
                                      enable_version_counter=False))
    if progress:
        cbs.append(RichProgressBar(leave=False))
    cbs.extend(callbacks or [])
    # one CSV log per attempt, so a resumed run keeps the curve from before the interruption
    attempt = len(list(unit_dir.glob("log-*"))) if unit_dir.exists() else 0
    loggers = [CSVLogger(save_dir=unit_dir, name="", version=f"log-{attempt}")]
    if logger is not None:
        loggers.append(logger)
    kwargs = dict(
        accelerator=opts.accelerator,
        devices=opts.devices if opts.devices == "auto" else _int_or_str(opts.devices),
        num_nodes=opts.num_nodes,
        strategy=opts.strategy,
        deterministic=opts.deterministic,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        gradient_clip_val=cfg.gradient_clip_val,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        limit_test_batches=cfg.limit_test_batches,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch,
        log_every_n_steps=cfg.log_every_n_steps,
        callbacks=cbs,
        logger=loggers,
        enable_progress_bar=progress,
        enable_model_summary=False,
        enable_checkpointing=True,
        num_sanity_val_steps=0,
        default_root_dir=unit_dir,
    )
    if opts.precision:
        kwargs["precision"] = opts.precision
    kwargs.update(opts.extra)
    kwargs.update(overrides)
    return Trainer(**kwargs)


def _int_or_str(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        return value


def last_checkpoint(unit_dir: Path) -> Path | None:
    """The newest of the end-of-epoch and the on-interrupt checkpoint, if any."""
    found = [p for p in (unit_dir / "checkpoints" / "last.ckpt", unit_dir / "checkpoints" / "interrupted.ckpt")
             if p.exists()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def fit_and_test(model, datamodule, trainer: Trainer, ckpt_path: Path | None = None) -> dict[str, Any]:
    """Fit (resuming from ``ckpt_path``), then test; returns the metrics and the
    training length actually run."""
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    fit_metrics = scalar_metrics(dict(trainer.callback_metrics))
    tested = trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = dict(fit_metrics)
    for block in tested:
        metrics.update(scalar_metrics(block))
    metrics.update(scalar_metrics(dict(trainer.callback_metrics)))
    info = {
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "train_loss": fit_metrics.get("train/loss"),
        "val_loss": fit_metrics.get("val/loss"),
    }
    return {"metrics": metrics, "training": info}
