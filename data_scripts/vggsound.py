"""VGG-Sound (Chen et al., 2020): single-label classification of 10-s YouTube clips
(309 classes in the published list; Play It Back uses 309 outputs).

The Oxford VGG group publishes one list, ``vggsound.csv`` (YTID, start second, label,
train|test, no header); the audio has to be fetched from YouTube by the user, and the
set shrinks over time. ``download`` fetches the list and prints the manual step;
``prepare`` matches the placed audio and records found/listed counts. Layout::

    vggsound.csv                         "YTID,start_seconds,label,split"
    audio/<YTID>_<start:06d>.wav|flac    placed by the user: the 10-s clip, 16 kHz mono
    prepared/...                         see data_scripts/_sound_events.py (PREPARED)

The list has no published checksum; ``verify`` checks that it parses and that every row
names split train or test.
"""

from __future__ import annotations

import csv
from pathlib import Path

from repro.errors import ChecksumError, DataMissing

from . import _sound_events as S
from .common import DatasetInfo, RemoteFile, download as _download, manual_step

LIST = RemoteFile("https://www.robots.ox.ac.uk/~vgg/data/vggsound/vggsound.csv", "vggsound.csv")

INFO = DatasetInfo(
    name="vggsound",
    description="VGG-Sound clip list (single label, train/test); audio acquired by the user from YouTube",
    homepage="https://www.robots.ox.ac.uk/~vgg/data/vggsound/",
    licence="CC BY 4.0 (list); audio: YouTube terms, fetched by the user",
    size="list about 10 MB; audio about 200k x 10 s clips",
    files=(LIST,),
    gated=True,
    manual_step="""
The clip list is downloaded automatically (`repro data download vggsound`). Fetch each listed
clip's audio from YouTube yourself ([start, start + 10 s], 16 kHz mono) and place it as
audio/<YTID>_<start:06d>.wav (or .flac), e.g. audio/---g-f_I2yQ_000001.wav.
Clips that are no longer available are missing; prepare records how many were found.""",
    layout=(LIST.filename, *S.PREPARED),
    used_by=("play_it_back",),
)


def read_list(path: Path) -> list[tuple[str, int, str, str]]:
    out = []
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if not row:
                continue
            if len(row) != 4 or row[3] not in ("train", "test"):
                raise ChecksumError(f"{path}: malformed row {row!r} (expected YTID,start,label,train|test)")
            out.append((row[0], int(float(row[1])), row[2], row[3]))
    return out


def _has_audio(root: Path) -> bool:
    return (root / "audio").is_dir() and any(p.suffix in S.AUDIO_EXTS for p in (root / "audio").iterdir())


def download(root: Path, progress: bool = True) -> None:
    _download(LIST, root, progress=progress)
    if not _has_audio(root):
        raise manual_step(INFO, root)


def verify(root: Path) -> None:
    if not (root / LIST.filename).exists():
        raise DataMissing(f"vggsound: {LIST.filename} missing under {root}", hint="repro data download vggsound")
    if not read_list(root / LIST.filename):
        raise ChecksumError(f"{root / LIST.filename} is empty")
    if not _has_audio(root):
        raise manual_step(INFO, root)


def prepare(root: Path) -> None:
    rows = read_list(root / LIST.filename)
    labels = sorted({r[2] for r in rows})
    index = {lab: i for i, lab in enumerate(labels)}
    splits: dict[str, list] = {"train": [], "test": []}
    counts = {"train": {"listed": 0, "found": 0}, "test": {"listed": 0, "found": 0}}
    for ytid, start, lab, split in rows:
        counts[split]["listed"] += 1
        audio = S.find_audio(root / "audio", f"{ytid}_{start:06d}")
        if audio is not None:
            counts[split]["found"] += 1
            splits[split].append((str(audio.relative_to(root)), 0.0, 0.0, [index[lab]]))
    if not splits["train"] or not splits["test"]:
        raise DataMissing(f"vggsound: no placed audio matches the list ({counts})", hint=INFO.manual_step.strip())
    S.write_prepared(root, [(lab, lab) for lab in labels], splits, counts)


def make_fixture(root: Path) -> None:
    """VGG-Sound's layout with the synthetic vocabulary: single-label 2-s 16-kHz clips,
    3 train and 2 test per class, one listed test clip whose audio is missing."""
    import numpy as np

    sr, dur = 16000, 2.0
    rng = np.random.default_rng(2020)
    lines = []
    for c, lab in enumerate(S.LABELS):
        for i in range(5):
            split = "train" if i < 3 else "test"
            ytid, start = f"fxv{c:02d}{i:03d}", 10 * i
            lines.append(f"{ytid},{start},{lab},{split}")
            x, _ = S.mix_clip(rng, sr, dur, [lab])
            S.write_wav(root / "audio" / f"{ytid}_{start:06d}.wav", x, sr)
    lines.append(f"fxvmissing,0,{S.LABELS[0]},test")
    root.mkdir(parents=True, exist_ok=True)
    (root / LIST.filename).write_text("\n".join(lines) + "\n")
