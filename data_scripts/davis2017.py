"""DAVIS 2017 semi-supervised (Pont-Tuset et al. 2017) at 480p: train/val (60/30
videos) and test-dev (30 videos, first-frame annotations only; its score comes from
the CodaLab server).

Raw files under ``<root>/raw`` (downloaded from ETH Zurich; the publisher gives no
checksum, so ``verify`` checks that the archives open and hold the DAVIS layout):

* ``DAVIS-2017-trainval-480p.zip`` (folder ``DAVIS/``),
* ``DAVIS-2017-test-dev-480p.zip`` (folder ``DAVIS/``).

``prepare`` extracts them to ``trainval/`` and ``test-dev/``, each with
``JPEGImages/480p/<video>/%05d.jpg``, ``Annotations/480p/<video>/%05d.png`` (palette
PNGs, pixel value = object id) and ``ImageSets/2017/<split>.txt`` -- the layout the
official Cutie config reads (``../DAVIS/2017/trainval/...``).

The fixture renders synthetic videos (``data_scripts/_vos_synth.py``: moving textured
shapes, a look-alike distractor crossing the target with occlusion) into archives of
the same raw layout, so ``verify`` and ``prepare`` run on it unchanged.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from data_scripts.common import DatasetInfo, RemoteFile, download as fetch, extract_folder
from repro.errors import ChecksumError, DataMissing

BASE_URL = "https://data.vision.ee.ethz.ch/csergi/share/davis/"
TRAINVAL = "DAVIS-2017-trainval-480p.zip"
TESTDEV = "DAVIS-2017-test-dev-480p.zip"
SPLITS = {TRAINVAL: ("trainval", ("train", "val")), TESTDEV: ("test-dev", ("test-dev",))}

INFO = DatasetInfo(
    name="davis2017",
    description="DAVIS 2017 semi-supervised VOS, 480p: train/val (60/30 videos) and test-dev (30 videos)",
    homepage="https://davischallenge.org/davis2017/code.html",
    licence="BSD-3-Clause (annotations); videos for non-commercial research (DAVIS terms)",
    size="~1.3 GB",
    files=(RemoteFile(BASE_URL + TRAINVAL, TRAINVAL), RemoteFile(BASE_URL + TESTDEV, TESTDEV)),
    layout=(
        "trainval/ImageSets/2017/train.txt",
        "trainval/ImageSets/2017/val.txt",
        "trainval/JPEGImages/480p",
        "trainval/Annotations/480p",
        "test-dev/ImageSets/2017/test-dev.txt",
        "test-dev/JPEGImages/480p",
        "test-dev/Annotations/480p",
    ),
    used_by=("cutie_vos",),
)


def download(root: Path) -> None:
    for f in INFO.files:
        fetch(f, root / "raw")


def _check_archive(path: Path, splits: tuple[str, ...]) -> None:
    if not path.exists():
        raise DataMissing(f"{path} is missing", hint="repro data download davis2017")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            bad = zf.testzip()
    except zipfile.BadZipFile as exc:
        raise ChecksumError(f"{path}: not a readable zip ({exc}); delete it and download again") from None
    if bad is not None:
        raise ChecksumError(f"{path}: member {bad} is corrupt; delete the archive and download again")
    for split in splits:
        if f"DAVIS/ImageSets/2017/{split}.txt" not in names:
            raise ChecksumError(f"{path} lacks DAVIS/ImageSets/2017/{split}.txt (not the DAVIS 2017 480p archive?)")
    if not any(n.startswith("DAVIS/JPEGImages/480p/") for n in names) or \
            not any(n.startswith("DAVIS/Annotations/480p/") for n in names):
        raise ChecksumError(f"{path} lacks JPEGImages/480p or Annotations/480p")


def verify(root: Path) -> None:
    for archive, (_, splits) in SPLITS.items():
        _check_archive(root / "raw" / archive, splits)


def prepare(root: Path) -> None:
    for archive, (folder, splits) in SPLITS.items():
        dest = root / folder
        extract_folder(root / "raw" / archive, "DAVIS", dest)
        for split in splits:
            videos = [v for v in (dest / "ImageSets" / "2017" / f"{split}.txt").read_text().split() if v]
            for vid in videos:
                if not (dest / "JPEGImages" / "480p" / vid).is_dir():
                    raise DataMissing(f"{folder}: video {vid} of split {split} has no frames",
                                      hint="repro data download davis2017")
                if not any((dest / "Annotations" / "480p" / vid).glob("*.png")):
                    raise DataMissing(f"{folder}: video {vid} of split {split} has no annotation",
                                      hint="repro data download davis2017")


def _zip_dir(src: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(src.rglob("*")):
            info = zipfile.ZipInfo(str(Path("DAVIS") / p.relative_to(src)) + ("/" if p.is_dir() else ""),
                                   date_time=(2017, 1, 1, 0, 0, 0))
            zf.writestr(info, b"" if p.is_dir() else p.read_bytes())


def make_fixture(root: Path) -> None:
    """Synthetic DAVIS: trainval with 4 train / 2 val videos, test-dev with 1 video (first
    annotation only, as the real test-dev), each 8 frames of 64x96 (a look-alike distractor crosses the target; every second train
    video also has a second annotated object), zipped in the real raw layout."""
    from data_scripts._vos_synth import write_davis_layout

    with tempfile.TemporaryDirectory() as tmp:
        tv = Path(tmp) / "trainval"
        write_davis_layout(tv, {"train": [f"fx-train-{i}" for i in range(4)], "val": ["fx-val-0", "fx-val-1"]},
                           n_frames=8, height=64, width=96, seed=17, second_object_every=2)
        _zip_dir(tv, root / "raw" / TRAINVAL)
        td = Path(tmp) / "test-dev"
        write_davis_layout(td, {"test-dev": ["fx-testdev-0"]}, n_frames=8, height=64, width=96, seed=18)
        for png in sorted((td / "Annotations" / "480p").glob("*/*.png"))[1:]:
            png.unlink()  # test-dev publishes the first frame's annotation only
        _zip_dir(td, root / "raw" / TESTDEV)
