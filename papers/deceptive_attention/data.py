"""The synthetic sequence-to-sequence tasks of Pruthi et al. (2020, arXiv 1909.07913):
Bigram Flip, Sequence Copy and Sequence Reverse, generated here.

Every source sequence is a run of random content tokens; the target is

* ``copy``:        x1 x2 x3 x4 x5 -> x1 x2 x3 x4 x5
* ``reverse``:     x1 x2 x3 x4 x5 -> x5 x4 x3 x2 x1
* ``bigram_flip``: x1 x2 x3 x4 x5 -> x2 x1 x4 x3 x5  (each pair swapped; an odd last token stays)

and target token ``j`` is *aligned* to exactly one source token ``align[j]`` (the token it
copies). The paper's manipulation treats that aligned source token as the impermissible
one for target step ``j``. The official repository ships the generated files but not the
generator or its settings (vocabulary, lengths, sizes are unknown); ours are stated in the
recipe config.

Layout of one example (as in the official code): source ``<sos> x... <eos>``, target
``<sos> y... <eos>``; the decoder predicts target positions 1..T-1, and the impermissible
mask has shape (T-1, S): row ``t`` is the output step predicting target position ``t+1``.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from repro.training import SeededRandomSampler, TensorBatches, keep_batch

PAD, SOS, EOS = 0, 1, 2
N_SPECIAL = 3
Task = Literal["bigram_flip", "copy", "reverse"]
TASKS: tuple[str, ...] = ("bigram_flip", "copy", "reverse")


def alignment(task: str, n: int) -> list[int]:
    """Source index that target index j copies, for a source of n content tokens."""
    if task == "copy":
        return list(range(n))
    if task == "reverse":
        return [n - 1 - j for j in range(n)]
    if task == "bigram_flip":
        return [j ^ 1 if (j ^ 1) < n else j for j in range(n)]
    raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")


def make_examples(task: str, n: int, vocab: int, min_len: int, max_len: int, seed: int):
    """``n`` (source, target, align) triples of content-token ids (>= N_SPECIAL)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g).tolist()
    out = []
    for length in lengths:
        src = (torch.randint(0, vocab, (length,), generator=g) + N_SPECIAL).tolist()
        al = alignment(task, length)
        out.append((src, [src[i] for i in al], al))
    return out


def encode(examples, max_len: int) -> dict[str, torch.Tensor]:
    """Padded tensors: ``src`` (N, max_len+2), ``src_len`` (N,), ``trg`` (N, max_len+2),
    ``imp`` (N, max_len+1, max_len+2) float mask of impermissible source positions per
    output step (1 where output step t copies source position s)."""
    n, width = len(examples), max_len + 2
    src = torch.full((n, width), PAD, dtype=torch.long)
    trg = torch.full((n, width), PAD, dtype=torch.long)
    imp = torch.zeros(n, width - 1, width)
    src_len = torch.zeros(n, dtype=torch.long)
    for b, (s, t, al) in enumerate(examples):
        k = len(s)
        src[b, : k + 2] = torch.tensor([SOS, *s, EOS])
        trg[b, : k + 2] = torch.tensor([SOS, *t, EOS])
        src_len[b] = k + 2
        for j, i in enumerate(al):  # target position j+1 is predicted at output step j
            imp[b, j, i + 1] = 1.0
    return {"src": src, "src_len": src_len, "trg": trg, "imp": imp}


class SyntheticSeq2Seq(L.LightningDataModule):
    """Train and test splits of one task. The data seed is fixed by the config (the
    same sequences for every seed and arm); the run seed shuffles the training order."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_split = self.test_split = None

    def setup(self, stage: str | None = None) -> None:
        c = self.cfg
        if self.train_split is None:
            self.train_split = TensorBatches(encode(
                make_examples(c.task, c.train_size, c.vocab, c.min_len, c.max_len, c.data_seed), c.max_len))
            self.test_split = TensorBatches(encode(
                make_examples(c.task, c.test_size, c.vocab, c.min_len, c.max_len, c.data_seed + 1), c.max_len))

    def train_dataloader(self):
        seed = torch.initial_seed() % (2**31)  # the engine seeds torch with the run seed
        return DataLoader(self.train_split, batch_size=self.cfg.batch_size, collate_fn=keep_batch,
                          sampler=SeededRandomSampler(len(self.train_split), seed), num_workers=self.cfg.num_workers)

    def test_dataloader(self):
        return DataLoader(self.test_split, batch_size=512, collate_fn=keep_batch)
