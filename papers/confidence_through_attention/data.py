"""Data for the confidence-through-attention recipe.

Two tasks share one tensor layout (right-padded id matrices, ``<eos>`` closing both
sides, as the official scorer appends ``<EOS>`` to source and output):

* ``reversal`` (cpu analogue, papers.md row 13): the source is a random string of
  ``min_len..max_len`` symbols, the "translation" is the same string reversed. Training
  uses lengths up to ``max_len``; the quality test draws lengths up to
  ``test_max_len`` so that some outputs of the trained model are wrong (sentence BLEU
  spreads out), as real NMT output is.
* ``iwslt14`` (smoke, and the layout a larger run would read): the prepared
  ``data_scripts/iwslt14_de_en`` files (German -> English), segmented with a joint
  sentencepiece BPE model (``repro.bpe``) cached under ``<data_dir>/bpe/``.

Ids: 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos> (the ``repro.bpe`` convention), reversal
symbols from 4.

Corrupted outputs (``corrupt``) are the negatives of the separation test: a reference
output with a span dropped (under-translation), a span repeated (over-translation), or
the output of another sentence (a hallucination unrelated to the source).
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader

from repro.blocks.seq2seq import pad_right, shift_right
from repro.bpe import BOS_ID as BOS
from repro.bpe import EOS_ID as EOS
from repro.bpe import PAD_ID as PAD
from repro.bpe import UNK_ID as UNK
from repro.training import SeededRandomSampler

FIRST_SYMBOL = max(PAD, UNK, BOS, EOS) + 1  # 4: the reversal task's first symbol
CORRUPTIONS = ("drop", "repeat", "swap")


# ---------------------------------------------------------------------------- sequences
def reversal_pairs(n: int, n_symbols: int, min_len: int, max_len: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """``n`` (source, target) id lists without <eos>: target = source reversed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [FIRST_SYMBOL + rng.randrange(n_symbols) for _ in range(rng.randint(min_len, max_len))]
        out.append((s, s[::-1]))
    return out


def pad_batch(seqs: list[list[int]], eos: bool = True) -> torch.Tensor:
    """Right-padded (N, max length + 1) tensor, each row closed by <eos>."""
    return pad_right(seqs, PAD, EOS if eos else None)


def decoder_input(tgt: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: the target shifted right behind <bos>; <eos> is never an input."""
    return shift_right(tgt, BOS, EOS, PAD)


def corrupt(target: list[int], kind: str, rng: random.Random, other: list[int]) -> list[int]:
    """A corrupted version of ``target`` (ids without <eos>), never equal to it:
    ``drop`` removes a contiguous span of ~30% of the tokens (at least one),
    ``repeat`` inserts a copy of such a span right after it, ``swap`` returns ``other``
    (the output of another sentence)."""
    n = len(target)
    span = max(1, round(0.3 * n))
    if kind == "swap":
        return list(other)
    if kind == "drop":
        if n <= 1:
            return list(other)
        span = min(span, n - 1)
        i = rng.randrange(0, n - span + 1)
        return target[:i] + target[i + span:]
    if kind == "repeat":
        i = rng.randrange(0, n - span + 1)
        return target[:i + span] + target[i:i + span] + target[i + span:]
    raise ValueError(f"unknown corruption {kind!r} (one of {CORRUPTIONS})")


# ---------------------------------------------------------------------------- datasets
def collate(items) -> dict[str, torch.Tensor]:
    return {"src": pad_batch([s for s, _ in items]), "tgt": pad_batch([t for _, t in items])}


class TranslationData(L.LightningDataModule):
    """train / val / test splits of id pairs plus the two analysis sets:
    ``separation`` (references within the training length range, for correct-vs-corrupted)
    and ``quality`` (sources whose greedy translations are scored against references)."""

    def __init__(self, cfg, seed: int) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, int(seed)
        self.splits: dict[str, list] = {}
        self.bpe = None
        self.vocab_size = FIRST_SYMBOL + cfg.n_symbols

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        c = self.cfg
        if c.task == "reversal":
            mk = lambda n, hi, k: reversal_pairs(n, c.n_symbols, c.min_len, hi, self.seed * 10 + k)  # noqa: E731
            self.splits = {"train": mk(c.train_size, c.max_len, 0), "val": mk(c.val_size, c.max_len, 1),
                           "separation": mk(c.separation_size, c.max_len, 2),
                           "quality": mk(c.quality_size, c.test_max_len, 3)}
            self.splits["test"] = self.splits["quality"]
        elif c.task == "iwslt14":
            self._setup_iwslt14()
        else:
            raise ValueError(f"unknown task {c.task!r} (reversal | iwslt14)")

    def _setup_iwslt14(self) -> None:
        from repro.bpe import BPESettings, joint_bpe

        c = self.cfg
        root = Path(c.data_dir)
        if not (root / "train.de").is_file():
            raise FileNotFoundError(f"{root} holds no prepared iwslt14_de_en files (train.de missing)")
        self.bpe = joint_bpe(root / "train.de", root / "train.en", root / "bpe", BPESettings(vocab_size=c.bpe_vocab))
        self.vocab_size = self.bpe.vocab_size

        def read(split: str, limit: int) -> list[tuple[list[int], list[int]]]:
            de = (root / f"{split}.de").read_text(encoding="utf-8").splitlines()
            en = (root / f"{split}.en").read_text(encoding="utf-8").splitlines()
            pairs = [(self.bpe.encode(s), self.bpe.encode(t)) for s, t in zip(de, en)]
            pairs = [(s[:c.max_tokens], t[:c.max_tokens]) for s, t in pairs if s and t]
            return pairs[:limit] if limit > 0 else pairs

        test = read("test", c.quality_size)
        self.splits = {"train": read("train", c.train_size), "val": read("valid", c.val_size),
                       "separation": read("test", c.separation_size), "quality": test, "test": test}

    def detok(self, ids: list[int]) -> str:
        """Text of an id list (BPE decoded, or the symbols as space-separated numbers)."""
        ids = [i for i in ids if i not in (PAD, BOS, EOS)]
        if self.bpe is not None:
            return self.bpe.decode(ids)
        return " ".join(str(i) for i in ids)

    def train_dataloader(self):
        ds = self.splits["train"]  # a list of (src, tgt) id pairs is a map-style dataset
        sampler = BatchSampler(SeededRandomSampler(len(ds), self.seed), self.cfg.batch_size, drop_last=True)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate)

    def _plain(self, name: str):
        return DataLoader(self.splits[name], batch_size=self.cfg.eval_batch_size, shuffle=False, collate_fn=collate)

    def val_dataloader(self):
        return self._plain("val")

    def test_dataloader(self):
        return self._plain("test")
