"""Synthetic videos for video object segmentation, written in the DAVIS 2017 layout.

Each video: a smooth random-colour background, a textured *target* object (annotated
as object 1) and a *look-alike distractor* (same shape, colour within a few grey
levels, same stripe texture; never annotated) whose path crosses the target's path
halfway through the video. At the crossing one occludes the other (chosen at random),
so a tracker that matches pixels by appearance alone can jump to the distractor.
Optionally a second, differently coloured annotated object (id 2) moves elsewhere.

Everything is drawn with numpy from one seed, so a fixture is deterministic and takes
milliseconds per frame. Used by ``data_scripts/davis2017.py`` (fixtures) and by the
``cutie_vos`` recipe's CPU analogue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The DAVIS palette for the first ids (0 background, 1 red, 2 green, 3 yellow ...).
_BASE_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128, 128, 128, 128]


def davis_palette() -> list[int]:
    return _BASE_PALETTE + [0] * (768 - len(_BASE_PALETTE))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.uniform(40, 215, size=(4, 4, 3))
    ys = np.linspace(0, 3, h)
    xs = np.linspace(0, 3, w)
    y0 = np.clip(np.floor(ys).astype(int), 0, 2)
    x0 = np.clip(np.floor(xs).astype(int), 0, 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    c = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    img = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    return img + rng.normal(0, 6, size=(h, w, 3))


def _shape_mask(kind: str, cy: float, cx: float, ry: float, rx: float, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = (yy - cy) / ry, (xx - cx) / rx
    if kind == "ellipse":
        return dy**2 + dx**2 <= 1.0
    if kind == "square":
        return (np.abs(dy) <= 1.0) & (np.abs(dx) <= 1.0)
    return (np.abs(dy) + np.abs(dx)) <= 1.0  # diamond


def _texture(colour: np.ndarray, h: int, w: int, phase: float, period: float) -> np.ndarray:
    xx = np.arange(w)[None, :] + np.arange(h)[:, None]
    stripes = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (xx + phase) / period))
    return colour[None, None, :] * (0.75 + 0.25 * stripes[..., None])


def render_video(seed: int, n_frames: int, height: int, width: int, *,
                 second_object: bool = False, second_from: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(T, H, W, 3) uint8`` and masks ``(T, H, W) uint8`` (0 bg, 1 target, 2 other).
    ``second_from``: the second object enters the video at that frame (absent before)."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    bg = _background(rng, h, w)
    kind = str(rng.choice(["ellipse", "square", "diamond"]))
    r = min(h, w) * rng.uniform(0.10, 0.15)
    colour = rng.uniform(30, 225, size=3)
    period = float(rng.uniform(4, 8))
    # target goes left->right (or right->left), distractor crosses it vertically at mid-video
    t_mid = (n_frames - 1) / 2
    ty = rng.uniform(0.35, 0.65) * h
    x_start, x_end = (0.2 * w, 0.8 * w) if rng.random() < 0.5 else (0.8 * w, 0.2 * w)
    y_start, y_end = (0.15 * h, 0.85 * h) if rng.random() < 0.5 else (0.85 * h, 0.15 * h)
    distractor_front = bool(rng.random() < 0.5)
    d_colour = np.clip(colour + rng.uniform(-6, 6, size=3), 0, 255)
    d_r = r * rng.uniform(0.9, 1.1)
    if second_object:
        o_colour = (colour + 128) % 256
        o_kind = "square" if kind != "square" else "ellipse"
        oy0, oy1 = (0.15 * h, 0.3 * h) if ty > h / 2 else (0.85 * h, 0.7 * h)
    frames = np.zeros((n_frames, h, w, 3), dtype=np.uint8)
    masks = np.zeros((n_frames, h, w), dtype=np.uint8)
    for t in range(n_frames):
        s = t / max(n_frames - 1, 1)
        wobble = 0.03 * h * np.sin(2 * np.pi * s + seed)
        tcx, tcy = x_start + (x_end - x_start) * s, ty + wobble
        # the distractor is at the target's centre at t_mid
        sd = (t - t_mid) / max(n_frames - 1, 1) + 0.5
        dcx = (x_start + (x_end - x_start) * (t_mid / max(n_frames - 1, 1))) + 0.05 * w * np.cos(np.pi * s)
        dcy = y_start + (y_end - y_start) * sd
        img = bg.copy()
        lab = np.zeros((h, w), dtype=np.uint8)
        m_t = _shape_mask(kind, tcy, tcx, r, r, h, w)
        m_d = _shape_mask(kind, dcy, dcx, d_r, d_r, h, w)
        tex_t = _texture(colour, h, w, phase=0.0, period=period)
        tex_d = _texture(d_colour, h, w, phase=period / 2, period=period)
        layers = [(m_t, tex_t, 1), (m_d, tex_d, 0)]
        if distractor_front is False:
            layers = layers[::-1]
        if second_object and t >= second_from:
            ocx = w * (0.15 + 0.7 * (1 - s))
            ocy = oy0 + (oy1 - oy0) * s
            m_o = _shape_mask(o_kind, ocy, ocx, r * 0.8, r * 0.8, h, w)
            layers = [(m_o, _texture(o_colour, h, w, 0.0, period), 2)] + layers
        for m, tex, obj_id in layers:  # painter's order: later layers on top
            img[m] = tex[m]
            lab[m] = obj_id
        frames[t] = np.clip(img + rng.normal(0, 3, size=img.shape), 0, 255).astype(np.uint8)
        masks[t] = lab
    return frames, masks


def write_davis_layout(root: Path, splits: dict[str, list[str]], *, n_frames: int, height: int,
                       width: int, seed: int, second_object_every: int = 0, year: str = "2017") -> None:
    """Write ``JPEGImages/480p/<video>/%05d.jpg``, ``Annotations/480p/<video>/%05d.png``
    (palette PNGs) and ``ImageSets/<year>/<split>.txt`` under ``root``."""
    from PIL import Image

    palette = davis_palette()
    for split, videos in splits.items():
        sets = root / "ImageSets" / year
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("".join(v + "\n" for v in videos))
        for i, vid in enumerate(videos):
            vseed = seed * 100_003 + hash_name(vid)
            frames, masks = render_video(vseed, n_frames, height, width,
                                         second_object=bool(second_object_every and i % second_object_every == 0))
            jdir = root / "JPEGImages" / "480p" / vid
            adir = root / "Annotations" / "480p" / vid
            jdir.mkdir(parents=True, exist_ok=True)
            adir.mkdir(parents=True, exist_ok=True)
            for t in range(n_frames):
                Image.fromarray(frames[t]).save(jdir / f"{t:05d}.jpg", quality=95)
                im = Image.fromarray(masks[t], mode="P")
                im.putpalette(palette)
                im.save(adir / f"{t:05d}.png")


def hash_name(name: str) -> int:
    """A stable (not Python-hash-randomised) integer for a video name."""
    h = 0
    for ch in name.encode():
        h = (h * 131 + ch) % 1_000_003
    return h


def write_flat_layout(root: Path, videos: list[str], *, n_frames: int, height: int, width: int, seed: int,
                      annotate: str = "all", frame_step: int = 1, meta: bool = False) -> None:
    """YouTube-VOS / MOSE layout: ``root/JPEGImages/<video>/%05d.jpg`` and
    ``root/Annotations/<video>/%05d.png``; ``annotate="first"`` keeps only the first
    annotation (their validation sets); frame names step by ``frame_step`` (YouTube-VOS
    names frames 00000, 00005, ...); ``meta`` writes a YouTube-VOS ``meta.json``."""
    import json

    from PIL import Image

    palette = davis_palette()
    meta_videos = {}
    for vid in videos:
        frames, masks = render_video(seed * 100_003 + hash_name(vid), n_frames, height, width)
        jdir, adir = root / "JPEGImages" / vid, root / "Annotations" / vid
        jdir.mkdir(parents=True, exist_ok=True)
        adir.mkdir(parents=True, exist_ok=True)
        names = [f"{t * frame_step:05d}" for t in range(n_frames)]
        for t, name in enumerate(names):
            Image.fromarray(frames[t]).save(jdir / f"{name}.jpg", quality=95)
            if annotate == "all" or t == 0:
                im = Image.fromarray(masks[t], mode="P")
                im.putpalette(palette)
                im.save(adir / f"{name}.png")
        meta_videos[vid] = {"objects": {"1": {"category": "synthetic", "frames": names}}}
    if meta:
        (root / "meta.json").write_text(json.dumps({"videos": meta_videos}))


def check_flat_layout(root: Path, name: str, need_meta: bool = False) -> None:
    """Every video has frames and at least one annotation (the prepared layout)."""
    from repro.errors import DataMissing

    jpeg, ann = root / "JPEGImages", root / "Annotations"
    if not jpeg.is_dir() or not ann.is_dir():
        raise DataMissing(f"{root} lacks JPEGImages/ or Annotations/", hint=f"repro data prepare {name}")
    vids = sorted(p.name for p in jpeg.iterdir() if p.is_dir())
    if not vids:
        raise DataMissing(f"{jpeg} holds no video", hint=f"repro data prepare {name}")
    for v in vids:
        if not any((ann / v).glob("*.png")):
            raise DataMissing(f"{root.name}: video {v} has no annotation", hint=f"repro data prepare {name}")
    if need_meta and not (root / "meta.json").exists():
        raise DataMissing(f"{root / 'meta.json'} is missing", hint=f"repro data prepare {name}")


def check_flat_archives(root: Path, archives: dict[str, str], name: str, label: str) -> None:
    """Each raw archive (``root/raw/<archive>``) is present and holds ``<folder>/JPEGImages/``
    (the raw layout of the flat VOS sets, YouTube-VOS and MOSE)."""
    from data_scripts.common import archive_names
    from repro.errors import ChecksumError, DataMissing

    for archive, folder in archives.items():
        path = root / "raw" / archive
        if not path.exists():
            raise DataMissing(f"{path} is missing", hint=f"repro data download {name}")
        if not any(n.startswith(f"{folder}/JPEGImages/") for n in archive_names(path)):
            raise ChecksumError(f"{path} lacks {folder}/JPEGImages/ (not the {label} archive?)")


def write_youtube_valid(valid: Path, all_frames: Path, videos: list[str], *, n_frames: int, height: int, width: int,
                        seed: int, step: int = 5, late_at: int | None = None) -> None:
    """A YouTube-VOS validation split: every frame in ``all_frames/JPEGImages/<video>/``
    (``valid_all_frames``), every ``step``-th frame in ``valid/JPEGImages/<video>/``, the
    first annotation of each object in ``valid/Annotations/<video>/`` (object 1 at frame 0;
    with ``late_at``, object 2 enters at that frame (a multiple of ``step``) and its first
    annotation is a PNG holding only it, as in the real split), and ``valid/meta.json``
    listing each object's frames from its first appearance (the frames to submit)."""
    import json

    from PIL import Image

    if late_at is not None and late_at % step:
        raise ValueError("late_at must be one of the sparsely sampled frames")
    palette = davis_palette()
    meta_path = valid / "meta.json"
    meta = json.loads(meta_path.read_text())["videos"] if meta_path.exists() else {}  # add to a split
    for vid in videos:
        frames, masks = render_video(seed * 100_003 + hash_name(vid), n_frames, height, width,
                                     second_object=late_at is not None, second_from=late_at or 0)
        for sub in (all_frames / "JPEGImages" / vid, valid / "JPEGImages" / vid, valid / "Annotations" / vid):
            sub.mkdir(parents=True, exist_ok=True)
        objects = {"1": {"category": "synthetic", "frames": []}}
        if late_at is not None:
            objects["2"] = {"category": "synthetic", "frames": []}
        for t in range(n_frames):
            name = f"{t:05d}"
            Image.fromarray(frames[t]).save(all_frames / "JPEGImages" / vid / f"{name}.jpg", quality=95)
            if t % step:
                continue
            Image.fromarray(frames[t]).save(valid / "JPEGImages" / vid / f"{name}.jpg", quality=95)
            objects["1"]["frames"].append(name)
            if late_at is not None and t >= late_at:
                objects["2"]["frames"].append(name)
            first = np.where(masks[t] == 1, 1, 0) if t == 0 else (np.where(masks[t] == 2, 2, 0) if t == late_at else None)
            if first is not None:
                im = Image.fromarray(first.astype(np.uint8), mode="P")
                im.putpalette(palette)
                im.save(valid / "Annotations" / vid / f"{name}.png")
        meta[vid] = {"objects": objects}
    valid.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps({"videos": meta}))
