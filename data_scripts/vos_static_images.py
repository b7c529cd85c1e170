"""Static image segmentation sets for Cutie's pre-training stage (synthetic sequences made
from single images): FSS-1000, DUTS-TR, DUTS-TE, ECSSD, BIG and HRSOD, as the official
Cutie configuration lists them (``cutie/config/data/base.yaml`` ``pre_training.datasets``,
``datasets.yaml`` ``image_datasets``: folders ``fss`` (class folders, "data structure 0"),
``DUTS-TR``, ``DUTS-TE``, ``ecssd``, ``BIG_small``, ``HRSOD_small`` (flat image/mask pairs,
"data structure 1"), with oversampling multipliers 1, 1, 1, 1, 5, 5).

Source: the official training reads the redistribution that the Cutie/XMem author packs
as one archive, ``static_data.zip`` on Google Drive (XMem ``scripts/download_datasets.py``
extracts it into ``../static``); ``BIG_small`` and ``HRSOD_small`` are downsized
derivatives that exist only there. Google Drive needs a browser session, so ``download``
prints the manual step (the originals: DUTS http://saliencydetection.net/duts, ECSSD
https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html, FSS-1000
https://github.com/HKUSTCV/FSS-1000, HRSOD https://github.com/yi94code/HRSOD, BIG
https://github.com/hkchengrex/CascadePSP). No checksum is published: ``verify`` checks the
archive opens and holds the six folders (at its root or under one top folder);
``prepare`` extracts them and checks that every image has its mask.

Prepared layout: ``<root>/<folder>/...`` with ``<name>.jpg`` + ``<name>.png`` (grey mask,
foreground > 127) side by side; ``fss/<class>/<name>.jpg|png``.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from data_scripts.common import DatasetInfo, archive_names, manual_step, safe_extract
from repro.errors import ChecksumError, DataMissing

ARCHIVE = "static_data.zip"
# folder -> (nested by class, oversampling multiplier), from the official datasets.yaml
FOLDERS = {"fss": (True, 1), "DUTS-TR": (False, 1), "DUTS-TE": (False, 1), "ecssd": (False, 1),
           "BIG_small": (False, 5), "HRSOD_small": (False, 5)}

INFO = DatasetInfo(
    name="vos_static_images",
    description="Static image+mask sets for VOS pre-training (FSS-1000, DUTS-TR/TE, ECSSD, BIG, HRSOD; "
                "the Cutie/XMem redistribution)",
    homepage="https://github.com/hkchengrex/XMem/blob/main/docs/TRAINING.md",
    licence="per source set (research use; see each original's terms)",
    size="~1 GB",
    gated=True,
    manual_step=(
        "Download static_data.zip (the static-image archive that hkchengrex/XMem's "
        "scripts/download_datasets.py fetches: https://drive.google.com/uc?id=1wUJq3HcLdN-z1t4CsUhjeZ9BVDb9YKLd) "
        "and save it as raw/static_data.zip."
    ),
    layout=tuple(FOLDERS),
    used_by=("cutie_vos",),
)


def download(root: Path) -> None:
    if not (root / "raw" / ARCHIVE).exists():
        raise manual_step(INFO, root / "raw")


def _prefix(names: list[str]) -> str:
    """'' if the six folders are at the archive root, 'top/' if under one top folder."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if all(f in tops for f in FOLDERS):
        return ""
    if len(tops) == 1:
        top = next(iter(tops))
        inner = {n.split("/", 2)[1] for n in names if n.count("/") >= 2}
        if all(f in inner for f in FOLDERS):
            return top + "/"
    raise ChecksumError(f"{ARCHIVE} lacks some of {', '.join(FOLDERS)} (not the static-image archive?)")


def verify(root: Path) -> None:
    path = root / "raw" / ARCHIVE
    if not path.exists():
        raise DataMissing(f"{path} is missing", hint="repro data download vos_static_images")
    _prefix(archive_names(path))


def image_pairs(root: Path) -> list[tuple[Path, int]]:
    """(image path, multiplier) for every image of the prepared sets (its mask: same stem, .png)."""
    out = []
    for folder, (nested, mult) in FOLDERS.items():
        pattern = "*/*.jpg" if nested else "*.jpg"
        out += [(p, mult) for p in sorted((root / folder).glob(pattern))]
    return out


def check_layout(root: Path) -> None:
    for folder, (nested, _) in FOLDERS.items():
        imgs = sorted((root / folder).glob("*/*.jpg" if nested else "*.jpg"))
        if not imgs:
            raise DataMissing(f"{root / folder} holds no image", hint="repro data prepare vos_static_images")
        lacking = [p.name for p in imgs if not p.with_suffix(".png").exists()]
        if lacking:
            raise DataMissing(f"{folder}: {len(lacking)} image(s) without a mask, e.g. {lacking[0]}",
                              hint="repro data prepare vos_static_images")


def prepare(root: Path) -> None:
    path = root / "raw" / ARCHIVE
    prefix = _prefix(archive_names(path))
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        safe_extract(path, Path(tmp))
        for folder in FOLDERS:
            dest = root / folder
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(Path(tmp) / prefix / folder), str(dest))
    check_layout(root)


def make_fixture(root: Path) -> None:
    """Two small synthetic images per set (FSS: two classes of two), each a textured
    shape on a smooth background with its grey mask, zipped as ``static_data.zip``."""
    import io

    import numpy as np
    from PIL import Image

    from data_scripts._vos_synth import render_video

    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    k = 0
    with zipfile.ZipFile(raw / ARCHIVE, "w") as zf:
        for folder, (nested, _) in FOLDERS.items():
            subdirs = ["class_a/", "class_b/"] if nested else [""]
            for sub in subdirs:
                for i in range(2):
                    frames, masks = render_video(500 + k, 1, 40, 56)
                    k += 1
                    for ext, arr in (("jpg", frames[0]), ("png", np.where(masks[0] == 1, 255, 0).astype(np.uint8))):
                        buf = io.BytesIO()
                        Image.fromarray(arr).save(buf, format="JPEG" if ext == "jpg" else "PNG")
                        info = zipfile.ZipInfo(f"{folder}/{sub}{i + 1}.{ext}", date_time=(2022, 1, 1, 0, 0, 0))
                        zf.writestr(info, buf.getvalue())
