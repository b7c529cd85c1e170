"""Synthetic speakers for speaker-verification fixtures and CPU analogues (not a dataset).

A *speaker* is an espeak-ng voice: an accent (language voice) + a voice variant + a
base pitch and speaking rate. An *utterance* is a random word sequence spoken by that
voice with a small per-session jitter of pitch and rate, then passed through a
"genre" channel (clean speech, interview noise, vlog reverberation, live-broadcast
telephone band, singing, movie music, drama) -- a stand-in for CN-Celeb's multi-genre
recording conditions. Everything is deterministic: espeak-ng output is reproducible,
resampling is scipy's polyphase filter (no dither), and every random choice comes from
a generator seeded by a CRC of the utterance's name (never Python's salted ``hash``).

Needs the Debian package ``espeak-ng`` (binary) and libsndfile (via ``soundfile``) to
write FLAC/WAV; :func:`require_tools` says which one is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import wave
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from repro.errors import DataMissing

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050

# English accents plus other language voices reading English text (foreign accents).
ACCENTS = (
    "en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-029",
    "en-us-nyc", "de", "fr-fr", "es", "it", "nl", "pl", "sv", "cs", "fi", "pt", "hu", "ro",
)
# Human-sounding variants only (no whisper/robot/croak voices).
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "adam", "Alex", "Alicia",
    "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "Denis",
    "ed", "edward", "Gene", "gustave", "Henrique", "Hugo", "iven", "Jacky", "john", "linda", "marcelo",
    "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "norbert", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "sandro", "shelby", "steph", "travis", "victor", "zac", "klatt", "klatt2",
    "klatt3", "klatt4", "grandpa", "grandma",
)
GENRES = ("speech", "interview", "vlog", "live_broadcast", "singing", "movie", "drama")

WORDS = tuple(
    """time year people way day man thing woman life child world school state family student group country
    problem hand part place case week company system program question work government number night point home
    water room mother area money story fact month lot right study book eye job word business issue side kind head
    house service friend father power hour game line end member law car city community name president team minute
    idea kid body information back parent face others level office door health person art war history party
    result change morning reason research girl guy moment air teacher force education foot boy age policy music
    market sense nation plan college interest death experience effect class control care field development role
    effort rate heart drug show leader light voice wife police mind price report decision son view relationship
    town road arm difference value building action model season society tax director position player record paper
    space ground form event official matter center couple site project activity star table need court oil
    situation cost industry figure street image phone data picture practice piece land product doctor wall patient
    worker news test movie north love support technology step baby computer type attention film tree source
    organization hair window evidence population site river summer garden bright quickly slowly always never
    often under over between through during before after green blue yellow silver golden gentle quiet loud
    happy careful simple modern ancient""".split()
)


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker."""

    accent: str
    variant: str
    pitch: int  # espeak-ng -p, 0..99
    speed: int  # espeak-ng -s, words per minute

    @property
    def espeak_voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def stable_seed(*parts: object) -> int:
    """A seed from the parts' text (stable across processes and Python versions)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def require_tools() -> str:
    """The espeak-ng binary; raises DataMissing naming the missing system package."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataMissing(
            "synthetic speakers need the espeak-ng binary, which is not installed",
            hint="apt-get install -y espeak-ng libsndfile1   (Debian; listed in .ci/apt-packages.txt)",
        )
    try:
        import soundfile  # noqa: F401
    except OSError as exc:  # the pure-Python soundfile wheel without libsndfile
        raise DataMissing(
            f"writing FLAC/WAV needs libsndfile ({exc})", hint="apt-get install -y libsndfile1"
        ) from None
    return exe


def make_voices(n: int, seed: int) -> list[Voice]:
    """``n`` distinct voices (accent, variant, pitch, speed), deterministic in ``seed``."""
    rng = np.random.default_rng(stable_seed("voices", seed))
    seen: set[tuple[str, str]] = set()
    out: list[Voice] = []
    while len(out) < n:
        accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
        variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
        if (accent, variant) in seen:  # one pitch/rate per accent+variant: speakers stay distinct
            continue
        seen.add((accent, variant))
        out.append(Voice(accent, variant, int(rng.integers(20, 81)), int(rng.integers(135, 186))))
    return out


def sentence(rng: np.random.Generator, n_words: tuple[int, int]) -> str:
    k = int(rng.integers(n_words[0], n_words[1] + 1))
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), size=k))


# ----------------------------------------------------------------------------- synthesis


def _espeak(exe: str, voice: str, pitch: int, speed: int, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        out = Path(tmp) / "u.wav"
        subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(out), "--", text],
                       check=True, capture_output=True, timeout=60)
        with wave.open(io.BytesIO(out.read_bytes())) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise RuntimeError("unexpected espeak-ng output format")
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE}")
    return x


