"""Bottom-up attention features for MSCOCO 2014 (Anderson et al. 2018): 36 regions per
image (fixed), each a 2048-d mean-pooled ResNet-101 Faster R-CNN feature (Visual Genome
objects + attributes), with the Karpathy split captions.

Raw files under ``<root>/raw``:

* ``trainval_36.zip``: the official 36-box features for COCO train+val 2014 (about
  25 GB; a TSV with ``image_id, image_w, image_h, num_boxes, boxes, features``, boxes and
  features base64-encoded float32), linked from the official bottom-up-attention README;
* ``caption_datasets.zip``: Karpathy's split file (``dataset_coco.json``).

The features' hosts have moved before (Google storage, then Azure blob storage) and may
be gone. If ``repro data download coco_bottom_up`` cannot fetch them, recreate the file
with the official repository (``tools/generate_tsv.py`` with MIN_BOXES = MAX_BOXES = 36 and
the ``resnet101_faster_rcnn_final_iter_320000.caffemodel`` model its README names), or
copy a mirror of ``trainval_36.zip``, into ``raw/``, then run ``repro data prepare
coco_bottom_up``. No checksum is published: ``prepare`` checks that every image of the
Karpathy split has 36 boxes of 2048-d features.

Prepared layout: ``features.npy`` (float16, N x 36 x 2048, memory-mapped at run time),
``boxes.npy`` (float32, N x 36 x 4, pixels x1 y1 x2 y2), ``image_wh.npy`` (N x 2),
``captions.json`` (each image's ``row`` indexes the arrays) and ``vocab.json``.
"""

from __future__ import annotations

import base64
import csv
import io
import random
import sys
import zipfile
from pathlib import Path

import numpy as np

from data_scripts import _captions as C
from data_scripts.common import DatasetInfo, RemoteFile, download as fetch
from repro.errors import ChecksumError, DataMissing, ManualStepRequired, ReproError

FEATURES_ZIP = "trainval_36.zip"
TSV_NAME = "trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv"
FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
MEMBER = "dataset_coco.json"
BOXES, DIM = 36, 2048
MIN_COUNT = 5  # official Up-Down preprocess_coco.py: min_vocab_count=5

MANUAL = (
    "The 36-box bottom-up features (trainval_36.zip, ~25 GB) are linked from "
    "https://github.com/peteanderson80/bottom-up-attention (README, 'Pretrained features'). If the link is dead, "
    "regenerate them with that repository's tools/generate_tsv.py (MIN_BOXES=MAX_BOXES=36, the "
    "resnet101_faster_rcnn_final_iter_320000.caffemodel model) or copy a mirror, and save the zip as "
    "raw/trainval_36.zip (holding one .tsv with image_id, image_w, image_h, num_boxes, boxes, features)."
)

INFO = DatasetInfo(
    name="coco_bottom_up",
    description="MSCOCO 2014 bottom-up attention features (36 boxes x 2048-d) with Karpathy split captions",
    homepage="https://github.com/peteanderson80/bottom-up-attention",
    licence="features: MIT (bottom-up-attention); captions CC BY 4.0; split file: Karpathy (BSD)",
    size="~25 GB",
    files=(
        RemoteFile("https://imagecaption.blob.core.windows.net/imagecaption/trainval_36.zip", FEATURES_ZIP),
        RemoteFile(C.KARPATHY_URL, C.KARPATHY_ZIP),
    ),
    manual_step=MANUAL,
    layout=("captions.json", "vocab.json", "features.npy", "boxes.npy", "image_wh.npy"),
    used_by=("bottom_up_top_down",),
)


def download(root: Path) -> None:
    raw = root / "raw"
    fetch(INFO.files[1], raw)
    if (raw / FEATURES_ZIP).exists():
        return
    try:
        fetch(INFO.files[0], raw)
    except ReproError as exc:
        raise ManualStepRequired(
            f"the bottom-up features could not be downloaded ({exc.message})",
            hint=MANUAL + "\nThen run: repro data prepare coco_bottom_up",
        ) from None


def _tsv_member(zf: zipfile.ZipFile) -> str:
    names = [n for n in zf.namelist() if n.endswith(".tsv")]
    if not names:
        raise ChecksumError(f"{FEATURES_ZIP} holds no .tsv file")
    return names[0]


def iter_rows(zip_path: Path):
    """(image_id, w, h, boxes float32 (k, 4), features float32 (k, D)) per TSV row."""
    csv.field_size_limit(sys.maxsize)
    with zipfile.ZipFile(zip_path) as zf, zf.open(_tsv_member(zf)) as fh:
        reader = csv.DictReader(io.TextIOWrapper(fh, encoding="ascii"), delimiter="\t", fieldnames=FIELDS)
        for row in reader:
            k = int(row["num_boxes"])
            boxes = np.frombuffer(base64.b64decode(row["boxes"]), dtype=np.float32).reshape(k, 4)
            feats = np.frombuffer(base64.b64decode(row["features"]), dtype=np.float32).reshape(k, -1)
            yield int(row["image_id"]), int(float(row["image_w"])), int(float(row["image_h"])), boxes, feats


