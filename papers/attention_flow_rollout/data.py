"""A generated stand-in for the subject-verb agreement task of Abnar & Zuidema (2020),
who train on the Linzen et al. (2016) Wikipedia agreement set: the input is a sentence up
to (not including) its verb, the label the verb's number (singular / plural).

Grammar (ours; stated because it is not the paper's data):

    S  -> NP_subj PP^k                      k = 0..max_pps
    NP -> the ADJ^a NOUN                    a = 0..max_adjs
    PP -> PREP NP_attr

The subject noun's number is the label; each attractor noun (inside a PP) takes the
opposite number with probability ``p_attractor`` (agreement attractors, as in "the key
to the cabinets"), else the same. Nouns have distinct singular and plural tokens, the
determiner carries no number, so the only evidence is the subject noun, and the model
must tell it from the attractors by position and structure.

Token ids: 0 = <pad>, 1 = <unk> (used by blank-out), 2 = <cls>; every example starts with
<cls>, whose final embedding feeds the classifier (as in the paper).
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from repro.training import SeededRandomSampler, TensorBatches, keep_batch

PAD, UNK, CLS = 0, 1, 2
NOUNS = ("key", "cabinet", "author", "book", "dog", "friend", "table", "letter", "student", "car",
         "teacher", "house", "picture", "road", "window", "singer", "river", "report", "box", "garden")
PREPS = ("of", "to", "near", "behind", "with", "for", "on", "by")
ADJS = ("old", "red", "small", "new", "big", "green", "strange", "quiet")
VOCAB: tuple[str, ...] = ("<pad>", "<unk>", "<cls>", "the", *PREPS, *ADJS,
                          *[n for noun in NOUNS for n in (noun, noun + "s")])
INDEX = {w: i for i, w in enumerate(VOCAB)}


def max_length(max_pps: int, max_adjs: int) -> int:
    return 1 + (max_pps + 1) * (2 + max_adjs) + max_pps  # <cls> + NPs + PREPs


def make_sentences(n: int, seed: int, max_pps: int = 3, max_adjs: int = 1, p_attractor: float = 0.7):
    """``n`` (tokens, label, subject_position) triples; label 1 = plural subject."""
    g = torch.Generator().manual_seed(seed)

    def r(k: int) -> int:
        return int(torch.randint(0, k, (1,), generator=g))

    def np_(plural: bool) -> list[str]:
        words = ["the"] + [ADJS[r(len(ADJS))] for _ in range(r(max_adjs + 1))]
        noun = NOUNS[r(len(NOUNS))]
        return words + [noun + "s" if plural else noun]

    out = []
    for _ in range(n):
        plural = bool(r(2))
        words = ["<cls>"] + np_(plural)
        subj = len(words) - 1
        for _ in range(r(max_pps + 1)):
            attr_plural = (not plural) if float(torch.rand((), generator=g)) < p_attractor else plural
            words += [PREPS[r(len(PREPS))]] + np_(attr_plural)
        out.append(([INDEX[w] for w in words], int(plural), subj))
    return out


def encode(sentences, length: int) -> dict[str, torch.Tensor]:
    n = len(sentences)
    tokens = torch.full((n, length), PAD, dtype=torch.long)
    for i, (toks, _, _) in enumerate(sentences):
        tokens[i, : len(toks)] = torch.tensor(toks)
    return {
        "tokens": tokens,
        "length": torch.tensor([len(s[0]) for s in sentences]),
        "label": torch.tensor([s[1] for s in sentences]),
        "subject": torch.tensor([s[2] for s in sentences]),
    }


def decode(tokens) -> list[str]:
    return [VOCAB[int(t)] for t in tokens if int(t) != PAD]


class AgreementData(L.LightningDataModule):
    """Train and test sentences; the data seed is fixed by the config, the run seed
    shuffles the training order."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.train = self.test = None

    def setup(self, stage: str | None = None) -> None:
        c = self.cfg
        if self.train is None:
            length = max_length(c.max_pps, c.max_adjs)
            kw = dict(max_pps=c.max_pps, max_adjs=c.max_adjs, p_attractor=c.p_attractor)
            self.train = TensorBatches(encode(make_sentences(c.train_size, c.data_seed, **kw), length))
            self.test = TensorBatches(encode(make_sentences(c.test_size, c.data_seed + 1, **kw), length))

    def train_dataloader(self):
        seed = torch.initial_seed() % (2**31)
        return DataLoader(self.train, batch_size=self.cfg.batch_size, collate_fn=keep_batch,
                          sampler=SeededRandomSampler(len(self.train), seed), num_workers=self.cfg.num_workers)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=256, collate_fn=keep_batch)
