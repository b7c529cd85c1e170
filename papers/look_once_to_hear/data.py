"""Binaural target-speech-hearing scenes simulated on the fly from a speech corpus in
LibriSpeech's layout (``data_scripts/librispeech.py``: the real corpus, its fixture, or
the ``cpu`` analogue's espeak-ng corpus).

One example (paper Sec. 4 / official ``MixLibriSpeechNoisyEnroll``):

* **mixture**: the target speaker and one interfering speaker at two random azimuths,
  plus binaural background noise; the **target** is the target speaker's binaural signal
  (the network outputs both ears);
* **noisy enrollment** ("look once"): another utterance of the target speaker straight
  ahead (azimuth 0: no interaural difference), one distractor speaker at a random
  azimuth at least 20 degrees off-axis, plus noise;
* controls: a **clean enrollment** (the target's enrollment utterance alone, frontal, no
  noise) and a **wrong enrollment** (built exactly like the noisy one, but with the
  *interfering* speaker of the mixture in front).

Spatialisation is a **synthetic HRTF** (not the paper's CIPIC/RRBRIR/ASH/CATT sets):
Woodworth's spherical-head interaural time difference (head radius 8.75 cm, c = 343 m/s;
at most 0.66 ms) applied as a fractional delay to the far ear, and a broadband
interaural level difference of ``ild_db * |sin(azimuth)|`` on the far ear. Noise is
synthetic and binaural (partially correlated pink noise plus a low hum), a stand-in
for WHAM! noise. Every example is a deterministic function of (split seed, index).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from repro.training import SeededRandomSampler

CORPUS_RATE = 16000
HEAD_RADIUS = 0.0875
SPEED_OF_SOUND = 343.0


# ----------------------------------------------------------------------------- corpus


@dataclass
class Utterance:
    utt: str
    speaker: str
    path: Path
    samples: int  # at the corpus rate


class SpeechPool:
    """Utterances of one split grouped by speaker; audio read (and resampled) lazily,
    kept in memory when the split is small."""

    def __init__(self, rows, sample_rate: int, cache_limit: int = 4000) -> None:
        self.sample_rate = sample_rate
        self.utts = [Utterance(*r) for r in rows]
        self.by_speaker: dict[str, list[int]] = {}
        for i, u in enumerate(self.utts):
            self.by_speaker.setdefault(u.speaker, []).append(i)
        self.speakers = sorted(self.by_speaker)
        if len(self.speakers) < 3:
            raise ValueError(f"need at least 3 speakers, got {len(self.speakers)}")
        self._cache: dict[int, np.ndarray] | None = {} if len(self.utts) <= cache_limit else None

    def audio(self, i: int) -> np.ndarray:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        import soundfile as sf
        from scipy.signal import resample_poly

        x, sr = sf.read(str(self.utts[i].path), dtype="float32")
        if sr != CORPUS_RATE:
            raise ValueError(f"{self.utts[i].path}: {sr} Hz, expected {CORPUS_RATE}")
        if self.sample_rate != sr:
            g = math.gcd(self.sample_rate, sr)
            x = resample_poly(x, self.sample_rate // g, sr // g).astype(np.float32)
        if self._cache is not None:
            self._cache[i] = x
        return x


def load_pool(root: Path, split: str, sample_rate: int, max_speakers: int = 0) -> SpeechPool:
    from data_scripts.librispeech import read_manifest

    rows = read_manifest(Path(root), split)
    if max_speakers:
        keep = set(sorted({r[1] for r in rows})[:max_speakers])
        rows = [r for r in rows if r[1] in keep]
    return SpeechPool(rows, sample_rate)


# ----------------------------------------------------------------------------- synthetic HRTF + noise


def woodworth_itd(azimuth_deg: float) -> float:
    """Interaural time difference (s) of a rigid sphere, Woodworth's formula."""
    th = math.radians(min(abs(azimuth_deg), 90.0))
    return HEAD_RADIUS / SPEED_OF_SOUND * (th + math.sin(th))


def frac_delay(x: np.ndarray, delay: float) -> np.ndarray:
    """Delay by ``delay`` samples (fractional) via a linear phase in the frequency domain
    (zero-padded so nothing wraps around)."""
    if delay == 0:
        return x.copy()
    n = x.size
    pad = int(math.ceil(delay)) + 8
    spec = np.fft.rfft(x, n + pad)
    k = np.arange(spec.size)
    y = np.fft.irfft(spec * np.exp(-2j * np.pi * k * delay / (n + pad)), n + pad)
    return y[:n].astype(np.float32)


def spatialize(x: np.ndarray, azimuth_deg: float, sample_rate: int, ild_db: float = 8.0) -> np.ndarray:
    """Mono (N,) -> binaural (2, N) [left, right]; positive azimuth = source on the right."""
    if azimuth_deg == 0:
        return np.stack([x, x]).astype(np.float32)
    far = frac_delay(x, woodworth_itd(azimuth_deg) * sample_rate)
    far = far * 10 ** (-ild_db * abs(math.sin(math.radians(azimuth_deg))) / 20)
    near = x.astype(np.float32)
    return np.stack([far, near] if azimuth_deg > 0 else [near, far]).astype(np.float32)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def binaural_noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """(2, n) background: a shared and an independent pink component per ear (partial
    interaural coherence) plus a low hum with random frequency."""
    shared = _pink(rng, n)
    t = np.arange(n) / sample_rate
    hum = np.sin(2 * np.pi * rng.uniform(50, 200) * t + rng.uniform(0, 2 * np.pi))
    out = np.stack([shared + 0.7 * _pink(rng, n), shared + 0.7 * _pink(rng, n)])
    out = out / (np.std(out) + 1e-9) + 0.3 * hum
    return out.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-9)