def verify(root: Path) -> None:
    raw = root / "raw"
    for name in (FEATURES_ZIP, C.KARPATHY_ZIP):
        if not (raw / name).exists():
            raise DataMissing(f"{raw / name} is missing", hint="repro data download coco_bottom_up")
    C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    first = next(iter_rows(raw / FEATURES_ZIP), None)
    if first is None or first[3].shape != (BOXES, 4) or first[4].shape != (BOXES, DIM):
        raise ChecksumError(f"{FEATURES_ZIP}: the first row is not {BOXES} boxes of {DIM}-d features")


def prepare(root: Path) -> None:
    raw = root / "raw"
    data = C.read_karpathy(raw / C.KARPATHY_ZIP, MEMBER)
    wanted = {int(im["cocoid"]) for im in data["images"]}
    ids: list[int] = []
    # first pass: which rows exist (the TSV order is arbitrary)
    for image_id, *_ in iter_rows(raw / FEATURES_ZIP):
        if image_id in wanted:
            ids.append(image_id)
    missing = wanted - set(ids)
    if missing:
        raise ChecksumError(f"{len(missing)} Karpathy-split images have no features (e.g. {sorted(missing)[:3]})")
    n = len(ids)
    feats = np.lib.format.open_memmap(root / "features.npy", mode="w+", dtype=np.float16, shape=(n, BOXES, DIM))
    boxes = np.zeros((n, BOXES, 4), np.float32)
    wh = np.zeros((n, 2), np.float32)
    row_of = {i: r for r, i in enumerate(ids)}
    for image_id, w, h, b, f in iter_rows(raw / FEATURES_ZIP):
        r = row_of.get(image_id)
        if r is None:
            continue
        if b.shape != (BOXES, 4) or f.shape != (BOXES, DIM):
            raise ChecksumError(f"image {image_id}: {b.shape[0]} boxes of {f.shape[1]}-d, expected {BOXES}x{DIM}")
        feats[r] = f.astype(np.float16)
        boxes[r], wh[r] = b, (w, h)
    feats.flush()
    del feats
    np.save(root / "boxes.npy", boxes)
    np.save(root / "image_wh.npy", wh)
    images = []
    for im in data["images"]:
        images.append({
            "id": int(im["cocoid"]), "file": "", "row": row_of[int(im["cocoid"])],
            "split": C.karpathy_split(im["split"]),
            "sentences": [s["raw"].strip() for s in im["sentences"]],
            "tokens": [C.normalise_tokens(s["tokens"]) for s in im["sentences"]],
        })
    C.write_prepared(root, "coco_bottom_up", images, MIN_COUNT)


def _fixture_row(scene: dict, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """36 boxes: the scene's objects and random boxes; a feature is a noisy code of the
    box's colour and shape (what a detector's attribute/object head would encode)."""
    size = scene["size"]
    gen = np.random.default_rng(rng.randrange(1 << 30))
    boxes = [ob["box"] for ob in scene["objects"]]
    while len(boxes) < BOXES:
        x0, y0 = rng.uniform(0, size * 0.7), rng.uniform(0, size * 0.7)
        boxes.append([x0, y0, x0 + rng.uniform(6, size * 0.3), y0 + rng.uniform(6, size * 0.3)])
    feats = np.abs(gen.normal(0, 0.1, size=(BOXES, DIM))).astype(np.float32)
    colours, shapes = sorted(C.COLOURS), C.SHAPES
    for j, ob in enumerate(scene["objects"]):
        feats[j, colours.index(ob["colour"])] += 1.0
        feats[j, len(colours) + shapes.index(ob["shape"])] += 1.0
    order = gen.permutation(BOXES)
    return np.asarray(boxes, np.float32)[order], feats[order]


def make_fixture(root: Path) -> None:
    n = 18
    scenes = C.fixture_scenes(n, size=64, seed=36)
    rng = random.Random(36)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, delimiter="\t", fieldnames=FIELDS)
    entries = []
    for i, s in enumerate(scenes):
        boxes, feats = _fixture_row(s, rng)
        writer.writerow({
            "image_id": i + 1, "image_w": s["size"], "image_h": s["size"], "num_boxes": BOXES,
            "boxes": base64.b64encode(boxes.tobytes()).decode(), "features": base64.b64encode(feats.tobytes()).decode(),
        })
        split = C.fixture_split(i, n)
        folder = "train2014" if split == "train" else "val2014"
        entries.append(C.karpathy_entry(i, f"COCO_{folder}_{i + 1:012d}.jpg", split, C.scene_captions(s),
                                        filepath=folder, cocoid=i + 1))
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(raw / FEATURES_ZIP, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(TSV_NAME, buf.getvalue())
    C.write_fixture_karpathy(root, MEMBER, entries, "coco")
