"""AudioSet (Gemmeke et al., 2017): 527-class multi-label tagging of 10-s YouTube segments.

Google publishes only the segment lists (YouTube id, start, end, label MIDs) and the class
index; the audio has to be fetched from YouTube by the user, and videos disappear over
time, so every copy of AudioSet is a different subset. ``download`` fetches the public
CSVs and prints the manual audio step; ``prepare`` matches the placed audio against the
lists and records how many listed clips were found (``prepared/counts.json``; the Play It
Back recipe logs the test-clip count into the ledger). Layout::

    csv/class_labels_indices.csv        index,mid,display_name (527 rows)
    csv/balanced_train_segments.csv     "# ..." header lines, then YTID, start, end, "mid,mid"
    csv/unbalanced_train_segments.csv
    csv/eval_segments.csv
    audio/<split>/<YTID>.flac|wav       placed by the user; split = balanced_train |
                                        unbalanced_train | eval
    prepared/...                        see data_scripts/_sound_events.py (PREPARED)

The publisher gives no checksums for the CSVs; ``verify`` checks that they parse and
that every label MID is in the class index.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from repro.errors import ChecksumError, DataMissing

from . import _sound_events as S
from .common import DatasetInfo, RemoteFile, download as _download, manual_step

BASE = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/"
CLASSES = RemoteFile(BASE + "class_labels_indices.csv", "class_labels_indices.csv")
SPLITS = {
    "balanced_train": RemoteFile(BASE + "balanced_train_segments.csv", "balanced_train_segments.csv"),
    "unbalanced_train": RemoteFile(BASE + "unbalanced_train_segments.csv", "unbalanced_train_segments.csv"),
    "eval": RemoteFile(BASE + "eval_segments.csv", "eval_segments.csv"),
}
TRAIN_SPLITS = ("balanced_train", "unbalanced_train")  # the paper trains on the full (2M) set

INFO = DatasetInfo(
    name="audioset",
    description="AudioSet segment lists (527 classes, multi-label); audio acquired by the user from YouTube",
    homepage="https://research.google.com/audioset/download.html",
    licence="CC BY 4.0 (annotations); audio: YouTube terms, fetched by the user",
    size="CSV lists about 100 MB; audio about 2M x 10 s clips (several TB as video, ~100s of GB as FLAC)",
    files=(CLASSES, *SPLITS.values()),
    gated=True,
    manual_step="""
The segment CSVs are downloaded automatically (`repro data download audioset`). The audio is
not redistributed: fetch each listed segment from YouTube yourself (for example with
yt-dlp + ffmpeg, cutting [start, end] and resampling to 16 kHz mono) and place it as
audio/<split>/<YTID>.flac (or .wav), split = balanced_train | unbalanced_train | eval.
Clips that are no longer on YouTube are simply missing; prepare records how many were found.""",
    layout=("csv/class_labels_indices.csv", "csv/balanced_train_segments.csv", "csv/eval_segments.csv",
            *S.PREPARED),
    used_by=("play_it_back",),
)


def read_classes(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise ChecksumError(f"{path}: expected columns index,mid,display_name")
    rows.sort(key=lambda r: int(r["index"]))
    return [(r["mid"], r["display_name"]) for r in rows]


def read_segments(path: Path) -> list[tuple[str, float, float, list[str]]]:
    """Rows of an AudioSet segment CSV: (YTID, start, end, [label MIDs])."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 4:
                raise ChecksumError(f"{path}: malformed row {row!r}")
            out.append((row[0], float(row[1]), float(row[2]), [m for m in row[3].split(",") if m]))
    return out


def _has_audio(root: Path) -> bool:
    return (root / "audio").is_dir() and any(p.suffix in S.AUDIO_EXTS for p in (root / "audio").rglob("*"))


def download(root: Path, progress: bool = True) -> None:
    for f in (CLASSES, *SPLITS.values()):
        _download(f, root / "csv", progress=progress)
    if not _has_audio(root):
        raise manual_step(INFO, root)


