"""MSCOCO 2014 captions with Karpathy & Fei-Fei's split (113,287 train incl. "restval",
5,000 val, 5,000 test images), the split of both captioning papers in this suite.

Raw files under ``<root>/raw``: ``train2014.zip`` and ``val2014.zip`` (images, from the
COCO site) and ``caption_datasets.zip`` (Karpathy's ``dataset_coco.json``). COCO
publishes no checksums; ``verify`` checks that the archives open and that every image
of the Karpathy split is in them.
"""

from __future__ import annotations

from pathlib import Path

from data_scripts import _captions as C
from data_scripts.common import DatasetInfo, RemoteFile, download as fetch
from repro.errors import DataMissing

MEMBER = "dataset_coco.json"
ZIPS = ("train2014.zip", "val2014.zip")
MIN_COUNT = 5  # official Up-Down preprocessing: words with >= 5 training occurrences

INFO = DatasetInfo(
    name="coco_captions",
    description="MSCOCO 2014 train/val images with five captions each, Karpathy split",
    homepage="https://cocodataset.org/#download",
    licence="annotations CC BY 4.0; images: Flickr terms of use; split file: Karpathy (BSD)",
    size="~19 GB",
    files=(
        RemoteFile("http://images.cocodataset.org/zips/train2014.zip", "train2014.zip"),
        RemoteFile("http://images.cocodataset.org/zips/val2014.zip", "val2014.zip"),
        RemoteFile(C.KARPATHY_URL, C.KARPATHY_ZIP),
    ),
    layout=("captions.json", "vocab.json", "images"),
    used_by=("show_attend_tell",),
)


def download(root: Path) -> None:
    for f in INFO.files:
        fetch(f, root / "raw")


def verify(root: Path) -> None:
    raw = root / "raw"
    missing = [n for n in (*ZIPS, C.KARPATHY_ZIP) if not (raw / n).exists()]
    if missing:
        raise DataMissing(f"coco_captions raw files missing: {missing}", hint="repro data download coco_captions")
    data = C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    C.check_images_present("coco_captions", [raw / z for z in ZIPS], (im["filename"] for im in data["images"]))


def prepare(root: Path) -> None:
    raw = root / "raw"
    data = C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    files = C.prepare_images(root, [raw / z for z in ZIPS])
    C.write_prepared(root, "coco_captions", C.images_from_karpathy(data, files), MIN_COUNT)


def make_fixture(root: Path) -> None:
    n = 18
    scenes = C.fixture_scenes(n, size=64, seed=2014)
    entries, train_names, val_names, tr_scenes, va_scenes = [], [], [], [], []
    for i, s in enumerate(scenes):
        split = C.fixture_split(i, n)
        split = "restval" if (split == "train" and i % 5 == 4) else split
        folder = "train2014" if split == "train" else "val2014"
        fname = f"COCO_{folder}_{i + 1:012d}.jpg"
        (train_names if folder == "train2014" else val_names).append(fname)
        (tr_scenes if folder == "train2014" else va_scenes).append(s)
        entries.append(C.karpathy_entry(i, fname, split, C.scene_captions(s), filepath=folder, cocoid=i + 1))
    C.write_fixture_images(root, tr_scenes, "train2014.zip", "train2014", train_names)
    C.write_fixture_images(root, va_scenes, "val2014.zip", "val2014", val_names)
    C.write_fixture_karpathy(root, MEMBER, entries, "coco")
