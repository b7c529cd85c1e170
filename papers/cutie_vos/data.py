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
                 num_objects: int, crop: int, seed: int, first_only: bool = False, res: str = "480p") -> None:
        self.root, self.videos, self.res = root, videos, res  # res: "480p" (DAVIS) or "" (YouTube-VOS layout)
        self.frames = {v: sorted(p.stem for p in (root / "JPEGImages" / res / v).glob("*.jpg")) for v in videos}
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
        imgs = np.stack([_load_rgb(self.root / "JPEGImages" / self.res / vid / f"{names[t]}.jpg", None) for t in idx])
        labs = np.stack([_load_mask(self.root / "Annotations" / self.res / vid / f"{names[t]}.png", None)
                         for t in idx])
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


# Main-training sets (official cutie/config/data/datasets.yaml): frame interval of the stored
# frames (the per-set max skip is max_skip // interval) and oversampling multiplier.
MAIN_SETS = {"davis2017": {"interval": 2, "multiplier": 2}, "youtube_vos2019": {"interval": 5, "multiplier": 1}}


class MixedClips(Dataset):
    """Main-training clips from several sets: clip ``i`` draws its set with a generator
    seeded by (seed, i), with probability proportional to the set's frame count times its
    multiplier (the official sampler draws seed frames uniformly over all frames times the
    multipliers; here a set, then a video uniformly within it), then the set's clip ``i``."""

    def __init__(self, sources: list[tuple[ClipDataset, int]], num_clips: int, seed: int) -> None:
        self.sources, self.num_clips, self.seed = [s for s, _ in sources], num_clips, seed
        w = np.array([mult * sum(len(f) for f in s.frames.values()) for s, mult in sources], dtype=float)
        self.p = w / w.sum()

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, i: int):
        k = int(np.random.default_rng([self.seed, i, 17]).choice(len(self.sources), p=self.p))
        return self.sources[k][i]


class _ClipData(pl.LightningDataModule):
    """Shared loaders of the training stages: ``setup`` fills ``train_set`` (shuffled by the
    run's seed, resume-exact) and ``test_set`` (one clip per step)."""

    def __init__(self, cfg, root: Path, seed: int) -> None:
        super().__init__()
        self.cfg, self.root, self.seed = cfg, Path(root), seed

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size,
                          sampler=SeededRandomSampler(len(self.train_set), self.seed),
                          num_workers=self.cfg.num_workers, drop_last=True)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=1, num_workers=self.cfg.num_workers)


