"""Server-scored sets (YouTube-VOS 2019 val, MOSE val, DAVIS 2017 test-dev): predict every
video and write the archive their CodaLab servers take. Facts from the official repository
(hkchengrex/Cutie, ``config/eval_config.yaml`` datasets ``y19-val``/``mose-val``,
``inference/data/vos_test_dataset.py``, ``video_reader.py``, ``utils/results_utils.make_zip``;
read, not copied):

* YouTube-VOS 2019 val: inference on every frame (``valid_all_frames/JPEGImages``), masks
  from ``valid/Annotations``, where an object's first annotation may be mid-video: each
  annotation PNG introduces the objects that are new in it (``use_all_masks``); frames
  before a video's first annotation are skipped; only the frames that ``valid/meta.json``
  lists for some object are written (the union over objects); archive
  ``Annotations/<video>/<frame>.png``.
* MOSE val and DAVIS 2017 test-dev (480p): first-frame annotation only, every frame
  written; archive ``<video>/<frame>.png`` at the zip root.
* Both: frames whose shorter side exceeds 480 are resized to 480 (bilinear, masks
  nearest) and the probabilities restored to the original size before the argmax; masks
  are palette PNGs with the video's own palette (its first annotation's) and the
  annotation's object ids.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .model import argmax_objects, segment_video

# name -> where its split lies in the prepared dataset and how the server wants it
SERVERS = {
    "youtube_vos2019": {"dataset": "youtube_vos2019", "frames": "valid_all_frames/JPEGImages",
                        "annotations": "valid/Annotations", "meta": "valid/meta.json", "use_all_masks": True,
                        "inner": "Annotations"},
    "mose": {"dataset": "mose", "frames": "valid/JPEGImages", "annotations": "valid/Annotations", "meta": None,
             "use_all_masks": False, "inner": ""},
    "davis2017_testdev": {"dataset": "davis2017", "frames": "test-dev/JPEGImages/480p",
                          "annotations": "test-dev/Annotations/480p", "meta": None, "use_all_masks": False,
                          "inner": ""},
}

UPLOAD = {
    "youtube_vos2019": "YouTube-VOS 2019 val is scored only by its server: upload {zip} on "
                       "https://codalab.lisn.upsaclay.fr/competitions/6066 (Participate -> Submit); it reports "
                       "G (overall), J/F seen and J/F unseen.",
    "mose": "MOSE val is scored only by its server: upload {zip} on "
            "https://codalab.lisn.upsaclay.fr/competitions/10703 (Participate -> Submit); it reports J&F, J, F.",
    "davis2017_testdev": "DAVIS 2017 test-dev is scored only by its server: upload {zip} on "
                         "https://codalab.lisn.upsaclay.fr/competitions/6812 (Participate -> Submit); it reports "
                         "J&F, J, F.",
}


def required_frames(meta_json: Path) -> dict[str, set[str]]:
    """YouTube-VOS ``meta.json`` -> for each video the frames to submit (union over objects)."""
    videos = json.loads(Path(meta_json).read_text())["videos"]
    return {v: {f for o in d["objects"].values() for f in o["frames"]} for v, d in videos.items()}


def _resized(h: int, w: int, size: int) -> tuple[int, int] | None:
    """torchvision ``Resize(size)``: shorter side to ``size`` if it is larger, aspect kept."""
    if size <= 0 or min(h, w) <= size:
        return None
    return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)


class _FrameWriter:
    """Receives each segmented frame's probabilities (``segment_video``'s ``probs``),
    restores the original size, and writes the frame's palette PNG if it is required."""

    def __init__(self, names: list[str], out_dir: Path, lut: list[int], palette, shape, required) -> None:
        self.names, self.out_dir, self.lut = names, out_dir, lut
        self.palette, self.shape, self.required = palette, shape, required
        self.t = 1
        self.written = 0

    def save(self, name: str, labels: np.ndarray) -> None:
        if self.required is not None and name not in self.required:
            return
        im = Image.fromarray(labels.astype(np.uint8), mode="P")
        im.putpalette(self.palette)
        im.save(self.out_dir / f"{name}.png")
        self.written += 1

    def append(self, prob: torch.Tensor) -> None:  # prob: (N+1, h, w), background first
        name = self.names[self.t]
        self.t += 1
        if self.required is not None and name not in self.required:
            return
        if tuple(prob.shape[-2:]) != tuple(self.shape):
            prob = F.interpolate(prob[None], size=self.shape, mode="bilinear", align_corners=False)[0]
        lut = np.asarray([0] + self.lut[:prob.shape[0] - 1], dtype=np.uint8)
        self.save(name, lut[argmax_objects(prob).cpu().numpy()])


