"""The cpu analogue's task: sorting as a toy translation (a stand-in for WMT En->Fr).

Michel et al. (2019) ablate the heads of a trained translation Transformer. Here the
"source sentence" is a set of distinct symbols in random order and the "translation"
is the same symbols in ascending order followed by <eos>. Sorting is one of the two
toy tasks suggested for this paper in the catalogue notes ("sorting or copy"); it
needs the decoder to look at the source (cross-attention), like translation.

Token ids: ``repro.bpe``'s specials (0 <pad>, 1 <unk> unused, 2 <bos>, 3 <eos>), symbols
4 .. 4 + n_symbols - 1. Batches are
right-padded, as ``repro.blocks.seq2seq.TransformerSeq2Seq`` expects. Every split is
drawn once from its own seeded generator, so the splits never share draws.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader

from repro.blocks.seq2seq import shift_right
from repro.bpe import BOS_ID as BOS
from repro.bpe import EOS_ID as EOS
from repro.bpe import PAD_ID as PAD
from repro.bpe import UNK_ID as UNK
from repro.training import SeededRandomSampler, TensorBatches, keep_batch

# the family's special ids (repro.bpe: pad/unk/bos/eos = 0/1/2/3); <unk> never occurs here
FIRST_SYMBOL = max(PAD, UNK, BOS, EOS) + 1


def vocab_size(n_symbols: int) -> int:
    return FIRST_SYMBOL + n_symbols


def make_split(n: int, n_symbols: int, min_len: int, max_len: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` sorting pairs: ``src`` (n, max_len) distinct symbols in random order,
    ``tgt`` (n, max_len + 1) the sorted symbols then <eos>; both right-padded."""
    if not 1 <= min_len <= max_len <= n_symbols:
        raise ValueError("need 1 <= min_len <= max_len <= n_symbols (symbols are distinct)")
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    # a random permutation per row; its first `length` entries are the source set
    perms = torch.rand(n, n_symbols, generator=g).argsort(dim=1)[:, :max_len] + FIRST_SYMBOL
    pos = torch.arange(max_len)[None, :]
    real = pos < lengths[:, None]
    src = torch.where(real, perms, torch.full_like(perms, PAD))
    big = n_symbols + FIRST_SYMBOL + 1
    srt = torch.where(real, perms, torch.full_like(perms, big)).sort(dim=1).values
    tgt = torch.full((n, max_len + 1), PAD, dtype=torch.long)
    tgt[:, :max_len] = torch.where(real, srt, torch.full_like(srt, PAD))
    tgt[torch.arange(n), lengths] = EOS
    return {"src": src, "tgt": tgt}


def decoder_input(tgt: torch.Tensor) -> torch.Tensor:
    """The target shifted right behind <bos> (teacher forcing); <eos> is never an input."""
    return shift_right(tgt, BOS, EOS, PAD)


class SortData(L.LightningDataModule):
    """train / val / importance / test splits. ``importance`` is the held-out set on which
    head-importance scores are estimated (never the test set)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = int(torch.initial_seed()) % (2**31) + cfg.data_seed
        self.train = self.val = self.importance = self.test = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        c = self.cfg
        mk = lambda n, k: TensorBatches(make_split(n, c.n_symbols, c.min_len, c.max_len, self.seed * 4 + k))  # noqa: E731
        self.train, self.val = mk(c.train_size, 0), mk(c.val_size, 1)
        self.importance, self.test = mk(c.importance_size, 2), mk(c.test_size, 3)

    def train_dataloader(self):
        sampler = BatchSampler(SeededRandomSampler(len(self.train), self.seed), self.cfg.batch_size, drop_last=True)
        return DataLoader(self.train, batch_sampler=sampler, collate_fn=keep_batch)

    def _plain(self, ds):
        return DataLoader(ds, batch_sampler=BatchSampler(range(len(ds)), self.cfg.eval_batch_size, drop_last=False),
                          collate_fn=keep_batch)

    def val_dataloader(self):
        return self._plain(self.val)

    def test_dataloader(self):
        return self._plain(self.test)

    def batches(self, split: str) -> list[dict[str, torch.Tensor]]:
        """A split as a list of batches, for the post-training analysis."""
        self.setup()
        ds = getattr(self, split)
        return list(self._plain(ds))
