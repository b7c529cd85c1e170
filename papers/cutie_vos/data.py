"""Data for Cutie: videos in the DAVIS 2017 layout (real, fixture or our synthetic set).

* ``ensure_synthetic(root, cfg)``: the CPU analogue's videos (``data_scripts/_vos_synth``:
  a textured target, a look-alike distractor crossing it with occlusion), written once
  in the DAVIS layout so that training, inference and vos-benchmark read exactly what a
  real DAVIS run reads.
* ``ClipDataset``: training clips of ``seq_length`` frames (sorted random frames within
  ``max_skip`` of each other, as the official main training samples them), the first
  frame's ground truth plus the next frames' masks for the loss, ``num_objects`` objects
  (padded with empty masks when a video has fewer).
* ``read_video``: one evaluation video at its stored resolution.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from repro.training import SeededRandomSampler


def split_videos(root: Path, split: str) -> list[str]:
    return [v for v in (root / "ImageSets" / "2017" / f"{split}.txt").read_text().split() if v]


def ensure_synthetic(root: Path, cfg) -> Path:
    """Write the synthetic set once (atomically: built in a sibling folder, then renamed)."""
    from data_scripts._vos_synth import write_davis_layout

    if (root / "ImageSets" / "2017" / "val.txt").exists():
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_davis_layout(tmp, {"train": [f"syn-train-{i:03d}" for i in range(cfg.synth_train_videos)],
                             "val": [f"syn-val-{i:03d}" for i in range(cfg.synth_val_videos)]},
                       n_frames=cfg.synth_frames, height=cfg.synth_height, width=cfg.synth_width,
                       seed=cfg.data_seed, second_object_every=cfg.synth_second_object_every)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _frames(root: Path, vid: str) -> list[str]:
    return sorted(p.stem for p in (root / "JPEGImages" / "480p" / vid).glob("*.jpg"))


def _load_rgb(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(im)


def _load_mask(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    im = Image.open(path)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(im).astype(np.int64)


def read_video(root: Path, vid: str, size: tuple[int, int] | None = None):
    """frames (T, 3, H, W) float in [0, 1], first-frame masks (N, H, W), object ids,
    frame names. Objects are the ids present in the first annotated frame (DAVIS)."""
    names = _frames(root, vid)
    frames = np.stack([_load_rgb(root / "JPEGImages" / "480p" / vid / f"{n}.jpg", size) for n in names])
    first = _load_mask(root / "Annotations" / "480p" / vid / f"{names[0]}.png", size)
    ids = [int(i) for i in np.unique(first) if i != 0]
    masks = np.stack([first == i for i in ids]) if ids else np.zeros((0, *first.shape), bool)
    return (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0,
            torch.from_numpy(masks).float(), ids, names)


class ClipDataset(Dataset):
    """``num_clips`` clips, clip ``i`` drawn from a generator seeded by (seed, i)."""

    def __init__(self, root: Path, videos: list[str], *, num_clips: int, seq_length: int, max_skip: int,
                 num_objects: int, crop: int, seed: int, first_only: bool = False) -> None:
        self.root, self.videos = root, videos
        self.frames = {v: _frames(root, v) for v in videos}
        self.num_clips, self.seq_length, self.max_skip = num_clips, seq_length, max_skip
        self.num_objects, self.crop, self.seed, self.first_only = num_objects, crop, seed, first_only

    def __len__(self) -> int:
        return self.num_clips

    def _pick(self, rng: np.random.Generator, n_frames: int) -> list[int]:
        if self.first_only:  # evaluation clips: the first seq_length frames
            return list(range(min(self.seq_length, n_frames)))
        span = min(n_frames, (self.seq_length - 1) * self.max_skip + 1)
        start = int(rng.integers(0, n_frames - span + 1))
        inner = sorted(rng.choice(np.arange(start + 1, start + span), size=self.seq_length - 1, replace=False))
        return [start] + [int(i) for i in inner]

    def __getitem__(self, i: int):
        rng = np.random.default_rng(self.seed * 1_000_003 + i)
        vid = self.videos[i % len(self.videos)] if self.first_only else self.videos[int(rng.integers(len(self.videos)))]
        names = self.frames[vid]
        idx = self._pick(rng, len(names))
        imgs = np.stack([_load_rgb(self.root / "JPEGImages" / "480p" / vid / f"{names[t]}.jpg", None) for t in idx])
        labs = np.stack([_load_mask(self.root / "Annotations" / "480p" / vid / f"{names[t]}.png", None) for t in idx])
        h, w = labs.shape[-2:]
        if self.crop and (h > self.crop or w > self.crop):
            y = int(rng.integers(0, max(h - self.crop, 0) + 1))
            x = int(rng.integers(0, max(w - self.crop, 0) + 1))
            imgs, labs = imgs[:, y:y + self.crop, x:x + self.crop], labs[:, y:y + self.crop, x:x + self.crop]
        ids = [int(k) for k in np.unique(labs[0]) if k != 0]
        if len(ids) > self.num_objects:
            ids = sorted(rng.choice(ids, size=self.num_objects, replace=False).tolist())
        target = np.zeros_like(labs)
        for j, k in enumerate(ids):
            target[labs == k] = j + 1
        first = np.stack([target[0] == j + 1 for j in range(self.num_objects)]).astype(np.float32)
        return {
            "frames": torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 255.0,
            "first_mask": torch.from_numpy(first),
            "labels": torch.from_numpy(np.ascontiguousarray(target[1:])),  # T-1, H, W (0 bg, j+1 object j)
            "num_valid": torch.tensor(len(ids)),
        }


class VOSDataModule(pl.LightningDataModule):
    def __init__(self, cfg, root: Path, seed: int) -> None:
        super().__init__()
        self.cfg, self.root, self.seed = cfg, Path(root), seed

    def setup(self, stage: str | None = None) -> None:
        c = self.cfg
        self.train_set = ClipDataset(self.root, split_videos(self.root, "train"), num_clips=c.train_clips,
                                     seq_length=c.seq_length, max_skip=c.max_skip, num_objects=c.num_objects,
                                     crop=c.crop, seed=self.seed)
        val = split_videos(self.root, "val")
        self.test_set = ClipDataset(self.root, val, num_clips=len(val), seq_length=c.seq_length, max_skip=1,
                                    num_objects=c.num_objects, crop=c.crop, seed=self.seed + 1, first_only=True)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size,
                          sampler=SeededRandomSampler(len(self.train_set), self.seed),
                          num_workers=self.cfg.num_workers, drop_last=True)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=1, num_workers=self.cfg.num_workers)
