"""YouTube-VOS 2019 (Xu et al. 2018; the 2019 challenge release), semi-supervised track.

Gated: the archives are distributed through the challenge's CodaLab page after
registration (links to Google Drive), so ``download`` prints the manual step. Raw files
under ``<root>/raw``:

* ``train.zip`` (folder ``train/``: JPEGImages, Annotations, meta.json),
* ``valid.zip`` (folder ``valid/``: JPEGImages every 5th frame, first-appearance
  Annotations, meta.json),
* ``valid_all_frames.zip`` (folder ``valid_all_frames/``: every frame, used by Cutie's
  ``y19-val`` config for inference).

No checksum is published: ``verify`` checks that the archives open and hold those
folders; ``prepare`` extracts them and checks every video has frames and an annotation.
Validation scores come only from the CodaLab server (the ground truth is not public).
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from data_scripts._vos_synth import check_flat_archives, check_flat_layout
from data_scripts.common import DatasetInfo, extract_folder, manual_step

ARCHIVES = {"train.zip": "train", "valid.zip": "valid", "valid_all_frames.zip": "valid_all_frames"}

INFO = DatasetInfo(
    name="youtube_vos2019",
    description="YouTube-VOS 2019 semi-supervised VOS: 3,471 train / 507 val videos (val scored by CodaLab)",
    homepage="https://youtube-vos.org/dataset/vos/",
    licence="CC BY 4.0 (annotations); videos under YouTube terms, research use",
    size="~10 GB",
    gated=True,
    manual_step=(
        "Register for the YouTube-VOS 2019 semi-supervised challenge (https://youtube-vos.org/dataset/vos/, "
        "CodaLab competition 6066), then download train.zip, valid.zip and valid_all_frames.zip from the "
        "links it gives and save them as raw/train.zip, raw/valid.zip, raw/valid_all_frames.zip."
    ),
    layout=(
        "train/JPEGImages", "train/Annotations", "train/meta.json",
        "valid/JPEGImages", "valid/Annotations", "valid/meta.json",
        "valid_all_frames/JPEGImages",
    ),
    used_by=("cutie_vos",),
)


def download(root: Path) -> None:
    raw = root / "raw"
    if not all((raw / a).exists() for a in ARCHIVES):
        raise manual_step(INFO, raw)


def verify(root: Path) -> None:
    check_flat_archives(root, ARCHIVES, INFO.name, "YouTube-VOS 2019")


def prepare(root: Path) -> None:
    for archive, folder in ARCHIVES.items():
        extract_folder(root / "raw" / archive, folder, root / folder)
    check_flat_layout(root / "train", INFO.name, need_meta=True)
    check_flat_layout(root / "valid", INFO.name, need_meta=True)


def _zip(src: Path, folder: str, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                info = zipfile.ZipInfo(f"{folder}/{p.relative_to(src)}", date_time=(2019, 1, 1, 0, 0, 0))
                zf.writestr(info, p.read_bytes())


def make_fixture(root: Path) -> None:
    """2 train videos (6 frames, 48x64, frames named every 5th) and 2 val videos of 26
    frames in the raw archive layout: ``valid_all_frames`` holds every frame, ``valid``
    every 5th with the first annotation of each object; in ``yt-val-1`` a second object
    enters at frame 10 (its first annotation is ``00010.png``), as objects do in the real
    validation set."""
    from data_scripts._vos_synth import write_flat_layout, write_youtube_valid

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        write_flat_layout(t / "train", ["yt-train-0", "yt-train-1"], n_frames=6, height=48, width=64, seed=19,
                          frame_step=5, meta=True)
        write_youtube_valid(t / "valid", t / "valid_all_frames", ["yt-val-0"], n_frames=26, height=48, width=64,
                            seed=20)
        write_youtube_valid(t / "valid", t / "valid_all_frames", ["yt-val-1"], n_frames=26, height=48, width=64,
                            seed=21, late_at=10)
        for archive, folder in ARCHIVES.items():
            _zip(t / folder, folder, root / "raw" / archive)
