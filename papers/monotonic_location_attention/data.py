"""Copy and Reverse Copy with the official length split (Ray Chowdhury & Caragea,
arXiv 2305.20019; generators in JRC1995/MonotonicLocationAttention, preprocess/
process_copy.py and process_reverse_copy.py, re-implemented here).

Source: a sequence of digits 0-9. Copy: the target is the same sequence; Reverse
Copy: the sequence reversed; both end with <eos>. Every split holds distinct
sequences (the generator de-duplicates within a split). Official split: training
lengths 5-10 (10,000 sequences), development lengths 10-15 (2,000), tests at IID
lengths 5-10 and at lengths 15, 20, 25, 30, 50 and 100 (2,000 each).
"""

from __future__ import annotations

import random

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from repro.training import SeededRandomSampler, TensorBatches, keep_batch

DIGITS = [str(i) for i in range(10)]
SOS, UNK, EOS, PAD = 10, 11, 12, 13  # special tokens after the ten digits, as in the official vocabulary
VOCAB_SIZE = 14
TASKS = ("copy", "reverse_copy")


def make_pairs(task: str, num: int, min_len: int, max_len: int, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """``num`` distinct (source, target) pairs with lengths drawn uniformly from
    [min_len, max_len]; targets end with EOS."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < num:
        n = rng.randint(min_len, max_len)
        seen[tuple(rng.randrange(10) for _ in range(n))] = None
    pairs = []
    for src in seen:
        tgt = list(src) if task == "copy" else list(reversed(src))
        pairs.append((list(src), tgt + [EOS]))
    return pairs


def to_tensors(pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PAD-padded sources and targets with their lengths."""
    ls = torch.tensor([len(s) for s, _ in pairs])
    lt = torch.tensor([len(t) for _, t in pairs])
    src = torch.full((len(pairs), int(ls.max())), PAD, dtype=torch.long)
    tgt = torch.full((len(pairs), int(lt.max())), PAD, dtype=torch.long)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(t)] = torch.tensor(t)
    return src, ls, tgt, lt


def split_names(test_lengths) -> list[str]:
    return ["iid"] + [f"len{n}" for n in test_lengths]


class LengthSplitData(L.LightningDataModule):
    """Train (lengths 5-10), dev (10-15) and the test splits. The test loader yields
    (src, src_len, tgt, tgt_len, split_index) batches that never mix splits."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = int(torch.initial_seed()) % (2**31) + cfg.data_seed
        self.train = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        c = self.cfg
        rng = random.Random(self.seed)
        self.train = to_tensors(make_pairs(c.task, c.train_samples, c.train_min_len, c.train_max_len, rng))
        self.dev = to_tensors(make_pairs(c.task, c.dev_samples, c.dev_min_len, c.dev_max_len, rng))
        tests = [make_pairs(c.task, c.test_samples, c.train_min_len, c.train_max_len, rng)]
        tests += [make_pairs(c.task, c.test_samples, n, n, rng) for n in c.test_lengths]
        self.test_parts = [to_tensors(p) for p in tests]

    def train_dataloader(self):
        sampler = torch.utils.data.BatchSampler(SeededRandomSampler(len(self.train[0]), self.seed),
                                                self.cfg.batch_size, drop_last=False)
        return DataLoader(TensorBatches(*self.train), batch_sampler=sampler, collate_fn=keep_batch)

    def val_dataloader(self):
        sampler = torch.utils.data.BatchSampler(range(len(self.dev[0])), self.cfg.eval_batch_size, drop_last=False)
        return DataLoader(TensorBatches(*self.dev), batch_sampler=sampler, collate_fn=keep_batch)

    def test_dataloader(self):
        return DataLoader(_TestSplits(self.test_parts), batch_sampler=_TestSplits.batches(self.test_parts,
                          self.cfg.eval_batch_size), collate_fn=keep_batch)


class _TestSplits(Dataset):
    """All test splits, each padded on its own; a batch index list stays inside one split."""

    def __init__(self, parts) -> None:
        self.parts = parts
        self.offsets = [0]
        for p in parts:
            self.offsets.append(self.offsets[-1] + len(p[0]))

    @staticmethod
    def batches(parts, size: int) -> list[list[int]]:
        out, start = [], 0
        for p in parts:
            n = len(p[0])
            out += [list(range(start + i, start + min(i + size, n))) for i in range(0, n, size)]
            start += n
        return out

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitems__(self, idx):
        k = max(i for i, o in enumerate(self.offsets[:-1]) if o <= idx[0])
        local = torch.as_tensor(idx) - self.offsets[k]
        src, ls, tgt, lt = (t[local] for t in self.parts[k])
        return src, ls, tgt, lt, torch.full((len(local),), k, dtype=torch.long)
