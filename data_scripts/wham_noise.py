"""WHAM! noise (Wichern et al., Interspeech 2019): binaural background recordings (cafés,
restaurants, bars, offices) that Look Once to Hear mixes under its scenes (official
config: ``bg_dir = data/MixLibriSpeech/wham_noise``; training uses ``tr``, validation
``cv``, test ``tt``).

One public zip (about 18 GB, no published checksum; the official data README points at
the wham.whisper.ai mirror) holding ``wham_noise/{tr,cv,tt}/*.wav`` with 20,000 / 5,000 /
3,000 clips. ``verify`` checks those counts once extracted; ``prepare`` writes::

    prepared/<tr|cv|tt>.tsv   "<relative wav path>\\t<frames>\\t<sample rate>\\t<channels>"

The fixture writes a few synthetic two-channel noise clips (pink noise, a hum and
clatter bursts) in the same layout, with a marker file that exempts it from the counts.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from repro.errors import ChecksumError, DataMissing

from .common import DatasetInfo, RemoteFile, download as _download, safe_extract

SPLITS = ("tr", "cv", "tt")
EXPECTED = {"tr": 20000, "cv": 5000, "tt": 3000}  # official data README
ZIP = RemoteFile("https://my-bucket-a8b4b49c25c811ee9a7e8bba05fa24c7.s3.amazonaws.com/wham_noise.zip",
                 "wham_noise.zip")
FIXTURE_MARKER = "FIXTURE"
SPLIT_OF = {"train": "tr", "val": "cv", "test": "tt"}

INFO = DatasetInfo(
    name="wham_noise",
    description="WHAM! noise: binaural ambient recordings, tr/cv/tt (20k/5k/3k clips)",
    homepage="http://wham.whisper.ai/",
    licence="CC BY-NC 4.0",
    size="about 18 GB zip (38 GB extracted)",
    files=(ZIP,),
    layout=tuple(f"wham_noise/{s}" for s in SPLITS) + tuple(f"prepared/{s}.tsv" for s in SPLITS),
    used_by=("look_once_to_hear",),
)


def download(root: Path, progress: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _download(ZIP, root, progress=progress)


def _counts(root: Path) -> dict[str, int]:
    return {s: sum(1 for _ in (root / "wham_noise" / s).glob("*.wav")) for s in SPLITS}


def verify(root: Path) -> None:
    if (root / "wham_noise").is_dir():
        got = _counts(root)
        if (root / FIXTURE_MARKER).exists():
            if not all(got.values()):
                raise DataMissing(f"fixture split without clips: {got}")
            return
        if got != EXPECTED:
            raise ChecksumError(f"{root / 'wham_noise'} holds {got} clips, expected {EXPECTED} (incomplete "
                                "extraction?)", hint="delete the folder and run: repro data prepare wham_noise")
        return
    if not (root / ZIP.filename).exists():
        raise DataMissing(f"{root / ZIP.filename} is missing", hint="repro data download wham_noise")


def prepare(root: Path) -> None:
    import soundfile as sf

    if not (root / "wham_noise").is_dir():
        safe_extract(root / ZIP.filename, root)
        verify(root)
    out = root / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        rows = []
        for p in sorted((root / "wham_noise" / s).glob("*.wav")):
            info = sf.info(str(p))
            rows.append(f"{p.relative_to(root).as_posix()}\t{info.frames}\t{info.samplerate}\t{info.channels}")
        (out / f"{s}.tsv").write_text("\n".join(rows) + "\n")


def read_manifest(root: Path, split: str) -> list[tuple[Path, int, int, int]]:
    """[(absolute path, frames, sample rate, channels)] of split tr/cv/tt (or train/val/test)."""
    split = SPLIT_OF.get(split, split)
    path = root / "prepared" / f"{split}.tsv"
    if not path.exists():
        raise DataMissing(f"{path} is missing", hint="repro data prepare wham_noise")
    rows = []
    for ln in path.read_text().splitlines():
        if ln.strip():
            rel, n, sr, ch = ln.split("\t")
            rows.append((root / rel, int(n), int(sr), int(ch)))
    return rows


def make_fixture(root: Path) -> None:
    """4 clips per split, 2 s, two channels at 16 kHz: partially coherent pink noise, a hum
    and random clatter bursts (deterministic)."""
    import numpy as np
    import soundfile as sf

    sr, n = 16000, 32000
    (root / FIXTURE_MARKER).write_text("synthetic fixture: clip counts are not WHAM!'s\n")
    for s in SPLITS:
        d = root / "wham_noise" / s
        d.mkdir(parents=True, exist_ok=True)
        for k in range(4):
            name = f"fixture_{s}_{k:02d}"
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            spec = np.fft.rfft(rng.standard_normal((3, n)), axis=-1)
            f = np.maximum(np.arange(spec.shape[-1]), 1.0)
            pink = np.fft.irfft(spec / np.sqrt(f), n, axis=-1)
            x = np.stack([pink[0] + 0.6 * pink[1], pink[0] + 0.6 * pink[2]])
            x /= np.abs(x).max()
            t = np.arange(n) / sr
            x += 0.2 * np.sin(2 * np.pi * rng.uniform(60, 180) * t)
            for _ in range(6):
                at = int(rng.integers(0, n - 400))
                x[:, at:at + 400] += rng.standard_normal((2, 400)) * np.exp(-np.arange(400) / 60) * 0.8
            sf.write(str(d / f"{name}.wav"), (0.3 * x / np.abs(x).max()).T.astype(np.float32), sr, subtype="PCM_16")
