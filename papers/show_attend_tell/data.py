"""Data for Show, Attend and Tell: the prepared caption datasets (Flickr8k, Flickr30k,
COCO with Karpathy splits, ``data_scripts``), and the cpu analogue's synthetic scenes
(two coloured shapes at known positions, rendered with PIL, three template captions),
which also carry each object's box and noun for the attention-mass analysis."""

from __future__ import annotations

from pathlib import Path

import torch

from data_scripts import _captions as C
from repro.blocks.captioning import CaptionDataModule, CaptionSet, Vocab, load_image, split_indices

SCENE_SPLITS = {"train": 0, "val": 1, "test": 2}


def scene_vocab() -> Vocab:
    words = sorted({w for col in C.COLOURS for w in [col]} | set(C.SHAPES)
                   | {w for rel in C.RELATIONS.values() for phrase in rel for w in phrase.split()}
                   | {"a", "there", "is"})
    return Vocab(words)


def _normalise(img) -> torch.Tensor:
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], 3)
    x = x.permute(2, 0, 1).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (x - mean) / std


def make_scenes(cfg, split: str) -> list[dict]:
    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    return C.fixture_scenes(n, size=cfg.image_size, seed=cfg.data_seed * 10 + SCENE_SPLITS[split])


def scene_set(cfg, vocab: Vocab, split: str, per_caption: bool) -> CaptionSet:
    scenes = make_scenes(cfg, split)
    images = torch.stack([_normalise(C.render_scene(s)) for s in scenes])
    refs = [C.scene_captions(s) for s in scenes]
    boxes = torch.tensor([[ob["box"] for ob in s["objects"]] for s in scenes], dtype=torch.float32)
    nouns = torch.tensor([[vocab.stoi[ob["shape"]] for ob in s["objects"]] for s in scenes])

    def visual(i: int):
        return {"image": images[i], "boxes": boxes[i], "nouns": nouns[i]}

    return CaptionSet(visual, refs, [[r.split() for r in rs] for rs in refs], vocab, cfg.max_len, per_caption)


def prepared_set(cfg, vocab: Vocab, split: str, per_caption: bool) -> CaptionSet:
    root = Path(cfg.data_dir)
    images, _ = C.load_prepared(root)
    idx = split_indices(images, split)
    if cfg.max_items_per_split > 0:
        idx = idx[: cfg.max_items_per_split]
    items = [images[i] for i in idx]

    def visual(i: int):
        return {"image": load_image(root / items[i]["file"], cfg.image_size)}

    return CaptionSet(visual, [im["sentences"] for im in items], [im["tokens"] for im in items], vocab,
                      cfg.max_len, per_caption, ids=[im["id"] for im in items])


def build_vocab(cfg) -> Vocab:
    if cfg.dataset == "scenes":
        return scene_vocab()
    return Vocab.from_file(Path(cfg.data_dir) / "vocab.json", max_words=cfg.max_words)


def build_datamodule(cfg, vocab: Vocab | None = None) -> CaptionDataModule:
    vocab = vocab or build_vocab(cfg)
    make = (lambda split, pc: scene_set(cfg, vocab, split, pc)) if cfg.dataset == "scenes" else \
        (lambda split, pc: prepared_set(cfg, vocab, split, pc))
    # the run's seed (set by the engine before build_data) also fixes the training order
    return CaptionDataModule(make, cfg.batch_size, cfg.eval_batch_size, seed=torch.initial_seed() % (2**31),
                             num_workers=cfg.num_workers)
