"""Deterministic synthetic sound events for the audio fixtures (AudioSet, VGG-Sound,
EPIC-Sounds layouts) and the Play It Back fine-temporal analogue.

Every generator is a pure function of its arguments and a ``numpy.random.Generator``,
so a fixture built twice is byte-identical. Events: pure tones, linear chirps, click
trains (a short pip repeated every ``spacing`` seconds), band-passed noise bursts;
``mix_clip`` places several of them into a clip over low background noise and returns
the multi-label annotation (label, onset, offset in seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The fixture vocabulary: (name, kind, parameters). Kinds are generator names below.
VOCABULARY: tuple[tuple[str, str, dict], ...] = (
    ("tone_440", "tone", {"freq": 440.0}),
    ("tone_1500", "tone", {"freq": 1500.0}),
    ("chirp_up", "chirp", {"f0": 300.0, "f1": 3000.0}),
    ("chirp_down", "chirp", {"f0": 3000.0, "f1": 300.0}),
    ("clicks_3ms", "click_train", {"spacing": 0.003}),
    ("clicks_5ms", "click_train", {"spacing": 0.005}),
    ("noise_low", "noise_burst", {"lo": 100.0, "hi": 800.0}),
    ("noise_high", "noise_burst", {"lo": 2000.0, "hi": 3800.0}),
)
LABELS = tuple(v[0] for v in VOCABULARY)


def _ramp(x: np.ndarray, sr: int, fade: float = 0.002) -> np.ndarray:
    n = min(len(x) // 2, max(1, int(fade * sr)))
    w = np.ones(len(x))
    w[:n] = np.linspace(0.0, 1.0, n)
    w[len(x) - n:] = np.linspace(1.0, 0.0, n)
    return x * w


def tone(sr: int, dur: float, freq: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    return _ramp(np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)), sr)


def chirp(sr: int, dur: float, f0: float, f1: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / max(dur, 1e-9) * t**2)
    return _ramp(np.sin(phase + rng.uniform(0, 2 * np.pi)), sr)


def click_train(sr: int, dur: float, spacing: float, rng: np.random.Generator, *, pip: float | None = None,
                carrier: float = 1000.0) -> np.ndarray:
    """A ``carrier`` tone gated on for ``pip`` seconds every ``spacing`` seconds.

    ``pip`` defaults to 40% of ``spacing``, so every spacing has the same duty cycle
    (and the same mean energy): the classes differ only in their temporal pattern."""
    n = int(dur * sr)
    pip = 0.4 * spacing if pip is None else pip
    t = np.arange(n) / sr
    phase0 = rng.uniform(0, spacing)
    gate = (((t + phase0) % spacing) < pip).astype(float)
    return gate * np.sin(2 * np.pi * carrier * t + rng.uniform(0, 2 * np.pi))


def noise_burst(sr: int, dur: float, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    n = int(dur * sr)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > min(hi, sr / 2))] = 0
    x = np.fft.irfft(spec, n)
    return _ramp(x / (np.abs(x).max() + 1e-9), sr)


GENERATORS = {"tone": tone, "chirp": chirp, "click_train": click_train, "noise_burst": noise_burst}


@dataclass(frozen=True)
class Event:
    label: str
    onset: float
    offset: float


def render_event(label: str, sr: int, dur: float, rng: np.random.Generator) -> np.ndarray:
    kind, params = {v[0]: (v[1], v[2]) for v in VOCABULARY}[label]
    return GENERATORS[kind](sr, dur, rng=rng, **params)


def mix_clip(rng: np.random.Generator, sr: int, clip_dur: float, labels: list[str],
             event_dur: tuple[float, float] = (0.2, 0.6), noise: float = 0.02) -> tuple[np.ndarray, list[Event]]:
    """A clip of ``clip_dur`` s: background noise plus one event per label at a random
    onset; returns float32 audio in [-1, 1] and the events (seconds)."""
    n = int(round(clip_dur * sr))
    x = noise * rng.standard_normal(n)
    events = []
    for lab in labels:
        d = float(rng.uniform(*event_dur))
        d = min(d, clip_dur)
        on = float(rng.uniform(0, clip_dur - d))
        ev = render_event(lab, sr, d, rng) * rng.uniform(0.3, 0.8)
        i = int(on * sr)
        x[i:i + len(ev)] += ev[: n - i]
        events.append(Event(lab, round(on, 4), round(on + len(ev[: n - i]) / sr, 4)))
    peak = np.abs(x).max()
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32), events


def write_wav(path: Path, x: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype)


def random_labels(rng: np.random.Generator, k_max: int = 2, vocabulary: tuple[str, ...] = LABELS) -> list[str]:
    k = int(rng.integers(1, k_max + 1))
    return [vocabulary[i] for i in sorted(rng.choice(len(vocabulary), size=k, replace=False))]


__all__ = ["VOCABULARY", "LABELS", "Event", "tone", "chirp", "click_train", "noise_burst", "render_event",
           "mix_clip", "write_wav", "random_labels"]


# --------------------------------------------------------------------------- prepared lists
# The three audio datasets (audioset, vggsound, epic_sounds) prepare into one format that
# papers/play_it_back/data.py reads:
#   prepared/classes.csv  "index,id,name"
#   prepared/train.csv, prepared/test.csv  "path,start_s,end_s,labels" (labels: ';'-joined indices;
#                          path relative to the dataset folder; end_s <= start_s: the whole file)
#   prepared/counts.json  {"train": {"listed": n, "found": m}, "test": {...}, ...}
AUDIO_EXTS = (".flac", ".wav")
PREPARED = ("prepared/classes.csv", "prepared/train.csv", "prepared/test.csv", "prepared/counts.json")


def find_audio(folder: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTS:
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None


def write_prepared(root: Path, classes: list[tuple[str, str]], splits: dict[str, list[tuple[str, float, float, list[int]]]],
                   counts: dict[str, dict[str, int]]) -> None:
    import csv
    import json

    out = root / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "classes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "id", "name"])
        for i, (cid, name) in enumerate(classes):
            w.writerow([i, cid, name])
    for split, rows in splits.items():
        with open(out / f"{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "start_s", "end_s", "labels"])
            for path, s, e, labs in rows:
                w.writerow([path, f"{s:.3f}", f"{e:.3f}", ";".join(str(i) for i in labs)])
    (out / "counts.json").write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n")