class VOSDataModule(_ClipData):
    """``root``: the DAVIS-layout set (real DAVIS 2017 trainval, the fixture, or the CPU
    analogue's synthetic set). ``youtube``: a prepared YouTube-VOS 2019 root whose ``train/``
    joins main training (the paper's DAVIS + YouTube-VOS); with real data (``cfg.source ==
    "davis"``) each set's max skip is divided by its frame interval, as in the official code."""

    def __init__(self, cfg, root: Path, seed: int, youtube: Path | None = None) -> None:
        super().__init__(cfg, root, seed)
        self.youtube = Path(youtube) if youtube is not None else None

    def setup(self, stage: str | None = None) -> None:
        c = self.cfg
        real = c.source == "davis"
        skip = max(1, c.max_skip // MAIN_SETS["davis2017"]["interval"]) if real else c.max_skip
        davis = ClipDataset(self.root, split_videos(self.root, "train"), num_clips=c.train_clips,
                            seq_length=c.seq_length, max_skip=skip, num_objects=c.num_objects, crop=c.crop,
                            seed=self.seed)
        self.train_set = davis
        if self.youtube is not None:
            yt_root = self.youtube / "train"
            vids = sorted(p.name for p in (yt_root / "Annotations").iterdir() if p.is_dir())
            yt = ClipDataset(yt_root, vids, num_clips=c.train_clips, seq_length=c.seq_length,
                             max_skip=max(1, c.max_skip // MAIN_SETS["youtube_vos2019"]["interval"]),
                             num_objects=c.num_objects, crop=c.crop, seed=self.seed + 7919, res="")
            self.train_set = MixedClips([(davis, MAIN_SETS["davis2017"]["multiplier"]),
                                         (yt, MAIN_SETS["youtube_vos2019"]["multiplier"])], c.train_clips, self.seed)
        val = split_videos(self.root, "val")
        self.test_set = ClipDataset(self.root, val, num_clips=len(val), seq_length=c.seq_length, max_skip=1,
                                    num_objects=c.num_objects, crop=c.crop, seed=self.seed + 1, first_only=True)


# --------------------------------------------------------------------------- static-image pre-training

_IM_MEAN = (124 / 255, 116 / 255, 104 / 255)  # fill of the official affine transforms


def _jitter(img: torch.Tensor, rng: np.random.Generator, b: float, c: float, s: float, h: float) -> torch.Tensor:
    import torchvision.transforms.functional as TF

    img = TF.adjust_brightness(img, float(rng.uniform(1 - b, 1 + b)))
    img = TF.adjust_contrast(img, float(rng.uniform(1 - c, 1 + c)))
    img = TF.adjust_saturation(img, float(rng.uniform(1 - s, 1 + s)))
    if h > 0:
        img = TF.adjust_hue(img, float(rng.uniform(-h, h)))
    return img.clamp(0, 1)


def _affine(img: torch.Tensor, mask: torch.Tensor, angle: float, scale: float, shear: float):
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    kw = {"angle": angle, "translate": [0, 0], "scale": scale, "shear": [shear, 0.0]}
    return (TF.affine(img, interpolation=InterpolationMode.BILINEAR, fill=list(_IM_MEAN), **kw),
            TF.affine(mask, interpolation=InterpolationMode.NEAREST, fill=[0.0], **kw))


def tps_warp(img: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, *, scale: float = 0.02,
             n_ctrl_pts: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """A random thin-plate-spline warp of an image (3, H, W) and its mask (1, H, W) (the official
    ``cutie/dataset/tps.py`` ``random_tps_warp``, scale 0.02, 12 control points): control points at
    distinct random row/column positions in normalised [0, 1]^2 coordinates, each displaced by
    N(0, scale); the output pixel at ``p`` samples the input at ``p + f(p)``, where ``f`` is the
    thin-plate spline (kernel r^2 log r plus an affine part, exact interpolation) through the
    displaced points with values ``source - displaced`` (the ``thinplate`` package's construction:
    ``tps_theta_from_points(c_src, c_dst)`` + ``tps_grid``). Bilinear for the image, nearest for the
    mask, zeros outside (``cv2.remap``'s defaults). Our own code with scipy's RBF interpolator."""
    import torch.nn.functional as F
    from scipy.interpolate import RBFInterpolator

    h, w = mask.shape[-2:]
    ys = rng.choice(h, size=n_ctrl_pts, replace=False) / h
    xs = rng.choice(w, size=n_ctrl_pts, replace=False) / w
    c_src = np.stack([xs, ys], 1)
    c_dst = c_src + rng.normal(scale=scale, size=c_src.shape)
    tps = RBFInterpolator(c_dst, c_src - c_dst, kernel="thin_plate_spline", degree=1)
    gy, gx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    src = (pts + tps(pts)).reshape(h, w, 2)
    grid = torch.from_numpy(2.0 * src - 1.0).float()[None]  # x, y in [-1, 1] (align_corners=False)
    im = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    m = F.grid_sample(mask[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return im, m


def synthetic_sequence(img: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, *, seq_length: int,
                       size: int, tps_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A pseudo video from one image (3, H, W) in [0, 1] and its mask (1, H, W) in {0, 1}
    (the paper's pre-training data; transform ranges from the official
    ``SyntheticVideoDataset``): one sequence-level transform shared by all frames (scale
    0.5-2, horizontal flip, colour jitter 0.1/0.05/0.05/0.05, 5% greyscale), then per
    frame an independent affine deformation (rotation +-20 deg, scale 0.5-2, shear +-10 deg),
    resize of the shorter side to ``size``, a random ``size`` crop (padded with the image
    mean) and a per-frame colour jitter 0.1/0.05/0.05, then with probability ``tps_prob`` (official
    0.33) a thin-plate-spline warp (:func:`tps_warp`). Returns frames (T, 3, S, S) and masks (T, S, S)
    in {0, 1}. With ``tps_prob=0`` no random number is drawn for it."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    seq_img, seq_mask = _affine(img, mask, 0.0, float(rng.uniform(0.5, 2.0)), 0.0)
    if rng.random() < 0.5:
        seq_img, seq_mask = TF.hflip(seq_img), TF.hflip(seq_mask)
    seq_img = _jitter(seq_img, rng, 0.1, 0.05, 0.05, 0.05)
    if rng.random() < 0.05:
        seq_img = TF.rgb_to_grayscale(seq_img, num_output_channels=3)
    frames, masks = [], []
    for _ in range(seq_length):
        im, m = _affine(seq_img, seq_mask, float(rng.uniform(-20, 20)), float(rng.uniform(0.5, 2.0)),
                        float(rng.uniform(-10, 10)))
        im = TF.resize(im, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        m = TF.resize(m, size, interpolation=InterpolationMode.NEAREST)
        h, w = im.shape[-2:]
        ph, pw = max(size - h, 0), max(size - w, 0)
        if ph or pw:
            pad = [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2]
            im = torch.stack([TF.pad(im[c:c + 1], pad, fill=_IM_MEAN[c])[0] for c in range(3)])
            m = TF.pad(m, pad, fill=0)
            h, w = im.shape[-2:]
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        im, m = im[:, y:y + size, x:x + size], m[:, y:y + size, x:x + size]
        im = _jitter(im, rng, 0.1, 0.05, 0.05, 0.0)
        if tps_prob > 0 and rng.random() < tps_prob:
            im, m = tps_warp(im, m, rng)
        frames.append(im)
        masks.append((m[0] > 0.5).float())
    return torch.stack(frames), torch.stack(masks)


class StaticSequenceDataset(Dataset):
    """Pre-training clips: clip ``i`` picks an image (each set oversampled by its official
    multiplier) with a generator seeded by (seed, i) and turns it into a synthetic sequence
    of ``seq_length`` frames with one object."""

    def __init__(self, pairs: list[tuple[Path, int]], *, num_clips: int, seq_length: int, size: int,
                 num_objects: int, seed: int, tps_prob: float = 0.0) -> None:
        self.images = [p for p, mult in pairs for _ in range(mult)]
        if not self.images:
            raise ValueError("no static images")
        self.num_clips, self.seq_length, self.size = num_clips, seq_length, size
        self.num_objects, self.seed, self.tps_prob = num_objects, seed, tps_prob

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, i: int):
        rng = np.random.default_rng(self.seed * 1_000_003 + i)
        path = self.images[int(rng.integers(len(self.images)))]
        img = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255.0
        mask = torch.from_numpy(np.asarray(Image.open(path.with_suffix(".png")).convert("L")) > 127).float()[None]
        frames, masks = synthetic_sequence(img, mask, rng, seq_length=self.seq_length, size=self.size,
                                           tps_prob=self.tps_prob)
        first = torch.zeros(self.num_objects, self.size, self.size)
        first[0] = masks[0]
        return {"frames": frames, "first_mask": first, "labels": masks[1:].long(),
                "num_valid": torch.tensor(1)}


class StaticDataModule(_ClipData):
    """The pre-training stage's data: synthetic sequences from the static image sets."""

    def setup(self, stage: str | None = None) -> None:
        from data_scripts.vos_static_images import image_pairs

        c, pairs = self.cfg, image_pairs(self.root)
        kw = {"seq_length": c.seq_length, "size": c.crop, "num_objects": c.num_objects,
              "tps_prob": c.pretrain_tps_prob}
        self.train_set = StaticSequenceDataset(pairs, num_clips=c.train_clips, seed=self.seed, **kw)
        self.test_set = StaticSequenceDataset(pairs, num_clips=max(c.batch_size, 2), seed=self.seed + 1, **kw)
