"""Data for sydney_wmt19: the prepared ``data_scripts/wmt19_fi_en`` files (raw text), a
joint sentencepiece BPE model over both languages (``repro.bpe``, cached under
``<data_dir>/bpe/``) and a datamodule over any list of (source, target) text pairs,
batched by tokens (``repro.training.TokenBatchSampler``).

Ids: 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos> (the ``repro.bpe`` convention).
"""

from __future__ import annotations

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
           "collate", "PairData"]


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


def joint_bpe_model(cfg):
    from repro.bpe import BPESettings, joint_bpe

    root = Path(cfg.data_dir)
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
