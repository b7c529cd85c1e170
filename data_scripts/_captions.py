"""Shared pieces of the captioning datasets (coco_captions, flickr8k, flickr30k,
coco_bottom_up): the one prepared layout they all use, Karpathy-split conversion,
the vocabulary with the papers' count thresholds, and the synthetic scenes that
fixtures (and the papers' cpu analogues) are made of.

Prepared layout (every captioning dataset):

* ``captions.json``: ``{"dataset": name, "images": [{"id": int, "file": str (relative
  to the dataset root) or "", "row": int (feature row, -1 if none), "split":
  "train"|"val"|"test", "sentences": [raw caption, ...], "tokens": [[word, ...], ...]}]}``
  where ``split`` follows Karpathy & Fei-Fei (2015) (COCO "restval" counts as train,
  as in both papers' code);
* ``vocab.json``: ``{"min_count": k, "words": [...]}`` built from the training split's
  tokens, words seen at least ``min_count`` times, sorted by (-count, word).

The module name starts with ``_``, so ``data_scripts.names()`` does not list it as a
dataset.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

KARPATHY_URL = "http://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
KARPATHY_ZIP = "caption_datasets.zip"
FIXTURE_MARK = ".fixture"  # raw/.fixture: a synthetic stand-in; real-data counts are not checked

# --------------------------------------------------------------------------- layout


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    tmp.replace(path)


def read_karpathy(zip_path: Path, member: str) -> dict:
    """One ``dataset_<name>.json`` out of Karpathy's ``caption_datasets.zip``."""
    with zipfile.ZipFile(zip_path) as zf:
        names = [n for n in zf.namelist() if n.endswith(member)]
        if not names:
            from repro.errors import ChecksumError

            raise ChecksumError(f"{zip_path} holds no {member} (not Karpathy's caption_datasets.zip?)")
        return json.loads(zf.read(names[0]))


def karpathy_split(split: str) -> str:
    return "train" if split == "restval" else split


def normalise_tokens(tokens: Sequence[str]) -> list[str]:
    return [t.lower() for t in tokens if t.strip()]


def build_vocab(token_lists: Iterable[Sequence[str]], min_count: int) -> list[str]:
    counts = Counter(w for toks in token_lists for w in toks)
    return sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))


def write_prepared(root: Path, name: str, images: list[dict], min_count: int) -> None:
    """``captions.json`` + ``vocab.json`` (vocabulary from the training split only)."""
    if not images:
        from repro.errors import DataMissing

        raise DataMissing(f"{name}: no images to prepare")
    vocab = build_vocab((t for im in images if im["split"] == "train" for t in im["tokens"]), min_count)
    write_json(root / "captions.json", {"dataset": name, "images": images})
    write_json(root / "vocab.json", {"min_count": min_count, "words": vocab})


def load_prepared(root: Path) -> tuple[list[dict], list[str]]:
    caps = json.loads((Path(root) / "captions.json").read_text())
    vocab = json.loads((Path(root) / "vocab.json").read_text())
    return caps["images"], vocab["words"]


def is_fixture(root: Path) -> bool:
    return (root / "raw" / FIXTURE_MARK).exists()


# --------------------------------------------------------------------------- synthetic scenes

COLOURS = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 230), "yellow": (230, 210, 40),
    "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle")
RELATIONS = {"left": ("to the left of", "to the right of"), "right": ("to the right of", "to the left of"),
             "above": ("above", "below"), "below": ("below", "above")}


def sample_scene(rng: random.Random, size: int, n_objects: int = 2) -> dict:
    """Objects with distinct colours and distinct shapes at distinct cells of a 3x3
    grid (jittered), so that every caption names each object unambiguously."""
    cells = rng.sample(range(9), n_objects)
    colours = rng.sample(sorted(COLOURS), n_objects)
    shapes = rng.sample(SHAPES, n_objects)
    cell = size / 3.0
    objects = []
    for c, col, shp in zip(cells, colours, shapes):
        r = rng.uniform(0.26, 0.36) * cell
        cx = (c % 3 + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        cy = (c // 3 + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        objects.append({"colour": col, "shape": shp, "box": [cx - r, cy - r, cx + r, cy + r]})
    return {"size": size, "objects": objects}


def render_scene(scene: dict):
    """A PIL RGB image of the scene: dark background with mild noise-free texture."""
    from PIL import Image, ImageDraw

    size = scene["size"]
    img = Image.new("RGB", (size, size), (25, 25, 30))
    draw = ImageDraw.Draw(img)
    for ob in scene["objects"]:
        x0, y0, x1, y1 = ob["box"]
        col = COLOURS[ob["colour"]]
        if ob["shape"] == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=col)
        elif ob["shape"] == "square":
            draw.rectangle([x0, y0, x1, y1], fill=col)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=col)
    return img


