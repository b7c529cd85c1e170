"""The synthetic-scene analogue shared by the captioning recipes (show_attend_tell,
bottom_up_top_down): scenes of two coloured shapes at known positions with template
captions (rendered by ``data_scripts._captions``, which also builds the dataset fixtures),
their vocabulary, image normalisation, and the small CNN encoder that the cpu profiles train
jointly with the decoder (no pretrained weights offline)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from data_scripts import _captions as C
from repro.blocks.captioning import Vocab

SCENE_SPLITS = {"train": 0, "val": 1, "test": 2}


def scene_vocab() -> Vocab:
    words = sorted({w for col in C.COLOURS for w in [col]} | set(C.SHAPES)
                   | {w for rel in C.RELATIONS.values() for phrase in rel for w in phrase.split()}
                   | {"a", "there", "is"})
    return Vocab(words)


def normalise_image(img) -> torch.Tensor:
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], 3)
    x = x.permute(2, 0, 1).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (x - mean) / std


def make_scenes(cfg, split: str) -> list[dict]:
    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    return C.fixture_scenes(n, size=cfg.image_size, seed=cfg.data_seed * 10 + SCENE_SPLITS[split])


def coord_channels(x: Tensor) -> Tensor:
    """Append normalised x and y coordinate planes (B, 3, H, W) -> (B, 5, H, W)."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([x, xs, ys], 1)


class SmallCNN(nn.Module):
    """cpu-analogue encoder: three conv blocks, stride 8 overall, trained with the decoder.
    A 48x48 scene gives a 6x6 grid (L=36) of ``dim``-d annotation vectors."""

    def __init__(self, dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.out_dim = dim
        self.net = nn.Sequential(
            nn.Conv2d(5, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, dim, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )

    def forward(self, images: Tensor) -> Tensor:
        fmap = self.net(coord_channels(images))  # (B, D, G, G)
        return fmap.flatten(2).transpose(1, 2)  # (B, L, D), row-major cells
