"""MOSE (Ding et al. 2023): complex-scene VOS, 1,507 train / 311 val videos.

Gated: the archives are on Google Drive / OneDrive / Baidu Pan (links on the project
page), so ``download`` prints the manual step. Raw files under ``<root>/raw``:
``train.tar.gz`` (folder ``train/``) and ``valid.tar.gz`` (folder ``valid/``, first-frame
annotations only). No checksum is published: ``verify`` checks the archives open and hold
those folders. Validation scores come only from the CodaLab server.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from data_scripts._vos_synth import check_flat_archives, check_flat_layout
from data_scripts.common import DatasetInfo, extract_folder, manual_step

ARCHIVES = {"train.tar.gz": "train", "valid.tar.gz": "valid"}

INFO = DatasetInfo(
    name="mose",
    description="MOSE complex-scene VOS: 1,507 train / 311 val videos (val scored by CodaLab)",
    homepage="https://henghuiding.github.io/MOSE/",
    licence="CC BY-NC-SA 4.0 (non-commercial research)",
    size="~20 GB",
    gated=True,
    manual_step=(
        "Download train.tar.gz and valid.tar.gz from the links on https://henghuiding.github.io/MOSE/ "
        "(Google Drive, OneDrive or Baidu Pan) and save them as raw/train.tar.gz and raw/valid.tar.gz."
    ),
    layout=("train/JPEGImages", "train/Annotations", "valid/JPEGImages", "valid/Annotations"),
    used_by=("cutie_vos",),
)


def download(root: Path) -> None:
    raw = root / "raw"
    if not all((raw / a).exists() for a in ARCHIVES):
        raise manual_step(INFO, raw)


def verify(root: Path) -> None:
    check_flat_archives(root, ARCHIVES, INFO.name, "MOSE")


def prepare(root: Path) -> None:
    for archive, folder in ARCHIVES.items():
        extract_folder(root / "raw" / archive, folder, root / folder)
        check_flat_layout(root / folder, INFO.name)


def make_fixture(root: Path) -> None:
    """2 train and 1 val synthetic videos (6 frames, 48x64) as the two raw tarballs."""
    from data_scripts._vos_synth import write_flat_layout

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        write_flat_layout(t / "train", ["mose-train-0", "mose-train-1"], n_frames=6, height=48, width=64, seed=21)
        write_flat_layout(t / "valid", ["mose-val-0"], n_frames=6, height=48, width=64, seed=22, annotate="first")
        (root / "raw").mkdir(parents=True, exist_ok=True)
        for archive, folder in ARCHIVES.items():
            with tarfile.open(root / "raw" / archive, "w:gz") as tf:
                tf.add(t / folder, arcname=folder)