def predict_video(net, image_dir: Path, ann_dir: Path, out_dir: Path, cfg, *, use_all_masks: bool,
                  required: set[str] | None = None, size: int = 480) -> int:
    """Segment one video and write its masks; returns the number of PNGs written."""
    names = sorted(p.stem for p in image_dir.glob("*.jpg"))
    anns = sorted(p.stem for p in ann_dir.glob("*.png"))
    if not anns:
        raise ValueError(f"{ann_dir} holds no annotation")
    first_name = anns[0]
    names = names[names.index(first_name):]  # the official reader skips frames before the first mask
    first_png = Image.open(ann_dir / f"{first_name}.png")
    palette = first_png.getpalette() if first_png.mode == "P" else None
    if palette is None:
        from data_scripts._vos_synth import davis_palette

        palette = davis_palette()
    rgb = np.stack([np.asarray(Image.open(image_dir / f"{n}.jpg").convert("RGB")) for n in names])
    frames = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    h, w = frames.shape[-2:]
    new_size = _resized(h, w, size)
    if new_size is not None:
        frames = F.interpolate(frames, size=new_size, mode="bilinear", align_corners=False, antialias=True)

    def load(name: str) -> np.ndarray:
        m = torch.from_numpy(np.asarray(Image.open(ann_dir / f"{name}.png")).astype(np.int64))
        if new_size is not None:
            m = F.interpolate(m[None, None].float(), size=new_size, mode="nearest")[0, 0].long()
        return m.numpy()

    first = load(first_name)
    ids = [int(i) for i in np.unique(first) if i != 0]
    first_masks = torch.from_numpy(np.stack([first == i for i in ids])).float()
    later: dict[int, torch.Tensor] = {}
    if use_all_masks:
        known = set(ids)
        for t, name in enumerate(names[1:], start=1):
            if name not in anns:
                continue
            lab = load(name)
            new = [int(i) for i in np.unique(lab) if i != 0 and int(i) not in known]
            if new:  # objects already tracked in a later annotation keep their prediction
                later[t] = torch.from_numpy(np.stack([lab == i for i in new])).float()
                ids += new
                known.update(new)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _FrameWriter(names, out_dir, ids, palette, (h, w), required)
    orig_first = np.asarray(Image.open(ann_dir / f"{first_name}.png"))
    writer.save(first_name, orig_first)
    segment_video(net, frames, first_masks, mem_every=cfg.mem_every, max_mem_frames=cfg.max_mem_frames,
                  top_k=cfg.top_k if cfg.top_k > 0 else None, probs=writer, later=later)
    return writer.written


def predict_split(net, root: Path, name: str, out_root: Path, cfg, size: int = 480) -> int:
    """Predict every video of the server-scored split ``name`` (a key of ``SERVERS``)
    under the prepared dataset ``root`` (of ``SERVERS[name]["dataset"]``); masks go to
    ``out_root/<video>/<frame>.png``."""
    spec = SERVERS[name]
    req = required_frames(root / spec["meta"]) if spec["meta"] else None
    ann_root = root / spec["annotations"]
    count = 0
    net.eval()
    for vid in sorted(p.name for p in ann_root.iterdir() if p.is_dir()):
        count += predict_video(net, root / spec["frames"] / vid, ann_root / vid, out_root / vid, cfg,
                               use_all_masks=spec["use_all_masks"], required=None if req is None else req[vid],
                               size=size)
    return count


def write_archive(masks_root: Path, archive: Path, inner: str) -> Path:
    """Zip ``masks_root/<video>/<frame>.png`` as ``<inner>/<video>/<frame>.png`` (or at the
    zip root when ``inner`` is empty), in sorted order with fixed timestamps."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(masks_root.rglob("*.png")):
            rel = p.relative_to(masks_root).as_posix()
            info = zipfile.ZipInfo(f"{inner}/{rel}" if inner else rel, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    return archive


def make_submission(net, root: Path, name: str, dest: Path, cfg, size: int = 480) -> tuple[Path, int, str]:
    """Predict the split, write ``dest`` (a .zip) and return (zip, frames, upload instruction)."""
    work = dest.with_name(dest.stem + ".masks-tmp")  # the masks before zipping, removed after
    if work.exists():
        shutil.rmtree(work)
    count = predict_split(net, root, name, work, cfg, size=size)
    write_archive(work, dest, SERVERS[name]["inner"])
    shutil.rmtree(work, ignore_errors=True)
    return dest, count, UPLOAD[name].format(zip=dest)
