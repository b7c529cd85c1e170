"""Data for Show, Attend and Tell: the prepared caption datasets (Flickr8k, Flickr30k,
COCO with Karpathy splits, ``data_scripts``), and the cpu analogue's synthetic scenes
(two coloured shapes at known positions, rendered with PIL, three template captions),
which also carry each object's box and noun for the attention-mass analysis."""

from __future__ import annotations

from pathlib import Path

import torch

from data_scripts import _captions as C
from repro.blocks.caption_scenes import make_scenes, normalise_image, scene_vocab
from repro.blocks.captioning import CaptionDataModule, CaptionSet, Vocab, load_image, split_indices

def scene_set(cfg, vocab: Vocab, split: str, per_caption: bool) -> CaptionSet:
    scenes = make_scenes(cfg, split)
    images = torch.stack([normalise_image(C.render_scene(s)) for s in scenes])
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