# ----------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SceneConfig:
    sample_rate: int = 16000
    clip_s: float = 3.0
    enroll_s: float = 4.0
    sir_db: tuple[float, float] = (-3.0, 3.0)  # target vs interferer, mixture and enrollment
    snr_db: tuple[float, float] = (5.0, 15.0)  # target vs background noise
    min_separation_deg: float = 15.0
    enroll_offaxis_deg: float = 20.0
    ild_db: float = 8.0


class Scenes(Dataset):
    """``n`` scenes from ``pool``; scene ``i`` is a function of (``seed``, ``i``) only."""

    def __init__(self, pool: SpeechPool, n: int, seed: int, scene: SceneConfig) -> None:
        self.pool, self.n, self.seed, self.cfg = pool, n, seed, scene

    def __len__(self) -> int:
        return self.n

    def _crop(self, rng: np.random.Generator, utt: int, length: int) -> np.ndarray:
        x = self.pool.audio(utt)
        if x.size <= length:
            off = int(rng.integers(0, length - x.size + 1))
            return np.pad(x, (off, length - x.size - off)).astype(np.float32)
        start = int(rng.integers(0, x.size - length + 1))
        return x[start:start + length].astype(np.float32)

    def _utt(self, rng: np.random.Generator, spk: str, avoid: int = -1) -> int:
        cands = [u for u in self.pool.by_speaker[spk] if u != avoid] or self.pool.by_speaker[spk]
        return int(cands[int(rng.integers(len(cands)))])

    def _scene(self, rng, front_spk: str, other_spk: str, length: int, avoid: int = -1,
               front_az: float | None = 0.0, other_az: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """(front/target binaural, full noisy scene, utterance used) for two speakers + noise."""
        sr, c = self.cfg.sample_rate, self.cfg
        u = self._utt(rng, front_spk, avoid)
        s = self._crop(rng, u, length)
        s = s / _rms(s) * 10 ** (rng.uniform(-28, -18) / 20)
        o = self._crop(rng, self._utt(rng, other_spk), length)
        o = o / _rms(o) * _rms(s) * 10 ** (-rng.uniform(*c.sir_db) / 20)
        tgt = spatialize(s, front_az, sr, c.ild_db)
        oth = spatialize(o, other_az, sr, c.ild_db)
        noise = binaural_noise(rng, length, sr)
        noise = noise / _rms(noise) * _rms(tgt) * 10 ** (-rng.uniform(*c.snr_db) / 20)
        mix = tgt + oth + noise
        peak = float(np.abs(mix).max())
        if peak > 1.0:  # official: normalise the scene if it clips
            tgt, mix = tgt / peak, mix / peak
        return tgt.astype(np.float32), mix.astype(np.float32), u

    def _azimuths(self, rng) -> tuple[float, float]:
        while True:
            a, b = rng.uniform(-90, 90, size=2)
            if abs(a - b) >= self.cfg.min_separation_deg:
                return float(a), float(b)

    def _offaxis(self, rng) -> float:
        return float(rng.choice([-1, 1]) * rng.uniform(self.cfg.enroll_offaxis_deg, 90))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, i, zlib.crc32(b"tsh-scene")])
        spks = self.pool.speakers
        perm = [spks[int(k)] for k in rng.permutation(len(spks))]
        # target, interferer, enrollment distractor (!= target), wrong-enrollment distractor (!= interferer)
        t, o, d1 = perm[0], perm[1], perm[2]
        d2 = perm[3] if len(perm) > 3 else perm[2]
        n = int(round(self.cfg.clip_s * self.cfg.sample_rate))
        ne = int(round(self.cfg.enroll_s * self.cfg.sample_rate))
        az_t, az_o = self._azimuths(rng)
        target, mixture, u_mix = self._scene(rng, t, o, n, front_az=az_t, other_az=az_o)
        clean_e, enroll, _ = self._scene(rng, t, d1, ne, avoid=u_mix, front_az=0.0, other_az=self._offaxis(rng))
        _, wrong, _ = self._scene(rng, o, d2, ne, front_az=0.0, other_az=self._offaxis(rng))
        clean = clean_e / (np.abs(clean_e).max() + 1e-9) * 0.5
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return {"mixture": f(mixture), "target": f(target), "enroll": f(enroll), "enroll_clean": f(clean),
                "enroll_wrong": f(wrong)}


class SceneData(L.LightningDataModule):
    """Training scenes from ``train_split`` (seeded by the run seed) and a fixed test set
    from ``test_split`` (unseen speakers; the same scenes for every seed)."""

    def __init__(self, root: Path, train_split: str, test_split: str, n_train: int, n_test: int,
                 batch_size: int, seed: int, scene: SceneConfig, num_workers: int = 0,
                 max_train_speakers: int = 0, test_seed: int = 12345) -> None:
        super().__init__()
        self.root, self.train_split, self.test_split = Path(root), train_split, test_split
        self.n_train, self.n_test, self.batch_size, self.seed = n_train, n_test, batch_size, seed
        self.scene, self.num_workers, self.max_train_speakers, self.test_seed = scene, num_workers, \
            max_train_speakers, test_seed
        self.train_set = self.test_set = None

    def setup(self, stage: str | None = None) -> None:
        sr = self.scene.sample_rate
        if self.train_set is None:
            pool = load_pool(self.root, self.train_split, sr, self.max_train_speakers)
            self.train_set = Scenes(pool, self.n_train, self.seed, self.scene)
        if self.test_set is None:
            self.test_set = Scenes(load_pool(self.root, self.test_split, sr), self.n_test, self.test_seed, self.scene)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, num_workers=self.num_workers,
                          sampler=SeededRandomSampler(len(self.train_set), self.seed), drop_last=True)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size, num_workers=self.num_workers, shuffle=False)
