"""EPIC-Sounds (Huh et al., 2023): audio-based interaction recognition in the
EPIC-KITCHENS-100 videos (44 classes, temporal segments of untrimmed kitchen audio).

The annotations are public (github.com/epic-kitchens/epic-sounds-annotations); the audio
comes from the EPIC-KITCHENS-100 videos, which the user downloads and extracts (manual).
Play It Back itself reports EPIC-KITCHENS-100 verb/noun/action accuracy, not EPIC-Sounds;
this dataset is the issue's EPIC audio benchmark (see papers/play_it_back/README.md).
Layout::

    EPIC_Sounds_train.csv, EPIC_Sounds_validation.csv
        annotation_id,participant_id,video_id,start_timestamp,stop_timestamp,
        [start_sample,stop_sample,]description,class,class_id
    audio/<video_id>.wav|flac           placed by the user: the whole video's audio track
    prepared/...                        see data_scripts/_sound_events.py (PREPARED);
                                        test = the validation split (test labels are hidden)

No checksums are published (the annotation repository is versioned by git); ``verify``
checks the header and the class ids.
"""

from __future__ import annotations

import csv
from pathlib import Path

from repro.errors import ChecksumError, DataMissing

from . import _sound_events as S
from .common import DatasetInfo, RemoteFile, download as _download, manual_step

RAW = "https://raw.githubusercontent.com/epic-kitchens/epic-sounds-annotations/main/"
TRAIN = RemoteFile(RAW + "EPIC_Sounds_train.csv", "EPIC_Sounds_train.csv")
VAL = RemoteFile(RAW + "EPIC_Sounds_validation.csv", "EPIC_Sounds_validation.csv")
COLUMNS = {"annotation_id", "video_id", "start_timestamp", "stop_timestamp", "class", "class_id"}

INFO = DatasetInfo(
    name="epic_sounds",
    description="EPIC-Sounds annotations (44 interaction classes); audio from EPIC-KITCHENS-100 (manual)",
    homepage="https://epic-kitchens.github.io/epic-sounds/",
    licence="CC BY-NC 4.0 (annotations and EPIC-KITCHENS-100)",
    size="annotations about 10 MB; EPIC-KITCHENS-100 videos about 700 GB (audio about 100 h)",
    files=(TRAIN, VAL),
    gated=True,
    manual_step="""
The annotation CSVs are downloaded automatically (`repro data download epic_sounds`). Download
the EPIC-KITCHENS-100 videos (https://github.com/epic-kitchens/epic-kitchens-download-scripts),
extract each video's audio track (e.g. `ffmpeg -i P01_11.MP4 -vn -ac 1 -ar 24000 P01_11.wav`)
and place it as audio/<video_id>.wav (or .flac).""",
    layout=(TRAIN.filename, VAL.filename, *S.PREPARED),
    used_by=("play_it_back",),
)


def _seconds(ts: str) -> float:
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def read_annotations(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not COLUMNS <= set(rows[0]):
        raise ChecksumError(f"{path}: expected columns {sorted(COLUMNS)}")
    return rows


def _has_audio(root: Path) -> bool:
    return (root / "audio").is_dir() and any(p.suffix in S.AUDIO_EXTS for p in (root / "audio").iterdir())


def download(root: Path, progress: bool = True) -> None:
    for f in (TRAIN, VAL):
        _download(f, root, progress=progress)
    if not _has_audio(root):
        raise manual_step(INFO, root)


def verify(root: Path) -> None:
    for f in (TRAIN, VAL):
        if not (root / f.filename).exists():
            raise DataMissing(f"epic_sounds: {f.filename} missing under {root}", hint="repro data download epic_sounds")
        for r in read_annotations(root / f.filename):
            if int(r["class_id"]) < 0 or _seconds(r["stop_timestamp"]) < _seconds(r["start_timestamp"]):
                raise ChecksumError(f"{f.filename}: bad row {r['annotation_id']}")
    if not _has_audio(root):
        raise manual_step(INFO, root)


def prepare(root: Path) -> None:
    names: dict[int, str] = {}
    splits: dict[str, list] = {}
    counts: dict[str, dict[str, int]] = {}
    for split, f in (("train", TRAIN), ("test", VAL)):
        rows, listed = [], 0
        for r in read_annotations(root / f.filename):
            listed += 1
            names[int(r["class_id"])] = r["class"]
            audio = S.find_audio(root / "audio", r["video_id"])
            if audio is not None:
                rows.append((str(audio.relative_to(root)), _seconds(r["start_timestamp"]),
                             _seconds(r["stop_timestamp"]), [int(r["class_id"])]))
        splits[split], counts[split] = rows, {"listed": listed, "found": len(rows)}
    if not splits["train"] or not splits["test"]:
        raise DataMissing(f"epic_sounds: no placed audio matches the annotations ({counts})",
                          hint=INFO.manual_step.strip())
    classes = [(str(i), names.get(i, f"class_{i}")) for i in range(max(names) + 1)]
    S.write_prepared(root, classes, splits, counts)


def make_fixture(root: Path) -> None:
    """EPIC-Sounds' layout: 4 synthetic 'videos' (8 s, 24 kHz) each holding 6 labelled
    events of the synthetic vocabulary; P01_* videos train, P02_* validation."""
    import numpy as np

    sr = 24000
    rng = np.random.default_rng(2023)
    header = "annotation_id,participant_id,video_id,start_timestamp,stop_timestamp,description,class,class_id"
    lines = {"train": [header], "test": [header]}
    for v, (pid, split) in enumerate((("P01", "train"), ("P01", "train"), ("P02", "test"), ("P02", "test"))):
        vid = f"{pid}_{v + 1:02d}"
        x = 0.02 * rng.standard_normal(8 * sr)
        for k in range(6):
            c = int(rng.integers(len(S.LABELS)))
            on = k * 1.3 + float(rng.uniform(0, 0.3))
            ev = S.render_event(S.LABELS[c], sr, 0.8, rng) * 0.6
            i = int(on * sr)
            x[i:i + len(ev)] += ev
            ts = lambda t: f"00:00:{t:06.3f}"  # noqa: E731
            lines[split].append(f"{vid}_{k},{pid},{vid},{ts(on)},{ts(on + 0.8)},{S.LABELS[c]},{S.LABELS[c]},{c}")
        S.write_wav(root / "audio" / f"{vid}.wav", (x / max(1.0, np.abs(x).max() / 0.99)).astype(np.float32), sr)
    root.mkdir(parents=True, exist_ok=True)
    (root / TRAIN.filename).write_text("\n".join(lines["train"]) + "\n")
    (root / VAL.filename).write_text("\n".join(lines["test"]) + "\n")
