"""Data for Luong et al. (2015): the Stanford-preprocessed WMT'14 English-German text
(``data_scripts/wmt14_en_de.py``), and the cpu analogue, a synthetic translation task
whose gold word alignments are known.

Both produce the same items: source ids (words + <eos>), target ids (<bos> words /
words <eos>), the raw source words (for unk replacement), the reference line (for
BLEU), and for the synthetic task the gold alignment (target index, source index).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
_FILE_SPECIALS = {"<unk>", "<s>", "</s>", "<pad>", "UNK", "<UNK>"}


# --------------------------------------------------------------------------- vocabulary


class Vocab:
    """Word <-> id with <pad>=0, <s>=1, </s>=2, <unk>=3 before the words. Words not in
    the vocabulary map to <unk> (Section 4.1: "converted into a universal token <unk>")."""

    def __init__(self, words: Sequence[str], max_words: int | None = None) -> None:
        seen: dict[str, None] = {}
        for w in words:
            if w and w not in _FILE_SPECIALS and w not in seen:
                seen[w] = None
        words = list(seen)
        if max_words is not None and max_words > 0:
            words = words[:max_words]
        self.itos = list(SPECIALS) + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def from_file(cls, path: Path, max_words: int | None = None) -> "Vocab":
        """One word per line (the Stanford ``vocab.50K.*`` files); the file's own
        special tokens, if any, are replaced by ours."""
        with open(path, encoding="utf-8") as fh:
            words = [ln.strip().split()[0] if ln.strip() else "" for ln in fh]
        return cls(words, max_words)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        get = self.stoi.get
        return [get(t, UNK) for t in tokens]

    def words(self, ids: Sequence[int]) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i])
        return out


def read_dictionary(path: Path) -> dict[str, str]:
    """``dict.en-de``: one 'source target' pair per line; the first entry of a source
    word wins."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for ln in fh:
            parts = ln.split()
            if len(parts) >= 2 and parts[0] not in out:
                out[parts[0]] = parts[1]
    return out


# --------------------------------------------------------------------------- datasets


@dataclass
class Example:
    src: list[str]
    tgt: list[str]
    align: list[tuple[int, int]] | None = None  # gold (target index, source index) links


class TrainSet(Dataset):
    """Training pairs as flat int32 arrays (4.5M pairs fit in memory this way)."""

    def __init__(self, src: np.ndarray, src_off: np.ndarray, tgt: np.ndarray, tgt_off: np.ndarray) -> None:
        self.src, self.src_off, self.tgt, self.tgt_off = src, src_off, tgt, tgt_off

    def __len__(self) -> int:
        return len(self.src_off) - 1

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.src[self.src_off[i]:self.src_off[i + 1]]
        t = self.tgt[self.tgt_off[i]:self.tgt_off[i + 1]]
        return {"src": torch.from_numpy(s.astype(np.int64)), "tgt": torch.from_numpy(t.astype(np.int64)), "idx": i}

    @classmethod
    def from_examples(cls, examples: Sequence[Example], sv: Vocab, tv: Vocab) -> "TrainSet":
        return cls(*_flat([sv.ids(e.src) for e in examples]), *_flat([tv.ids(e.tgt) for e in examples]))


def _flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    off = np.zeros(len(seqs) + 1, dtype=np.int64)
    off[1:] = np.cumsum([len(s) for s in seqs])
    flat = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(off[-1]))
    return flat, off