def relation(a: dict, b: dict) -> str:
    """Where object ``a`` is relative to ``b``: the dominant axis of their centre offset."""
    ax, ay = (a["box"][0] + a["box"][2]) / 2, (a["box"][1] + a["box"][3]) / 2
    bx, by = (b["box"][0] + b["box"][2]) / 2, (b["box"][1] + b["box"][3]) / 2
    dx, dy = ax - bx, ay - by
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def scene_captions(scene: dict) -> list[str]:
    """Three template references for a two-object scene: both orders of the relation
    and a 'there is' variant, so that consensus metrics (CIDEr) have several refs."""
    a, b = scene["objects"][:2]
    rel, inv = RELATIONS[relation(a, b)]
    na, nb = f"{a['colour']} {a['shape']}", f"{b['colour']} {b['shape']}"
    return [f"a {na} {rel} a {nb}", f"a {nb} {inv} a {na}", f"there is a {na} {rel} a {nb}"]


def scene_jpeg(scene: dict, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    render_scene(scene).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def fixture_scenes(n: int, size: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [sample_scene(rng, size) for _ in range(n)]


def real_photo() -> bytes | None:
    """One real photograph shipped with matplotlib (Grace Hopper), used in fixtures so
    that the image path also decodes a natural JPEG; None if the file is absent."""
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return p.read_bytes() if p.exists() else None
    except Exception:  # noqa: BLE001
        return None


def fixture_split(i: int, n: int) -> str:
    """Deterministic split of fixture item i of n: the last sixth test, the one before val."""
    k = max(1, n // 6)
    return "test" if i >= n - k else "val" if i >= n - 2 * k else "train"


def karpathy_entry(imgid: int, filename: str, split: str, captions: list[str], **extra) -> dict:
    """One image of a Karpathy ``dataset_*.json`` (the fields the real files carry)."""
    return {
        "imgid": imgid, "filename": filename, "split": split, "sentids": list(range(5 * imgid, 5 * imgid + len(captions))),
        "sentences": [{"raw": c.capitalize() + ".", "tokens": c.split(), "imgid": imgid, "sentid": 5 * imgid + j}
                      for j, c in enumerate(captions)],
        **extra,
    }


# --------------------------------------------------------------------------- image datasets


def archive_members(path: Path) -> list[str]:
    """Member names of a zip or tar archive (zip: the central directory only)."""
    import tarfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    try:
        with tarfile.open(path) as tf:
            return tf.getnames()
    except tarfile.TarError as exc:
        from repro.errors import ChecksumError

        raise ChecksumError(f"{path}: not a readable zip or tar archive ({exc})") from None


def check_images_present(name: str, archives: Sequence[Path], wanted: Iterable[str]) -> None:
    """Every image the Karpathy split names must be in one of the archives (by base name)."""
    from repro.errors import ChecksumError

    have = {m.rsplit("/", 1)[-1] for a in archives for m in archive_members(a)}
    missing = [w for w in wanted if w not in have]
    if missing:
        raise ChecksumError(
            f"{name}: {len(missing)} images of the Karpathy split are not in {', '.join(a.name for a in archives)} "
            f"(e.g. {missing[:3]}): incomplete or wrong archive"
        )


def prepare_images(root: Path, archives: Sequence[Path]) -> dict[str, str]:
    """Extract the archives under ``root/images`` (safely) and map each image's base name
    to its path relative to ``root``."""
    from data_scripts.common import safe_extract

    out: dict[str, str] = {}
    target = root / "images"
    for a in archives:
        for p in safe_extract(a, target):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file():
                out[p.name] = str(p.relative_to(root))
    return out


def images_from_karpathy(data: dict, files: dict[str, str]) -> list[dict]:
    images = []
    for im in data["images"]:
        images.append({
            "id": int(im.get("cocoid", im.get("imgid"))),
            "file": files[im["filename"]],
            "row": -1,
            "split": karpathy_split(im["split"]),
            "sentences": [s["raw"].strip() for s in im["sentences"]],
            "tokens": [normalise_tokens(s["tokens"]) for s in im["sentences"]],
        })
    return images


def write_fixture_images(root: Path, scenes: list[dict], archive: str, folder: str, names: list[str]) -> None:
    """Fixture images as JPEGs inside ``raw/<archive>`` under ``<folder>/``, like the real
    archives; the first one is a real photograph when matplotlib ships it."""
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    photo = real_photo()
    with zipfile.ZipFile(raw / archive, "w") as zf:
        for i, (scene, fname) in enumerate(zip(scenes, names)):
            data = photo if (i == 0 and photo is not None) else scene_jpeg(scene)
            zf.writestr(f"{folder}/{fname}", data)


def write_fixture_karpathy(root: Path, member: str, entries: list[dict], dataset: str) -> None:
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(raw / KARPATHY_ZIP, "w") as zf:
        zf.writestr(member, json.dumps({"images": entries, "dataset": dataset}))
    (raw / FIXTURE_MARK).write_text("synthetic stand-in written by make_fixture\n")
