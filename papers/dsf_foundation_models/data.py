"""Multi-query associative recall (MQAR), the synthetic task of the paper's Figure 5
(introduced by Arora et al., "Zoology", 2023; the paper's code is a fork of Zoology).

Each sequence starts with ``num_kv`` key-value pairs (keys from the lower half of the
vocabulary, values from the upper half, no repeats), followed by every key once more at
a random later position; the model must output the key's value there. Query positions
follow Zoology's power law over the gap (``power_a = 0.01``: short gaps are likely), and
the other positions hold token 0 (the paper's configs: ``random_non_queries=False``).
Labels are -100 (ignored) everywhere except at query positions, where the label is the
value to predict as the next token.

Written from the task description (Zoology's ``multiquery_ar``); vectorised with torch
and drawn from a seeded generator, so every arm of a seed sees the same data.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from repro.training import SeededRandomSampler

IGNORE = -100


def mqar(num_examples: int, seq_len: int, num_kv: int, vocab_size: int, *, seed: int,
         power_a: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels), both (num_examples, seq_len) int64."""
    if seq_len % 2 or 4 * num_kv > seq_len:
        raise ValueError("MQAR needs an even sequence length >= 4 * num_kv")
    if vocab_size <= seq_len:
        raise ValueError("vocab_size must exceed seq_len")
    g = torch.Generator().manual_seed(seed)
    half = vocab_size // 2
    ctx = 2 * num_kv
    ones_k = torch.ones(num_examples, half - 1)
    keys = torch.multinomial(ones_k, num_kv, replacement=False, generator=g) + 1  # from 1 .. half-1
    values = torch.multinomial(torch.ones(num_examples, vocab_size - half), num_kv, replacement=False,
                               generator=g) + half
    space = (seq_len - ctx) // 2
    p = power_a * torch.arange(1, space + 1, dtype=torch.float64) ** (power_a - 1)
    gaps = torch.multinomial((p / p.sum()).expand(num_examples, space), num_kv, replacement=False, generator=g)
    inputs = torch.zeros(num_examples, seq_len, dtype=torch.int64)
    labels = torch.full((num_examples, seq_len), IGNORE, dtype=torch.int64)
    inputs[:, 0:ctx:2] = keys
    inputs[:, 1:ctx:2] = values
    pos = ctx + 2 * gaps  # query positions; the label sits at the same position (next-token target)
    inputs.scatter_(1, pos, keys)
    labels.scatter_(1, pos, values)
    return inputs, labels


class MQARData(L.LightningDataModule):
    """Train and test sets drawn once per run seed (the runner seeds torch before building
    the datamodule, so ``torch.initial_seed()`` is the run's seed): every arm of a seed
    sees the same sequences, different seeds see different ones. No validation loop:
    the paper reports test accuracy (the best over a learning-rate sweep)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = cfg.data_seed + 1000 * (torch.initial_seed() % 1_000_003)
        self.train = self.test = None

    def setup(self, stage: str | None = None) -> None:
        c = self.cfg
        if self.train is None:
            self.train = TensorDataset(*mqar(c.train_examples, c.seq_len, c.num_kv, c.vocab_size,
                                             seed=self.seed, power_a=c.power_a))
            self.test = TensorDataset(*mqar(c.test_examples, c.seq_len, c.num_kv, c.vocab_size,
                                            seed=self.seed + 10, power_a=c.power_a))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.cfg.batch_size,
                          sampler=SeededRandomSampler(len(self.train), self.seed),
                          num_workers=self.cfg.num_workers)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=self.cfg.eval_batch_size)
