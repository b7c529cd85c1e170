"""CPU analogue of Switchboard for Zeyer, Schlüter & Ney (arXiv 2103.16710): a synthetic
monotonic transduction task, generated here (not from the paper).

A label sequence y_1..y_N (N symbols drawn from ``vocab`` symbols, no symbol repeated
immediately, so segment boundaries are defined) is "spoken" as frames: each symbol is
repeated for a random 2-4 frames (``min_frames``..``max_frames``), with 0-2 silence
frames before and 1-2 after. A frame's feature vector is the one-hot code of its symbol
(silence: an extra channel) plus i.i.d. Gaussian noise (``noise_std``). The target is
y_1..y_N followed by EOS, so the task is monotonic and the true alignment is known
(``seg_start``/``seg_end`` per symbol, used only for the alignment metric).

Splits: train/dev/test-iid draw N from [train_min_len, train_max_len]; test-long draws it
from [long_min_len, long_max_len] (default 12-20 vs 4-8 symbols: ~2.7x longer on average),
which no training example reaches.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from repro.training import SeededRandomSampler

SPLITS = ("iid", "long")


def vocab_ids(vocab: int) -> tuple[int, int, int]:
    """(EOS, BOS, PAD) label ids after the ``vocab`` symbols 0..vocab-1."""
    return vocab, vocab + 1, vocab + 2


def make_examples(n: int, cfg, min_len: int, max_len: int, g: torch.Generator) -> list[dict]:
    """``n`` examples: dict(feats (T, vocab+1), labels (N+1,) ending in EOS,
    seg_start/seg_end (N,) 0-based frame spans, end exclusive)."""
    eos, _, _ = vocab_ids(cfg.vocab)
    out = []
    for _ in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        syms: list[int] = []
        for _ in range(length):
            choices = [k for k in range(cfg.vocab) if not syms or k != syms[-1]]
            syms.append(choices[int(torch.randint(len(choices), (1,), generator=g))])
        frames: list[int] = [cfg.vocab] * int(torch.randint(0, 3, (1,), generator=g))  # leading silence
        start, end = [], []
        for s in syms:
            d = int(torch.randint(cfg.min_frames, cfg.max_frames + 1, (1,), generator=g))
            start.append(len(frames))
            frames += [s] * d
            end.append(len(frames))
        frames += [cfg.vocab] * int(torch.randint(1, 3, (1,), generator=g))  # trailing silence
        onehot = torch.nn.functional.one_hot(torch.tensor(frames), cfg.vocab + 1).float()
        feats = onehot + cfg.noise_std * torch.randn(onehot.shape, generator=g)
        out.append({"feats": feats, "labels": torch.tensor(syms + [eos]),
                    "seg_start": torch.tensor(start), "seg_end": torch.tensor(end)})
    return out


def collate(examples: list[dict], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: feats (B, T, F), feat_len (B,), labels (B, S) padded with
    ``pad``, label_len (B,) (EOS included), seg_start/seg_end (B, S-1) padded with -1."""
    b = len(examples)
    t_len = torch.tensor([len(e["feats"]) for e in examples])
    s_len = torch.tensor([len(e["labels"]) for e in examples])
    feats = torch.zeros(b, int(t_len.max()), examples[0]["feats"].shape[1])
    labels = torch.full((b, int(s_len.max())), pad, dtype=torch.long)
    seg_s = torch.full((b, int(s_len.max()) - 1), -1, dtype=torch.long)
    seg_e = seg_s.clone()
    for i, e in enumerate(examples):
        feats[i, : len(e["feats"])] = e["feats"]
        labels[i, : len(e["labels"])] = e["labels"]
        seg_s[i, : len(e["seg_start"])] = e["seg_start"]
        seg_e[i, : len(e["seg_end"])] = e["seg_end"]
    return {"feats": feats, "feat_len": t_len, "labels": labels, "label_len": s_len,
            "seg_start": seg_s, "seg_end": seg_e}


class _List(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class MonotonicTransductionData(L.LightningDataModule):
    """Train / dev (in-distribution lengths) and two test loaders: ``iid`` and ``long``
    (dataloader_idx 0 and 1)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = int(torch.initial_seed()) % (2**31) + cfg.data_seed
        self.train = None
        self.pad = vocab_ids(cfg.vocab)[2]

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        c = self.cfg
        g = torch.Generator().manual_seed(self.seed)
        self.train = make_examples(c.train_samples, c, c.train_min_len, c.train_max_len, g)
        self.dev = make_examples(c.dev_samples, c, c.train_min_len, c.train_max_len, g)
        self.tests = [make_examples(c.test_samples, c, c.train_min_len, c.train_max_len, g),
                      make_examples(c.test_samples, c, c.long_min_len, c.long_max_len, g)]

    def _collate(self, batch):
        return collate(batch, self.pad)

    def train_dataloader(self):
        return DataLoader(_List(self.train), batch_size=self.cfg.batch_size, collate_fn=self._collate,
                          sampler=SeededRandomSampler(len(self.train), self.seed), num_workers=self.cfg.num_workers)

    def val_dataloader(self):
        return DataLoader(_List(self.dev), batch_size=self.cfg.eval_batch_size, collate_fn=self._collate)

    def test_dataloader(self):
        return [DataLoader(_List(t), batch_size=self.cfg.eval_batch_size, collate_fn=self._collate)
                for t in self.tests]