def verify(root: Path) -> None:
    csvdir = root / "csv"
    needed = [CLASSES.filename, SPLITS["balanced_train"].filename, SPLITS["eval"].filename]
    missing = [n for n in needed if not (csvdir / n).exists()]
    if missing:
        raise DataMissing(f"audioset: {', '.join(missing)} missing under {csvdir}",
                          hint="repro data download audioset")
    mids = {m for m, _ in read_classes(csvdir / CLASSES.filename)}
    for split, f in SPLITS.items():
        p = csvdir / f.filename
        if not p.exists():
            continue
        rows = read_segments(p)
        unknown = {m for _, _, _, labs in rows for m in labs} - mids
        if unknown:
            raise ChecksumError(f"{p}: label MIDs not in the class index: {sorted(unknown)[:5]}")
    if not _has_audio(root):
        raise manual_step(INFO, root)


def prepare(root: Path) -> None:
    csvdir = root / "csv"
    classes = read_classes(csvdir / CLASSES.filename)
    index = {m: i for i, (m, _) in enumerate(classes)}
    counts: dict[str, dict[str, int]] = {}
    rows_by_split: dict[str, list] = {}
    for split, f in SPLITS.items():
        p = csvdir / f.filename
        if not p.exists():
            continue
        rows, listed = [], 0
        for ytid, _s, _e, labs in read_segments(p):
            listed += 1
            audio = S.find_audio(root / "audio" / split, ytid)
            if audio is not None:  # the placed file is already the [start, end] segment
                rows.append((str(audio.relative_to(root)), 0.0, 0.0, sorted(index[m] for m in labs)))
        counts[split] = {"listed": listed, "found": len(rows)}
        rows_by_split[split] = rows
    train = [r for s in TRAIN_SPLITS for r in rows_by_split.get(s, [])]
    counts["train"] = {k: sum(counts.get(s, {}).get(k, 0) for s in TRAIN_SPLITS) for k in ("listed", "found")}
    counts["test"] = dict(counts["eval"])
    if not train or not rows_by_split["eval"]:
        raise DataMissing(f"audioset: no placed audio matches the lists ({json.dumps(counts)})",
                          hint=INFO.manual_step.strip())
    S.write_prepared(root, classes, {"train": train, "test": rows_by_split["eval"]}, counts)


def make_fixture(root: Path) -> None:
    """AudioSet's layout with the synthetic vocabulary: 8 classes ('/m/fx0'...), 2-s
    16-kHz multi-label clips (24 balanced-train, 12 eval), one listed eval clip whose
    audio is missing (as on a real, shrunken copy) and an empty unbalanced list."""
    import numpy as np

    sr, dur = 16000, 2.0
    csvdir = root / "csv"
    csvdir.mkdir(parents=True, exist_ok=True)
    mids = [f"/m/fx{i}" for i in range(len(S.LABELS))]
    with open(csvdir / CLASSES.filename, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "mid", "display_name"])
        for i, (m, name) in enumerate(zip(mids, S.LABELS)):
            w.writerow([i, m, name])
    rng = np.random.default_rng(2017)
    for split, n in (("balanced_train", 24), ("eval", 12), ("unbalanced_train", 0)):
        lines = ["# Segments csv created by repro (synthetic fixture)", f"# num_ytids={n}",
                 "# YTID, start_seconds, end_seconds, positive_labels"]
        for i in range(n + (1 if split == "eval" else 0)):
            ytid = f"fx{split[:3]}{i:05d}"
            labels = S.random_labels(rng, 2)
            lines.append(f'{ytid}, 0.000, {dur:.3f}, "{",".join(mids[S.LABELS.index(x)] for x in labels)}"')
            if i < n:
                x, _ = S.mix_clip(rng, sr, dur, labels)
                S.write_wav(root / "audio" / split / f"{ytid}.wav", x, sr)
        (csvdir / SPLITS[split].filename).write_text("\n".join(lines) + "\n")