def _resample(x: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(x, 320, 441)  # 22050 -> 16000 Hz


def _at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    px = np.mean(x**2) + 1e-12
    pn = np.mean(noise**2) + 1e-12
    return x + noise * np.sqrt(px / (pn * 10 ** (snr_db / 10)))


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def _reverb(rng: np.random.Generator, x: np.ndarray, rt60: float) -> np.ndarray:
    from scipy.signal import fftconvolve

    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    rir[0] = 1.0
    y = fftconvolve(x, rir)[: x.size]
    return y / (np.max(np.abs(y)) + 1e-9) * np.max(np.abs(x))


def _music(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    base = rng.uniform(110, 330)
    chord = sum(np.sin(2 * np.pi * base * r * t + rng.uniform(0, 2 * np.pi)) for r in (1.0, 1.25, 1.5, 2.0))
    return chord * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))


def genre_prosody(genre: str) -> tuple[int, float]:
    """(pitch offset, rate factor) a genre applies to the voice before synthesis."""
    return {"singing": (25, 0.7), "drama": (10, 1.3)}.get(genre, (0, 1.0))


def channel(x: np.ndarray, genre: str, rng: np.random.Generator) -> np.ndarray:
    """The genre's recording channel applied to a clean 16 kHz signal."""
    from scipy.signal import butter, sosfilt

    if genre == "interview":
        x = _at_snr(x, _pink(rng, x.size), rng.uniform(8, 18))
    elif genre == "vlog":
        x = _reverb(rng, x, rng.uniform(0.2, 0.5))
    elif genre == "live_broadcast":
        sos = butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        x = _at_snr(sosfilt(sos, x), rng.standard_normal(x.size), rng.uniform(20, 30))
    elif genre == "singing":
        x = _reverb(rng, x, 0.3)
    elif genre == "movie":
        x = _at_snr(x, _music(rng, x.size), rng.uniform(5, 12))
    elif genre not in ("speech", "drama"):
        raise ValueError(f"unknown genre {genre!r}")
    gain = 10 ** (rng.uniform(-6, 0) / 20)
    return x / (np.max(np.abs(x)) + 1e-9) * 0.9 * gain


@dataclass(frozen=True)
class UttSpec:
    """One utterance to synthesise: who, what genre, where; ``name`` seeds its randomness."""

    voice: Voice
    genre: str
    name: str
    n_words: tuple[int, int] = (6, 10)


def synthesize(spec: UttSpec, exe: str | None = None) -> np.ndarray:
    """16 kHz float signal in [-1, 1] for one utterance (deterministic in ``spec``)."""
    exe = exe or require_tools()
    rng = np.random.default_rng(stable_seed("utt", spec.name))
    text = sentence(rng, spec.n_words)
    dp, rate = genre_prosody(spec.genre)
    pitch = int(np.clip(spec.voice.pitch + dp + rng.integers(-5, 6), 0, 99))
    speed = int(np.clip(spec.voice.speed * rate + rng.integers(-10, 11), 80, 400))
    x = _resample(_espeak(exe, spec.voice.espeak_voice, pitch, speed, text))
    return channel(x, spec.genre, rng).astype(np.float32)


def write_audio(path: Path, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    sf.write(str(path), x, sample_rate, subtype="PCM_16", format=fmt)


def render(jobs: Sequence[tuple[UttSpec, Path]], workers: int | None = None) -> None:
    """Synthesise and write every (spec, path); espeak-ng runs in parallel subprocesses."""
    exe = require_tools()
    workers = workers or max(1, min(4, os.cpu_count() or 1))

    def one(job: tuple[UttSpec, Path]) -> None:
        spec, path = job
        write_audio(path, synthesize(spec, exe))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, jobs))


def concatenate(paths: Iterable[Path], out: Path, gap_s: float = 0.1) -> None:
    """Concatenate audio files (with short silences), as CN-Celeb's enroll/<spk>-enroll.flac."""
    import soundfile as sf

    parts = []
    for p in paths:
        x, sr = sf.read(str(p), dtype="float32")
        if sr != SAMPLE_RATE:
            raise ValueError(f"{p}: {sr} Hz")
        parts += [x, np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)]
    write_audio(out, np.concatenate(parts[:-1]))


def speaker_genres(name: str, k: int) -> tuple[str, ...]:
    """The ``k`` genres one speaker is recorded in (CN-Celeb speakers appear in a few genres)."""
    rng = np.random.default_rng(stable_seed("genres", name))
    return tuple(GENRES[i] for i in rng.choice(len(GENRES), size=min(k, len(GENRES)), replace=False))
