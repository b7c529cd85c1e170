"""Data for sydney_wmt19: the prepared ``data_scripts/wmt19_fi_en`` files (raw text), a
joint sentencepiece BPE model over both languages (``repro.bpe``, cached under
``<data_dir>/bpe/``) and a datamodule over any list of (source, target) text pairs,
batched by tokens (``repro.training.TokenBatchSampler``).

Ids: 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos> (the ``repro.bpe`` convention).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from repro.blocks.seq2seq import pad_right, shift_right
from repro.bpe import BOS_ID as BOS
from repro.bpe import EOS_ID as EOS
from repro.bpe import PAD_ID as PAD
from repro.bpe import UNK_ID as UNK
from repro.training import TokenBatchSampler

__all__ = ["PAD", "UNK", "BOS", "EOS", "pad_batch", "decoder_input", "read_lines", "load_corpus", "joint_bpe_model",
           "collate", "PairData", "CPU_TEMPLATES", "pycountry_fi_en_names", "cpu_corpus", "write_corpus"]


def pad_batch(seqs: list[list[int]]) -> torch.Tensor:
    return pad_right(seqs, PAD, EOS)


def decoder_input(tgt: torch.Tensor) -> torch.Tensor:
    return shift_right(tgt, BOS, EOS, PAD)


def read_lines(path: Path, limit: int = 0) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return lines[:limit] if limit > 0 else lines


def load_corpus(cfg) -> dict[str, list[tuple[str, str]]]:
    """Fi->En pairs: ``train`` (the first ``train_size`` lines, 0 = all), ``dev``
    (newstest2018) and ``test`` (newstest2019)."""
    root = Path(cfg.data_dir)
    if not (root / "train.fi").is_file():
        raise FileNotFoundError(f"{root} holds no prepared wmt19_fi_en files (train.fi missing)")

    def pairs(split: str, limit: int) -> list[tuple[str, str]]:
        return list(zip(read_lines(root / f"{split}.fi", limit), read_lines(root / f"{split}.en", limit)))

    return {"train": pairs("train", cfg.train_size), "dev": pairs("newstest2018", cfg.dev_size),
            "test": pairs("newstest2019", cfg.test_size)}


def joint_bpe_model(cfg, root: Path | None = None):
    """The joint BPE model of ``<root>/train.fi`` + ``train.en`` (``root`` defaults to
    ``cfg.data_dir``), cached under ``<root>/bpe/``."""
    from repro.bpe import BPESettings, joint_bpe

    root = Path(cfg.data_dir if root is None else root)
    return joint_bpe(root / "train.fi", root / "train.en", root / "bpe",
                     BPESettings(vocab_size=cfg.bpe_vocab, input_sentence_size=cfg.bpe_sentences))


def collate(items) -> dict[str, torch.Tensor]:
    return {"src": pad_batch([s for s, _ in items]), "tgt": pad_batch([t for _, t in items])}


class PairData(L.LightningDataModule):
    """Token-batched train/val/test loaders over text pairs (``reverse=True`` swaps the
    sides: the En->Fi backward model of back-translation)."""

    def __init__(self, cfg, bpe, train: list[tuple[str, str]], dev: list[tuple[str, str]],
                 test: list[tuple[str, str]], seed: int, reverse: bool = False) -> None:
        super().__init__()
        self.cfg, self.bpe, self.seed = cfg, bpe, int(seed)
        enc = self.encode_pairs
        self.train_set, self.val_set, self.test_set = enc(train, reverse), enc(dev, reverse), enc(test, reverse)

    def encode_pairs(self, pairs, reverse: bool = False) -> list[tuple[list[int], list[int]]]:
        n = self.cfg.max_tokens
        items = []
        for s, t in pairs:
            a, b = self.bpe.encode(s)[:n], self.bpe.encode(t)[:n]
            if a and b:
                items.append((b, a) if reverse else (a, b))
        return items  # a list is a map-style dataset

    def _loader(self, ds: list[tuple[list[int], list[int]]], shuffle: bool):
        lengths = [max(len(s), len(t)) + 1 for s, t in ds]
        sampler = TokenBatchSampler(lengths, self.cfg.batch_tokens, self.seed, shuffle=shuffle)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate)

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        return self._loader(self.test_set, False)


# ---------------------------------------------------------------------------- cpu analogue corpus
# Finnish->English sentences around the only real Finnish/English parallel text available
# offline: country, language and currency names from pycountry's Finnish gettext
# catalogues (the corpus the wmt19_fi_en fixture is built from), in simple templates.
# Split by *name*: a dev/test name never occurs in training, so the model has to
# translate (mostly transliterate) unseen names, not recall memorised sentences.
CPU_TEMPLATES = {
    "country": (("Asun maassa {} .", "I live in {} ."), ("{} on maa .", "{} is a country .")),
    "language": (("Hän puhuu kieltä {} .", "She speaks {} ."), ("{} on kieli .", "{} is a language .")),
    "currency": (("Maksamme valuutassa {} .", "We pay in {} ."), ("{} on valuutta .", "{} is a currency .")),
}


def pycountry_fi_en_names() -> list[tuple[str, str, str]]:
    """``(kind, Finnish, English)`` names in a fixed order: every country (3166-1; a
    name the catalogue leaves untranslated is still a valid pair), and the languages
    (639-3) and currencies (4217) whose Finnish name differs from the English one."""
    import gettext

    import pycountry

    out = []
    for domain, db, kind, keep_same in (("iso3166-1", pycountry.countries, "country", True),
                                        ("iso639-3", pycountry.languages, "language", False),
                                        ("iso4217", pycountry.currencies, "currency", False)):
        tr = gettext.translation(domain, pycountry.LOCALES_DIR, languages=["fi"], fallback=True)
        for rec in sorted(db, key=lambda r: (r.alpha_3, r.name)):
            fi = tr.gettext(rec.name)
            if fi != rec.name or keep_same:
                out.append((kind, fi, rec.name))
    return out


def cpu_corpus(dev_share: float, test_share: float, split_seed: int) -> dict[str, list[tuple[str, str]]]:
    """Fi->En sentence pairs: each name in every template of its kind, names split
    ``train`` / ``dev`` / ``test`` by a seeded shuffle (the same split for every seed of
    a run when ``split_seed`` is fixed)."""
    import random

    names = pycountry_fi_en_names()
    random.Random(split_seed).shuffle(names)
    n_dev, n_test = round(dev_share * len(names)), round(test_share * len(names))
    parts = {"dev": names[:n_dev], "test": names[n_dev:n_dev + n_test], "train": names[n_dev + n_test:]}
    return {split: [(fi_t.format(fi), en_t.format(en)) for kind, fi, en in part for fi_t, en_t in CPU_TEMPLATES[kind]]
            for split, part in parts.items()}


def write_corpus(corpus: dict[str, list[tuple[str, str]]], root: Path) -> Path:
    """Write ``train.fi``/``train.en`` (what ``joint_bpe_model`` learns from) under
    ``root``; returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for lang, side in (("fi", 0), ("en", 1)):
        text = "".join(p[side] + "\n" for p in corpus["train"])
        path = root / f"train.{lang}"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # atomic: parallel units may race
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
    return root