class EvalSet(Dataset):
    """Evaluation sentences with their raw source words, reference and gold alignment."""

    def __init__(self, examples: Sequence[Example], sv: Vocab, tv: Vocab) -> None:
        self.examples, self.sv, self.tv = list(examples), sv, tv

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.examples[i]
        return {"src": torch.tensor(self.sv.ids(e.src)), "tgt": torch.tensor(self.tv.ids(e.tgt)), "idx": i,
                "src_words": e.src, "ref": " ".join(e.tgt), "align": e.align}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad to the batch: ``src`` = words + <eos> (B, S); ``tgt_in`` = <s> words and
    ``tgt_out`` = words </s> (B, T); lengths; lists for the eval-only fields."""
    b = len(items)
    s_len = torch.tensor([len(it["src"]) + 1 for it in items])
    t_len = torch.tensor([len(it["tgt"]) + 1 for it in items])
    src = torch.full((b, int(s_len.max())), PAD, dtype=torch.long)
    tgt_in = torch.full((b, int(t_len.max())), PAD, dtype=torch.long)
    tgt_out = torch.full_like(tgt_in, PAD)
    for k, it in enumerate(items):
        n, m = len(it["src"]), len(it["tgt"])
        src[k, :n] = it["src"]
        src[k, n] = EOS
        tgt_in[k, 0] = BOS
        tgt_in[k, 1:m + 1] = it["tgt"]
        tgt_out[k, :m] = it["tgt"]
        tgt_out[k, m] = EOS
    out = {"src": src, "src_len": s_len, "tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_len": t_len,
           "idx": torch.tensor([it["idx"] for it in items])}
    for key in ("src_words", "ref", "align"):
        if key in items[0]:
            out[key] = [it[key] for it in items]
    return out


# --------------------------------------------------------------------------- WMT'14 (prepared layout)


def read_parallel(root: Path, split: str, src_lang: str, tgt_lang: str, limit: int = 0) -> list[Example]:
    out: list[Example] = []
    with open(root / f"{split}.{src_lang}", encoding="utf-8") as fs, \
            open(root / f"{split}.{tgt_lang}", encoding="utf-8") as ft:
        for ls, lt in zip(fs, ft):
            out.append(Example(ls.split(), lt.split()))
            if limit and len(out) >= limit:
                break
    return out


def encode_train(root: Path, cfg, sv: Vocab, tv: Vocab) -> tuple[TrainSet, int]:
    """Encode ``train.*`` line by line into flat arrays, dropping pairs where either
    side exceeds ``max_train_len`` words (Section 4.1) or is empty; returns the set and
    the number of pairs dropped."""
    src_ids: list[int] = []
    tgt_ids: list[int] = []
    s_off, t_off = [0], [0]
    dropped = 0
    with open(root / f"train.{cfg.src_lang}", encoding="utf-8") as fs, \
            open(root / f"train.{cfg.tgt_lang}", encoding="utf-8") as ft:
        for n, (ls, lt) in enumerate(zip(fs, ft)):
            if cfg.max_train_pairs and n >= cfg.max_train_pairs:
                break
            s, t = ls.split(), lt.split()
            if not s or not t or len(s) > cfg.max_train_len or len(t) > cfg.max_train_len:
                dropped += 1
                continue
            src_ids.extend(sv.ids(s))
            tgt_ids.extend(tv.ids(t))
            s_off.append(len(src_ids))
            t_off.append(len(tgt_ids))
    ds = TrainSet(np.asarray(src_ids, dtype=np.int32), np.asarray(s_off, dtype=np.int64),
                  np.asarray(tgt_ids, dtype=np.int32), np.asarray(t_off, dtype=np.int64))
    return ds, dropped


# --------------------------------------------------------------------------- synthetic task (cpu analogue)

# Word classes of the toy grammar: determiners, adjectives, nouns, verbs, prepositions,
# conjunctions. Each source word has exactly one target word (a random bijection per
# class), so that every aligned target word has one gold source word.
CLASS_SIZES = {"D": 4, "A": 12, "N": 24, "V": 16, "P": 6, "C": 3}
FILLER = "uh"  # source-only noise word: dropped in the translation (unaligned)
PARTICLE = "ge"  # target-only noise word before a clause-final verb (unaligned)


def synthetic_lexicon(seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    lex = {}
    for cls, n in CLASS_SIZES.items():
        tgt = [f"{cls}{i}" for i in range(n)]
        rng.shuffle(tgt)
        for i in range(n):
            lex[f"{cls.lower()}{i}"] = tgt[i]
    return lex


def synthetic_sentence(rng: random.Random, lex: dict[str, str]) -> Example:
    """One source sentence of the toy grammar and its translation with gold links.

    Source (English-like): clause (conj clause)?, clause = NP verb NP (prep NP)?,
    NP = det (adj)? noun. Target (German-like): every word translated by the lexicon,
    adjectives after their noun (local swap) and the verb at the end of its clause
    (long-distance move). Noise: a filler word in the source (prob 0.2 per clause,
    untranslated) and a particle before the verb in the target (prob 0.3 per clause,
    unaligned)."""

    def word(cls):
        return f"{cls.lower()}{rng.randrange(CLASS_SIZES[cls])}"

    def np_():
        out = [word("D")]
        if rng.random() < 0.5:
            out.append(word("A"))
        out.append(word("N"))
        return out

    src: list[str] = []
    tgt: list[str] = []
    align: list[tuple[int, int]] = []

    def emit_np(words: list[str], positions: list[int]):
        order = [0, 2, 1] if len(words) == 3 else [0, 1]  # det noun adj
        for k in order:
            align.append((len(tgt), positions[k]))
            tgt.append(lex[words[k]])

    n_clauses = 2 if rng.random() < 0.3 else 1
    for c in range(n_clauses):
        if c > 0:
            conj = word("C")
            align.append((len(tgt), len(src)))
            src.append(conj)
            tgt.append(lex[conj])
        parts: list[tuple[str, list[str], list[int]]] = []
        for role in ("np", "v", "np") + (("pp",) if rng.random() < 0.4 else ()):
            if rng.random() < 0.2 / 4:  # filler ~0.2 per clause
                src.append(FILLER)
            if role == "np":
                ws = np_()
            elif role == "v":
                ws = [word("V")]
            else:
                ws = [word("P")] + np_()
            pos = list(range(len(src), len(src) + len(ws)))
            src.extend(ws)
            parts.append((role, ws, pos))
        verb = next(p for p in parts if p[0] == "v")
        for role, ws, pos in parts:
            if role == "np":
                emit_np(ws, pos)
            elif role == "pp":
                align.append((len(tgt), pos[0]))
                tgt.append(lex[ws[0]])
                emit_np(ws[1:], pos[1:])
        if rng.random() < 0.3:
            tgt.append(PARTICLE)
        align.append((len(tgt), verb[2][0]))
        tgt.append(lex[verb[1][0]])
    return Example(src, tgt, sorted(align))


def synthetic_split(cfg, split: str) -> list[Example]:
    n = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]
    rng = random.Random(cfg.data_seed * 100 + {"train": 0, "val": 1, "test": 2}[split])
    lex = synthetic_lexicon(cfg.data_seed)
    return [synthetic_sentence(rng, lex) for _ in range(n)]


def synthetic_vocabs(cfg) -> tuple[Vocab, Vocab]:
    lex = synthetic_lexicon(cfg.data_seed)
    return Vocab(sorted(lex) + [FILLER]), Vocab(sorted(lex.values()) + [PARTICLE])


# --------------------------------------------------------------------------- datamodule


def build_vocabs(cfg) -> tuple[Vocab, Vocab]:
    if cfg.dataset == "synthetic":
        return synthetic_vocabs(cfg)
    root = Path(cfg.data_dir)
    return (Vocab.from_file(root / f"vocab.50K.{cfg.src_lang}", cfg.max_vocab),
            Vocab.from_file(root / f"vocab.50K.{cfg.tgt_lang}", cfg.max_vocab))


def build_dictionary(cfg) -> dict[str, str]:
    if cfg.dataset == "synthetic":
        return {}
    path = Path(cfg.data_dir) / f"dict.{cfg.src_lang}-{cfg.tgt_lang}"
    return read_dictionary(path) if path.exists() else {}


class NMTDataModule(L.LightningDataModule):
    def __init__(self, cfg, sv: Vocab, tv: Vocab, seed: int) -> None:
        super().__init__()
        self.cfg, self.sv, self.tv, self.seed = cfg, sv, tv, seed
        self.sets: dict[str, Dataset] = {}
        self.dropped = 0

    def setup(self, stage: str | None = None) -> None:
        cfg = self.cfg
        if self.sets:
            return
        if cfg.dataset == "synthetic":
            self.sets["train"] = TrainSet.from_examples(synthetic_split(cfg, "train"), self.sv, self.tv)
            self.sets["val"] = EvalSet(synthetic_split(cfg, "val"), self.sv, self.tv)
            self.sets["test"] = EvalSet(synthetic_split(cfg, "test"), self.sv, self.tv)
            return
        root = Path(cfg.data_dir)
        self.sets["train"], self.dropped = encode_train(root, cfg, self.sv, self.tv)
        self.sets["val"] = EvalSet(read_parallel(root, cfg.val_set, cfg.src_lang, cfg.tgt_lang,
                                                 cfg.max_eval_sents), self.sv, self.tv)
        self.sets["test"] = EvalSet(read_parallel(root, cfg.test_set, cfg.src_lang, cfg.tgt_lang,
                                                  cfg.max_eval_sents), self.sv, self.tv)

    def train_dataloader(self):
        from repro.training import SeededRandomSampler

        ds = self.sets["train"]
        return DataLoader(ds, batch_size=self.cfg.batch_size, sampler=SeededRandomSampler(len(ds), self.seed),
                          collate_fn=collate, num_workers=self.cfg.num_workers)

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=self.cfg.eval_batch_size, collate_fn=collate,
                          num_workers=self.cfg.num_workers)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=self.cfg.eval_batch_size, collate_fn=collate,
                          num_workers=self.cfg.num_workers)


def build_datamodule(cfg, vocabs: tuple[Vocab, Vocab] | None = None) -> NMTDataModule:
    sv, tv = vocabs or build_vocabs(cfg)
    # the run's seed (set by the engine before build_data) also fixes the training order
    return NMTDataModule(cfg, sv, tv, seed=torch.initial_seed() % (2**31))
