"""Flickr30k (Young et al. 2014) with Karpathy & Fei-Fei's split (29,000 train /
1,014 val / 1,000 test images in ``dataset_flickr30k.json``), as Show, Attend and Tell used it.

Raw files under ``<root>/raw``: the licence-gated image archive (one of
``flickr30k-images.tar.gz``, ``flickr30k-images.tar``, ``flickr30k-images.zip``) and
``caption_datasets.zip`` (Karpathy's split, downloaded automatically). No checksums are
published: ``verify`` checks that every image of the split is in the archive.
"""

from __future__ import annotations

from pathlib import Path

from data_scripts import _captions as C
from data_scripts.common import DatasetInfo, RemoteFile, download as fetch, manual_step
from repro.errors import DataMissing

ARCHIVES = ("flickr30k-images.tar.gz", "flickr30k-images.tar", "flickr30k-images.zip")
MEMBER = "dataset_flickr30k.json"
MIN_COUNT = 5

INFO = DatasetInfo(
    name="flickr30k",
    description="Flickr30k images with five captions each, Karpathy split",
    homepage="https://shannon.cs.illinois.edu/DenotationGraph/",
    licence="images: Flickr terms, research use only (dataset agreement); split file: Karpathy (BSD)",
    size="~4.4 GB",
    files=(RemoteFile(C.KARPATHY_URL, C.KARPATHY_ZIP),),
    gated=True,
    manual_step=(
        "Flickr30k's images are distributed after filling in the request form on the homepage. Save the image "
        "archive as raw/flickr30k-images.tar.gz (or .tar / .zip) with the images under flickr30k-images/."
    ),
    layout=("captions.json", "vocab.json", "images"),
    used_by=("show_attend_tell",),
)


def _archive(raw: Path) -> Path | None:
    return next((raw / a for a in ARCHIVES if (raw / a).exists()), None)


def download(root: Path) -> None:
    raw = root / "raw"
    for f in INFO.files:
        fetch(f, raw)
    if _archive(raw) is None:
        raise manual_step(INFO, raw)


def verify(root: Path) -> None:
    raw = root / "raw"
    arch = _archive(raw)
    if arch is None or not (raw / C.KARPATHY_ZIP).exists():
        raise DataMissing(f"flickr30k raw files are missing under {raw}", hint="repro data download flickr30k")
    data = C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    C.check_images_present("flickr30k", [arch], (im["filename"] for im in data["images"]))


def prepare(root: Path) -> None:
    raw = root / "raw"
    data = C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    files = C.prepare_images(root, [_archive(raw)])
    C.write_prepared(root, "flickr30k", C.images_from_karpathy(data, files), MIN_COUNT)


def make_fixture(root: Path) -> None:
    n = 18
    scenes = C.fixture_scenes(n, size=64, seed=30)
    names = [f"{20000 + i}.jpg" for i in range(n)]
    C.write_fixture_images(root, scenes, "flickr30k-images.zip", "flickr30k-images", names)
    entries = [C.karpathy_entry(i, names[i], C.fixture_split(i, n), C.scene_captions(s))
               for i, s in enumerate(scenes)]
    C.write_fixture_karpathy(root, MEMBER, entries, "flickr30k")
