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

The ``full`` profile (and the smoke test of its wiring) renders scenes as the official
simulator does instead (``MeasuredResponses``, ``NoisePool``): every scene draws one
response set with the official weights (CIPIC 35 : RRBRIR 5 : ASH 45 : CATT 15,
``data_scripts/binaural_rirs.py``) and one subject / room of the split, convolves each
mono source with a measured binaural response of that subject / room (truncated to the
source length, as ``scipy.signal.convolve(...)[:len(src)]`` in the official code), puts the
enrolled speaker at the frontal response (CATT: |azimuth| <= 10 degrees, as the official
``enroll_azimuths_0``), and renders a WHAM! noise clip (mono mix-down) through another
response of the same room (CATT: three azimuths with gains U(0.5, 1), renormalised to
the clip's peak, as official ``CATTRIRSimulator``). Those scenes follow the official
scene specification (``generate_jams.py``): 2-3 speakers, each 15-25 dB above the
background at -25 dB, the rendered background then scaled by U(3, 10); the target is one
of the mixture's speakers, the enrollment is another such scene with the target in front.
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


# ----------------------------------------------------------------------------- measured responses + WHAM!


def _resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if sr_from == sr_to:
        return x.astype(np.float32)
    g = math.gcd(int(sr_from), int(sr_to))
    return resample_poly(x, int(sr_to) // g, int(sr_from) // g, axis=-1).astype(np.float32)


def convolve_binaural(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Mono (N,) * binaural response (2, T) -> (2, N): full convolution cut to the source
    length (official ``convolve(src, rir[ch])[:len(src)]``)."""
    from scipy.signal import fftconvolve

    return np.stack([fftconvolve(x, ir[c])[: x.size] for c in range(2)]).astype(np.float32)


@dataclass
class ResponseGroup:
    set: str
    name: str
    ir: np.ndarray  # (M, 2, T) at the scene rate
    azimuth: np.ndarray
    elevation: np.ndarray

    def frontal(self) -> np.ndarray:
        """Indices of the enrolment ("look at the speaker") responses."""
        from data_scripts.binaural_rirs import angle_from_front

        ang = angle_from_front(self.azimuth, self.elevation)
        if self.set == "catt":
            return np.flatnonzero(np.abs(self.azimuth) <= 10.0)
        if self.set == "ash":
            return np.flatnonzero(ang < 0.5)
        return np.array([int(np.argmin(ang))])

    def offaxis(self, min_deg: float) -> np.ndarray:
        from data_scripts.binaural_rirs import angle_from_front

        return np.flatnonzero(angle_from_front(self.azimuth, self.elevation) > min_deg)

    def anywhere(self) -> np.ndarray:
        if self.set == "ash":  # official ASHSimulator: non-frontal sources never use azimuth 0
            return np.flatnonzero(self.azimuth != 0)
        return np.arange(len(self.azimuth))


class MeasuredResponses:
    """The response groups (subjects / room configurations) of one split of
    ``binaural_rirs``, drawn per scene with the official set weights; arrays loaded and
    resampled to the scene rate on first use."""

    def __init__(self, root: Path, split: str, sample_rate: int) -> None:
        from data_scripts.binaural_rirs import SET_WEIGHTS, read_index

        self.root, self.sample_rate = Path(root), sample_rate
        self.rows: dict[str, list[dict]] = {}
        for r in read_index(self.root):
            if r["split"] == split:
                self.rows.setdefault(r["set"], []).append(r)
        if not self.rows:
            raise ValueError(f"{root}: no binaural responses for split {split!r}")
        self.sets = sorted(self.rows)
        w = np.array([SET_WEIGHTS[k] for k in self.sets], dtype=float)
        self.weights = w / w.sum()
        self._cache: dict[str, ResponseGroup] = {}

    def draw(self, rng: np.random.Generator) -> ResponseGroup:
        name = self.sets[int(rng.choice(len(self.sets), p=self.weights))]
        row = self.rows[name][int(rng.integers(len(self.rows[name])))]
        if row["path"] not in self._cache:
            z = np.load(self.root / row["path"])
            ir = _resample(z["ir"], int(round(float(z["sample_rate"]))), self.sample_rate)
            self._cache[row["path"]] = ResponseGroup(name, row["group"], ir, z["azimuth_deg"], z["elevation_deg"])
        return self._cache[row["path"]]


class NoisePool:
    """WHAM! clips of one split (``data_scripts/wham_noise.py``): a random crop of
    ``length`` samples at the scene rate, mixed down to mono (the official scaper events
    are mono), looped when the clip is shorter."""

    def __init__(self, root: Path, split: str, sample_rate: int) -> None:
        from data_scripts.wham_noise import read_manifest

        self.clips = read_manifest(Path(root), split)
        if not self.clips:
            raise ValueError(f"{root}: no WHAM! clips for split {split!r}")
        self.sample_rate = sample_rate

    def crop(self, rng: np.random.Generator, length: int) -> np.ndarray:
        import soundfile as sf

        path, frames, sr, _ = self.clips[int(rng.integers(len(self.clips)))]
        need = int(math.ceil(length * sr / self.sample_rate)) + 1
        start = int(rng.integers(0, max(frames - need, 0) + 1))
        x, _ = sf.read(str(path), start=start, frames=min(need, frames), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if x.size < need:
            x = np.tile(x, int(math.ceil(need / max(x.size, 1))))[:need]
        return _resample(x, sr, self.sample_rate)[:length]


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
    # measured rendering only: the official scene specification (generate_jams.py, MixLibriSpeechNoisyEnrollNorm)
    n_speakers: tuple[int, int] = (2, 3)  # speakers per scene (mixture and enrollment)
    fg_snr_db: tuple[float, float] = (15.0, 25.0)  # each speaker above the background (scaper event SNR)
    ref_db: float = -25.0  # background level (scaper ref_db)
    noise_scale: tuple[float, float] = (3.0, 10.0)  # gain on the rendered background


class Scenes(Dataset):
    """``n`` scenes from ``pool``; scene ``i`` is a function of (``seed``, ``i``) only."""

    def __init__(self, pool: SpeechPool, n: int, seed: int, scene: SceneConfig,
                 responses: MeasuredResponses | None = None, noise: NoisePool | None = None,
                 teacher=None) -> None:
        self.pool, self.n, self.seed, self.cfg = pool, n, seed, scene
        self.responses, self.noise, self.teacher = responses, noise, teacher

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

    def _scene_measured(self, rng, front_spk: str, others: list[str], length: int, avoid: int = -1,
                        enrollment: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """One scene of the official specification (``generate_jams.py`` + ``MultiChSimulator``
        + ``MixLibriSpeechNoisyEnrollNorm``): the first speaker plus ``others``, each at a
        level U(``fg_snr_db``) above the mono background, which sits at ``ref_db`` (RMS here;
        scaper measures LUFS); every source rendered through a response of one drawn room
        (in an enrollment the first speaker at a frontal response and the others more than
        ``enroll_offaxis_deg`` off-axis; in a mixture all anywhere); the rendered noise
        multiplied by U(``noise_scale``); peak-normalised if it clips. Returns (the first
        speaker's binaural signal, the scene, its utterance index)."""
        c = self.cfg
        room = self.responses.draw(rng)
        u = self._utt(rng, front_spk, avoid)
        srcs = [self._crop(rng, u, length)] + [self._crop(rng, self._utt(rng, o), length) for o in others]
        mono = self.noise.crop(rng, length) if self.noise is not None else \
            binaural_noise(rng, length, c.sample_rate).mean(axis=0)
        mono = mono / _rms(mono) * 10 ** (c.ref_db / 20)
        srcs = [x / _rms(x) * _rms(mono) * 10 ** (rng.uniform(*c.fg_snr_db) / 20) for x in srcs]
        if enrollment:
            far = room.offaxis(c.enroll_offaxis_deg)
            far = far if far.size else room.anywhere()
            idx = [int(rng.choice(room.frontal()))] + [int(rng.choice(far)) for _ in others]
        else:
            idx = [int(rng.choice(room.anywhere())) for _ in srcs]
        rendered = [convolve_binaural(x, room.ir[k]) for x, k in zip(srcs, idx)]
        if room.set == "catt":  # official CATTRIRSimulator: noise from three azimuths, renormalised to its peak
            picks = rng.choice(room.anywhere(), size=3, replace=False)
            noise = sum(rng.uniform(0.5, 1.0) * convolve_binaural(mono, room.ir[k]) for k in picks)
            noise = noise / (np.abs(noise).max() + 1e-9) * np.abs(mono).max()
        else:
            noise = convolve_binaural(mono, room.ir[int(rng.choice(room.anywhere()))])
        noise = noise * rng.uniform(*c.noise_scale)
        mix = sum(rendered) + noise
        peak = float(np.abs(mix).max())
        tgt = rendered[0]
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
        if self.responses is None:
            az_t, az_o = self._azimuths(rng)
            target, mixture, u_mix = self._scene(rng, t, o, n, front_az=az_t, other_az=az_o)
            clean_e, enroll, u_enr = self._scene(rng, t, d1, ne, avoid=u_mix, front_az=0.0,
                                                 other_az=self._offaxis(rng))
            _, wrong, _ = self._scene(rng, o, d2, ne, front_az=0.0, other_az=self._offaxis(rng))
        else:  # official scene specification: 2-3 speakers per scene (the target is one of them)
            lo, hi = self.cfg.n_speakers
            k_mix = int(rng.integers(lo, hi + 1))
            target, mixture, u_mix = self._scene_measured(rng, t, perm[1:k_mix], n)
            k_enr = int(rng.integers(lo, hi + 1))
            pick = rng.choice(len(perm) - 1, size=min(k_enr - 1, len(perm) - 1), replace=False)
            clean_e, enroll, u_enr = self._scene_measured(rng, t, [perm[1 + int(j)] for j in pick], ne,
                                                          avoid=u_mix, enrollment=True)
            rest = perm[2:]  # the wrong enrollment: the interferer in front, neither it nor the target elsewhere
            pick = rng.choice(len(rest), size=min(k_enr - 1, len(rest)), replace=False)
            _, wrong, _ = self._scene_measured(rng, o, [rest[int(j)] for j in pick], ne, enrollment=True)
        clean = clean_e / (np.abs(clean_e).max() + 1e-9) * 0.5
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        out = {"mixture": f(mixture), "target": f(target), "enroll": f(enroll), "enroll_clean": f(clean),
               "enroll_wrong": f(wrong)}
        if self.teacher is not None:  # two-stage training: the target's embedding from its clean utterance
            out["embedding_gt"] = torch.as_tensor(self.teacher(self.pool, u_enr), dtype=torch.float32)
        return out


class SceneData(L.LightningDataModule):
    """Training scenes from ``train_split`` (seeded by the run seed) and a fixed test set
    from ``test_split`` (unseen speakers; the same scenes for every seed)."""

    def __init__(self, root: Path, train_split: str, test_split: str, n_train: int, n_test: int,
                 batch_size: int, seed: int, scene: SceneConfig, num_workers: int = 0,
                 max_train_speakers: int = 0, test_seed: int = 12345, rirs_root: Path | None = None,
                 noise_root: Path | None = None, teacher=None) -> None:
        super().__init__()
        self.rirs_root, self.noise_root, self.teacher = rirs_root, noise_root, teacher
        self.root, self.train_split, self.test_split = Path(root), train_split, test_split
        self.n_train, self.n_test, self.batch_size, self.seed = n_train, n_test, batch_size, seed
        self.scene, self.num_workers, self.max_train_speakers, self.test_seed = scene, num_workers, \
            max_train_speakers, test_seed
        self.train_set = self.test_set = None

    def setup(self, stage: str | None = None) -> None:
        sr = self.scene.sample_rate
        if self.train_set is None:
            pool = load_pool(self.root, self.train_split, sr, self.max_train_speakers)
            self.train_set = Scenes(pool, self.n_train, self.seed, self.scene, *self._render("train"),
                                    teacher=self.teacher)
        if self.test_set is None:
            self.test_set = Scenes(load_pool(self.root, self.test_split, sr), self.n_test, self.test_seed, self.scene,
                                   *self._render("test"), teacher=self.teacher)

    def _render(self, split: str) -> tuple[MeasuredResponses | None, NoisePool | None]:
        """Measured responses / WHAM! noise of the official split (train or test), if given."""
        sr = self.scene.sample_rate
        rirs = MeasuredResponses(self.rirs_root, split, sr) if self.rirs_root else None
        noise = NoisePool(self.noise_root, split, sr) if self.noise_root else None
        return rirs, noise

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, num_workers=self.num_workers,
                          sampler=SeededRandomSampler(len(self.train_set), self.seed), drop_last=True)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size, num_workers=self.num_workers, shuffle=False)
