"""Data for the Up-Down captioner: the prepared 36-box bottom-up features with Karpathy
split captions (``data_scripts/coco_bottom_up.py``), and the cpu analogue's synthetic
scenes with their region proposals (the objects' boxes plus distractor boxes, in a
random order: an oracle stand-in for the Faster R-CNN bottom-up proposals)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from data_scripts import _captions as C
from repro.blocks.caption_scenes import SCENE_SPLITS, make_scenes, normalise_image, scene_vocab
from repro.blocks.captioning import CaptionDataModule, CaptionSet, Vocab, split_indices


def region_boxes(scene: dict, k: int, rng: random.Random) -> list[list[float]]:
    """The objects' boxes and k - n random distractor boxes (sides 20-45% of the image),
    shuffled so that a box's position in the list says nothing."""
    size = scene["size"]
    boxes = [list(ob["box"]) for ob in scene["objects"]]
    while len(boxes) < k:
        w, h = rng.uniform(0.2, 0.45) * size, rng.uniform(0.2, 0.45) * size
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        boxes.append([x0, y0, x0 + w, y0 + h])
    rng.shuffle(boxes)
    return boxes


def scene_set(cfg, vocab: Vocab, split: str, per_caption: bool) -> CaptionSet:
    scenes = make_scenes(cfg, split)
    rng = random.Random(cfg.data_seed * 100 + SCENE_SPLITS[split])
    images = torch.stack([normalise_image(C.render_scene(s)) for s in scenes])
    boxes = torch.tensor([region_boxes(s, cfg.n_regions, rng) for s in scenes], dtype=torch.float32)
    refs = [C.scene_captions(s) for s in scenes]

    def visual(i: int):
        return {"image": images[i], "region_boxes": boxes[i]}

    return CaptionSet(visual, refs, [[r.split() for r in rs] for rs in refs], vocab, cfg.max_len, per_caption)


def prepared_set(cfg, vocab: Vocab, split: str, per_caption: bool) -> CaptionSet:
    root = Path(cfg.data_dir)
    images, _ = C.load_prepared(root)
    idx = split_indices(images, split)
    if cfg.max_items_per_split > 0:
        idx = idx[: cfg.max_items_per_split]
    items = [images[i] for i in idx]
    feats = np.load(root / "features.npy", mmap_mode="r")

    def visual(i: int):
        f = torch.from_numpy(np.asarray(feats[items[i]["row"]], dtype=np.float32))
        return {"features": f, "feature_mask": torch.ones(f.shape[0], dtype=torch.bool)}

    return CaptionSet(visual, [im["sentences"] for im in items], [im["tokens"] for im in items], vocab,
                      cfg.max_len, per_caption, ids=[im["id"] for im in items])


def feature_dim(cfg) -> int:
    if cfg.dataset == "scenes":
        return cfg.feat_dim
    return int(np.load(Path(cfg.data_dir) / "features.npy", mmap_mode="r").shape[-1])


def build_vocab(cfg) -> Vocab:
    if cfg.dataset == "scenes":
        return scene_vocab()
    return Vocab.from_file(Path(cfg.data_dir) / "vocab.json")


def train_references(cfg) -> list[list[str]]:
    """The training captions, whose n-gram document frequencies CIDEr-D rewards use."""
    if cfg.dataset == "scenes":
        return [C.scene_captions(s) for s in make_scenes(cfg, "train")]
    images, _ = C.load_prepared(Path(cfg.data_dir))
    return [im["sentences"] for im in images if im["split"] == "train"]


def build_datamodule(cfg, vocab: Vocab | None = None) -> CaptionDataModule:
    vocab = vocab or build_vocab(cfg)
    make = (lambda split, pc: scene_set(cfg, vocab, split, pc)) if cfg.dataset == "scenes" else \
        (lambda split, pc: prepared_set(cfg, vocab, split, pc))
    return CaptionDataModule(make, cfg.batch_size, cfg.eval_batch_size, seed=torch.initial_seed() % (2**31),
                             num_workers=cfg.num_workers)
