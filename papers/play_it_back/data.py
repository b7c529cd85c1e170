"""Data for Play It Back.

* ``fine_clicks``: the cpu analogue. Each clip is background noise plus one short event, a
  2-kHz carrier gated into pips; the class is the pip spacing (3 ms vs 5 ms by default).
  The pip length is 40% of the spacing (equal duty cycle, so equal mean energy) and every
  interval is jittered by up to ``jitter`` of the spacing, so a frame sampled every 16 ms
  sees an on/off value with the same probability for both classes and the aliased
  periodicity of a coarse frame train is smeared: the spacing shows in the envelope only
  at a hop well below the spacing.
* ``prepared``: the real datasets (audioset, vggsound, epic_sounds) and their fixtures, read
  from the common ``prepared/{train,test}.csv`` lists (see data_scripts/_sound_events.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from repro.training import SeededRandomSampler

# --------------------------------------------------------------------------- fine clicks


def pip_train(sr: int, dur: float, spacing: float, rng: np.random.Generator, *, jitter: float = 0.15,
              duty: float = 0.4, carrier: float = 2000.0) -> np.ndarray:
    """A carrier gated on for ``duty * spacing`` at onsets whose intervals are
    ``spacing * (1 + U(-jitter, jitter))``; the first onset has a random phase."""
    n = int(round(dur * sr))
    gate = np.zeros(n)
    t = rng.uniform(0, spacing)
    pip = int(round(duty * spacing * sr))
    while t * sr < n:
        i = int(round(t * sr))
        gate[i:i + pip] = 1.0
        t += spacing * (1 + rng.uniform(-jitter, jitter))
    return gate * np.sin(2 * np.pi * carrier * np.arange(n) / sr + rng.uniform(0, 2 * np.pi))


def fine_clicks(n: int, seed: int, *, sr: int, clip_secs: float, spacings_ms: tuple[float, ...],
                event_secs: float, jitter: float, noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(waves (n, L) float32, labels (n,), event onsets (n,) in samples); balanced classes."""
    rng = np.random.default_rng(seed)
    length = int(round(clip_secs * sr))
    waves = np.empty((n, length), dtype=np.float32)
    labels = np.arange(n) % len(spacings_ms)
    rng.shuffle(labels)
    onsets = np.empty(n, dtype=np.int64)
    for i in range(n):
        x = noise * rng.standard_normal(length)
        ev = pip_train(sr, event_secs, spacings_ms[labels[i]] / 1000, rng, jitter=jitter) * rng.uniform(0.3, 1.0)
        on = int(rng.integers(int(0.05 * sr), length - len(ev) - int(0.05 * sr)))
        x[on:on + len(ev)] += ev
        waves[i], onsets[i] = x, on
    return torch.from_numpy(waves), torch.from_numpy(labels).long(), torch.from_numpy(onsets)


# --------------------------------------------------------------------------- prepared lists


def read_list(path: Path) -> list[tuple[str, float, float, list[int]]]:
    with open(path, newline="") as fh:
        return [(r["path"], float(r["start_s"]), float(r["end_s"]), [int(x) for x in r["labels"].split(";") if x])
                for r in csv.DictReader(fh)]


def num_classes(root: Path) -> int:
    with open(root / "prepared" / "classes.csv", newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


class AudioList(Dataset):
    """Clips of a prepared list: mono, resampled to ``sr`` (torchaudio), the annotated
    span (or the whole file), centre-cropped or zero-padded to ``clip_secs``."""

    def __init__(self, root: Path, split: str, *, sr: int, clip_secs: float, n_classes: int, multilabel: bool,
                 limit: int = 0) -> None:
        self.root, self.sr, self.len = root, sr, int(round(clip_secs * sr))
        self.items = read_list(root / "prepared" / f"{split}.csv")
        if limit:
            self.items = self.items[:limit]
        self.n_classes, self.multilabel = n_classes, multilabel

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> torch.Tensor:
        import soundfile as sf
        import torchaudio

        path, s, e, _ = self.items[i]
        info = sf.info(str(self.root / path))
        a = int(s * info.samplerate)
        b = int(e * info.samplerate) if e > s else info.frames
        x, fsr = sf.read(str(self.root / path), start=a, stop=b, dtype="float32", always_2d=True)
        x = torch.from_numpy(x.mean(1))
        if fsr != self.sr:
            x = torchaudio.functional.resample(x, fsr, self.sr)
        if x.numel() >= self.len:
            off = (x.numel() - self.len) // 2
            return x[off:off + self.len]
        return torch.nn.functional.pad(x, (0, self.len - x.numel()))

    def __getitem__(self, i: int):
        labels = self.items[i][3]
        if self.multilabel:
            y = torch.zeros(self.n_classes, dtype=torch.long)
            y[labels] = 1
        else:
            y = torch.tensor(labels[0], dtype=torch.long)
        return self.load(i), y


# --------------------------------------------------------------------------- datamodule


def _lightning():
    import lightning as L

    return L


class PlayItBackData(_lightning().LightningDataModule):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = torch.initial_seed()  # the run seed (the runner seeds before building)
        self.train = self.val = self.test = None

    def setup(self, stage: str | None = None) -> None:
        cfg = self.cfg
        if self.train is not None:
            return
        if cfg.task == "fine_clicks":
            kw = dict(sr=cfg.sample_rate, clip_secs=cfg.clip_secs, spacings_ms=tuple(cfg.spacings_ms),
                      event_secs=cfg.event_secs, jitter=cfg.jitter)
            self.train = TensorDataset(*fine_clicks(cfg.n_train, cfg.data_seed, **kw)[:2])
            self.val = TensorDataset(*fine_clicks(cfg.n_val, cfg.data_seed + 1, **kw)[:2])
            self.test = TensorDataset(*fine_clicks(cfg.n_test, cfg.data_seed + 2, **kw))  # + onsets (diagnostic)
            return
        root = Path(cfg.data_dir)
        n = num_classes(root)
        if n != cfg.num_classes:
            raise ValueError(f"{root} has {n} classes but num_classes={cfg.num_classes}: pass --set num_classes={n}")
        kw = dict(sr=cfg.sample_rate, clip_secs=cfg.clip_secs, n_classes=n, multilabel=cfg.multilabel)
        self.train = AudioList(root, "train", limit=cfg.n_train, **kw)
        self.test = AudioList(root, "test", limit=cfg.n_test, **kw)
        self.val = self.test if not cfg.n_val else AudioList(root, "test", limit=cfg.n_val, **kw)

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.cfg.batch_size, num_workers=self.cfg.num_workers,
                          sampler=SeededRandomSampler(len(self.train), self.seed))

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.cfg.batch_size, num_workers=self.cfg.num_workers)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=self.cfg.batch_size, num_workers=self.cfg.num_workers)
