"""Flickr8k (Hodosh, Young & Hockenmaier 2013) with Karpathy & Fei-Fei's split
(6,000 train / 1,000 val / 1,000 test images, five captions each), as Show, Attend and
Tell used it.

Raw files under ``<root>/raw``:

* ``Flickr8k_Dataset.zip`` (the images, folder ``Flicker8k_Dataset/``): licence-gated,
  obtained from the University of Illinois after accepting its terms;
* ``caption_datasets.zip``: Karpathy's split file (``dataset_flickr8k.json``),
  downloaded automatically. Neither publisher gives a checksum, so ``verify`` checks
  that the archives open and that every image of the split is in the image archive.
"""

from __future__ import annotations

from pathlib import Path

from data_scripts import _captions as C
from data_scripts.common import DatasetInfo, RemoteFile, download as fetch, manual_step
from repro.errors import DataMissing

IMAGES = "Flickr8k_Dataset.zip"
MEMBER = "dataset_flickr8k.json"
MIN_COUNT = 5  # words seen >= 5 times in the training captions (as the official Up-Down preprocessing)

INFO = DatasetInfo(
    name="flickr8k",
    description="Flickr8k images with five captions each, Karpathy split (6k/1k/1k)",
    homepage="http://nlp.cs.illinois.edu/HockenmaierGroup/8k-pictures.html",
    licence="images: Flickr terms, research use only (dataset agreement); split file: Karpathy (BSD)",
    size="~1.1 GB",
    files=(RemoteFile(C.KARPATHY_URL, C.KARPATHY_ZIP),),
    gated=True,
    manual_step=(
        "Flickr8k's images are distributed by the University of Illinois after accepting its terms of use: request "
        "them through the form at https://forms.illinois.edu/sec/1713398 (the download link arrives by e-mail) and "
        "save the image archive as raw/Flickr8k_Dataset.zip (it holds Flicker8k_Dataset/*.jpg)."
    ),
    layout=("captions.json", "vocab.json", "images"),
    used_by=("show_attend_tell",),
)


def download(root: Path) -> None:
    raw = root / "raw"
    for f in INFO.files:
        fetch(f, raw)
    if not (raw / IMAGES).exists():
        raise manual_step(INFO, raw)


def verify(root: Path) -> None:
    raw = root / "raw"
    for name in (IMAGES, C.KARPATHY_ZIP):
        if not (raw / name).exists():
            raise DataMissing(f"{raw / name} is missing", hint="repro data download flickr8k")
    data = C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    C.check_images_present("flickr8k", [raw / IMAGES], (im["filename"] for im in data["images"]))


def prepare(root: Path) -> None:
    raw = root / "raw"
    data = C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    files = C.prepare_images(root, [raw / IMAGES])
    C.write_prepared(root, "flickr8k", C.images_from_karpathy(data, files), MIN_COUNT)


def make_fixture(root: Path) -> None:
    """18 synthetic scenes (plus matplotlib's sample photograph as image 0) in the real
    raw layout: a zip of JPEGs under Flicker8k_Dataset/ and a Karpathy-format split file."""
    n = 18
    scenes = C.fixture_scenes(n, size=64, seed=8)
    names = [f"{1000 + i}_fixture.jpg" for i in range(n)]
    C.write_fixture_images(root, scenes, IMAGES, "Flicker8k_Dataset", names)
    entries = [C.karpathy_entry(i, names[i], C.fixture_split(i, n), C.scene_captions(s))
               for i, s in enumerate(scenes)]
    C.write_fixture_karpathy(root, MEMBER, entries, "flickr8k")
