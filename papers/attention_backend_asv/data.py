"""Data for the attention back-end recipe: prepared verification lists (CN-Celeb,
VoxCeleb1 or the synthetic espeak-ng corpus in CN-Celeb's layout), audio and features,
and the samplers/datamodules of the two training stages (speaker encoder on feature
crops; back-end on extracted embeddings)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from repro.blocks.speaker import fbank
from repro.training import SeededRandomSampler

# ----------------------------------------------------------------------------- lists


@dataclass
class Corpus:
    """A verification protocol: training utterances with speaker labels, enrollment sets
    (one or several utterances per model) and trials (model, test utterance, label).
    Paths are relative to ``root``."""

    root: Path
    train: list[tuple[str, str]]
    enroll: dict[str, list[str]]
    trials: list[tuple[str, str, int]]

    def utterances(self) -> list[str]:
        seen: dict[str, None] = {}
        for p, _ in self.train:
            seen[p] = None
        for ps in self.enroll.values():
            for p in ps:
                seen[p] = None
        for _, p, _ in self.trials:
            seen[p] = None
        return list(seen)

    def test_utterances(self) -> list[str]:
        return list(dict.fromkeys(p for _, p, _ in self.trials))

    def key(self) -> str:
        h = hashlib.sha1(str(self.root.resolve()).encode())
        for name in ("train.lst", "enroll.lst", "trials.lst"):
            f = self.root / "prepared" / name
            h.update(f"{name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
        return h.hexdigest()[:12]


def load_corpus(root: Path | str, max_train_utts_per_spk: int = 0) -> Corpus:
    """Read ``prepared/{train,enroll,trials}.lst`` (the format every data script writes)."""
    root = Path(root)
    prep = root / "prepared"
    train = []
    per_spk: dict[str, int] = {}
    for n, line in enumerate((prep / "train.lst").read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{prep / 'train.lst'}:{n}: expected '<path> <spk>', got {line!r}")
        if max_train_utts_per_spk and per_spk.get(parts[1], 0) >= max_train_utts_per_spk:
            continue
        per_spk[parts[1]] = per_spk.get(parts[1], 0) + 1
        train.append((parts[0], parts[1]))
    enroll = {}
    for n, line in enumerate((prep / "enroll.lst").read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{prep / 'enroll.lst'}:{n}: a model needs at least one utterance: {line!r}")
        enroll[parts[0]] = parts[1:]
    trials = []
    for n, line in enumerate((prep / "trials.lst").read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in ("0", "1") or parts[0] not in enroll:
            raise ValueError(f"{prep / 'trials.lst'}:{n}: expected '<enrolled model> <path> <1|0>', got {line!r}")
        trials.append((parts[0], parts[1], int(parts[2])))
    return Corpus(root, train, enroll, trials)


def synthetic_corpus(spec: dict) -> Path:
    """The espeak-ng corpus in CN-Celeb's layout for ``spec`` (keyword arguments of
    ``data_scripts.cnceleb.make_corpus``), built once (atomically) under
    ``$REPRO_DATA/cache/attention_backend_asv/`` and reused by later runs."""
    from data_scripts import cnceleb
    from data_scripts.common import build_into, check_ready, mark_ready
    from repro.paths import data_root

    tag = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    root = data_root() / "cache" / "attention_backend_asv" / f"synthetic-{tag}"
    if check_ready(root)[0]:
        return root

    def build(tmp: Path) -> None:
        cnceleb.make_corpus(tmp, **spec)
        cnceleb.verify(tmp)
        cnceleb.prepare(tmp)
        (tmp / "spec.json").write_text(json.dumps(spec, sort_keys=True, indent=1))
        mark_ready(tmp, [p for p in tmp.rglob("*") if p.is_file()], {"synthetic": spec})

    return build_into(root, build)


# ----------------------------------------------------------------------------- audio, features


def read_audio(path: Path) -> tuple[torch.Tensor, int]:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(x[:, 0].copy()), sr


class single_thread:
    """Run small per-utterance tensor ops on one intra-op thread: with several threads,
    OpenMP start-up/spinning dominates ops this small (10-30x slower on a busy 2-core box)."""

    def __enter__(self) -> None:
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.n)


def utterance_features(path: Path, n_mels: int = 80) -> torch.Tensor:
    wave, sr = read_audio(path)
    with single_thread():
        return fbank(wave, sr, n_mels)


class FeatureBank:
    """Log Mel features of a corpus' utterances, computed once and cached on disk
    (float16) when ``cache`` is given; computed on the fly otherwise (large corpora)."""

    def __init__(self, corpus: Corpus, n_mels: int = 80, cache: Path | None = None) -> None:
        self.corpus, self.n_mels = corpus, n_mels
        self._mem: dict[str, torch.Tensor] | None = None
        if cache is not None:
            if cache.exists():
                self._mem = torch.load(cache, weights_only=True)
            else:
                self._mem = {p: utterance_features(corpus.root / p, n_mels).half() for p in corpus.utterances()}
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".tmp{os.getpid()}")
                torch.save(self._mem, tmp)
                os.replace(tmp, cache)

    def __call__(self, rel: str) -> torch.Tensor:
        if self._mem is not None and rel in self._mem:
            return self._mem[rel].float()
        return utterance_features(self.corpus.root / rel, self.n_mels)


# ----------------------------------------------------------------------------- encoder stage


class CropDataset(Dataset):
    """Random fixed-length crops of training utterances (a different crop each epoch,
    drawn from the global torch RNG, which the engine seeds and checkpoints)."""

    def __init__(self, feats: FeatureBank, items: list[tuple[str, int]], crop: int, random: bool = True) -> None:
        self.feats, self.items, self.crop, self.random = feats, items, crop, random

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rel, label = self.items[i]
        f = self.feats(rel)
        t = f.shape[0]
        if t < self.crop:  # short utterance: repeat it
            f = f.repeat(-(-self.crop // t), 1)
            t = f.shape[0]
        start = int(torch.randint(0, t - self.crop + 1, ()).item()) if self.random else (t - self.crop) // 2
        return f[start: start + self.crop], label


class EncoderData(L.LightningDataModule):
    """Encoder training on crops; its test split (one held-out utterance per training
    speaker with at least 3, centre crop) gives a closed-set identification accuracy."""

    def __init__(self, feats: FeatureBank, corpus: Corpus, crop: int, batch_size: int, seed: int,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.speakers = sorted({s for _, s in corpus.train})
        index = {s: i for i, s in enumerate(self.speakers)}
        by_spk: dict[str, list[str]] = {}
        for p, s in corpus.train:
            by_spk.setdefault(s, []).append(p)
        train, held = [], []
        for s, ps in by_spk.items():
            if len(ps) >= 3:
                held.append((ps[-1], index[s]))
                ps = ps[:-1]
            train += [(p, index[s]) for p in ps]
        self.train_set = CropDataset(feats, train, crop)
        self.test_set = CropDataset(feats, held or train[:1], crop, random=False)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers

    def train_dataloader(self):
        n = len(self.train_set)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=SeededRandomSampler(n, self.seed),
                          drop_last=n > self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.batch_size, num_workers=self.num_workers)


# ----------------------------------------------------------------------------- back-end stage


class _Epoch:
    """Holds the epoch Lightning sets (it calls ``set_epoch`` on ``batch_sampler.sampler``)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class BalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``n_spks`` speakers x ``n_utts`` embeddings each (the official
    ``BalancedBatchSampler``: speakers drawn without replacement, each speaker's
    embeddings consumed in a shuffled order and reshuffled when exhausted), seeded by
    (seed, epoch) so a resumed run draws the same batches."""

    def __init__(self, labels: list[int], n_spks: int, n_utts: int, n_batches: int, seed: int) -> None:
        self.labels = np.asarray(labels)
        self.by_label = {int(c): np.where(self.labels == c)[0] for c in np.unique(self.labels)}
        self.eligible = sorted(c for c, idx in self.by_label.items() if len(idx) >= n_utts)
        if len(self.eligible) < n_spks:
            raise ValueError(f"need {n_spks} speakers with >= {n_utts} embeddings, have {len(self.eligible)}")
        self.n_spks, self.n_utts, self.n_batches, self.seed = n_spks, n_utts, n_batches, seed
        self.sampler = _Epoch()

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.sampler.epoch])
        order = {c: rng.permutation(self.by_label[c]) for c in self.eligible}
        used = {c: 0 for c in self.eligible}
        for _ in range(self.n_batches):
            batch = []
            for c in rng.choice(self.eligible, self.n_spks, replace=False):
                c = int(c)
                if used[c] + self.n_utts > len(order[c]):
                    order[c], used[c] = rng.permutation(self.by_label[c]), 0
                batch += order[c][used[c]: used[c] + self.n_utts].tolist()
                used[c] += self.n_utts
            yield batch


class EmbeddingSet(Dataset):
    def __init__(self, emb: torch.Tensor) -> None:
        self.emb = emb

    def __len__(self) -> int:
        return len(self.emb)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.emb[i]


class EnrollSets(Dataset):
    """Evaluation models: each item is (model index, its enrollment embeddings)."""

    def __init__(self, sets: list[torch.Tensor]) -> None:
        self.sets = sets

    def __len__(self) -> int:
        return len(self.sets)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, self.sets[i]


def pad_sets(items: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate variable-size sets: (indices, padded (B, Kmax, D), mask (B, Kmax))."""
    idx = torch.tensor([i for i, _ in items])
    kmax = max(s.shape[0] for _, s in items)
    d = items[0][1].shape[1]
    out = torch.zeros(len(items), kmax, d, dtype=items[0][1].dtype)
    mask = torch.zeros(len(items), kmax, dtype=torch.bool)
    for j, (_, s) in enumerate(items):
        out[j, : s.shape[0]] = s
        mask[j, : s.shape[0]] = True
    return idx, out, mask


class BackendData(L.LightningDataModule):
    """Back-end training on the extracted training embeddings (balanced speaker batches,
    leave-one-out trials built in the module); its test split is the evaluation models'
    enrollment sets (the module scores them against the test embeddings)."""

    def __init__(self, train_emb: torch.Tensor, train_labels: list[int], enroll_sets: list[torch.Tensor],
                 n_spks: int, n_utts: int, n_batches: int, seed: int, test_batch: int = 64) -> None:
        super().__init__()
        self.train_emb, self.train_labels = train_emb, train_labels
        self.enroll_sets = enroll_sets
        self.n_spks, self.n_utts, self.n_batches, self.seed, self.test_batch = n_spks, n_utts, n_batches, seed, test_batch

    def train_dataloader(self):
        sampler = BalancedBatchSampler(self.train_labels, self.n_spks, self.n_utts, self.n_batches, self.seed)
        return DataLoader(EmbeddingSet(self.train_emb), batch_sampler=sampler)

    def test_dataloader(self):
        return DataLoader(EnrollSets(self.enroll_sets), batch_size=self.test_batch, collate_fn=pad_sets)
