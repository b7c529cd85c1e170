"""One unit of the Cutie recipe: train (engine Trainer via ``ctx.fit_and_test``), then
segment every evaluation video with the paper's memory schedule, write the predicted
masks in the DAVIS layout and score them with vos-benchmark (``repro.metrics.vos``).

Metrics (percent, DAVIS convention: first and last frame excluded):
``jf``, ``j``, ``f`` of the trained network; ``copy_first_jf``: the first-frame mask
copied to every frame (a no-learning reference scored the same way); ``fps``: frames
per second of our inference on this machine (not a claim).
For the first seed a figure of predicted masks over frames is written to
``<run>/figures/masks_<arm>.png``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from repro.metrics.vos import evaluate_jf

from .data import StaticDataModule, VOSDataModule, ensure_synthetic, read_video, split_videos
from .model import CutieModule, segment_video


def data_root(cfg, ctx) -> Path:
    if cfg.source == "synthetic":
        return ensure_synthetic(Path(ctx.run_dir) / "synthetic_davis", cfg)
    root = Path(cfg.data_dir)
    return root / "trainval" if (root / "trainval").is_dir() else root


def _save_png(labels: np.ndarray, path: Path) -> None:
    from data_scripts._vos_synth import davis_palette

    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(davis_palette())
    im.save(path)


def predict_split(net, root: Path, videos: list[str], out_dir: Path, cfg) -> tuple[dict, float]:
    """Segment each video; masks go to ``out_dir/<video>/<frame>.png`` with the DAVIS ids."""
    net.eval()
    shown: dict[str, tuple] = {}
    n_frames, seconds = 0, 0.0
    for vid in videos:
        frames, first, ids, names = read_video(root, vid)
        t0 = time.perf_counter()
        labels, mem = segment_video(net, frames, first, mem_every=cfg.mem_every, max_mem_frames=cfg.max_mem_frames,
                                    top_k=cfg.top_k if cfg.top_k > 0 else None)
        seconds += time.perf_counter() - t0
        n_frames += frames.shape[0] - 1
        lut = np.array([0] + ids, dtype=np.uint8)
        labels = lut[labels.cpu().numpy()]
        (out_dir / vid).mkdir(parents=True, exist_ok=True)
        for t, name in enumerate(names):
            _save_png(labels[t], out_dir / vid / f"{name}.png")
        shown[vid] = (frames, labels, mem)
    return shown, (n_frames / seconds if seconds > 0 else float("nan"))


def _gt_subset(root: Path, videos: list[str], dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    for vid in videos:
        shutil.copytree(root / "Annotations" / "480p" / vid, dest / vid)
    return dest


def _copy_first(root: Path, videos: list[str], dest: Path) -> Path:
    for vid in videos:
        src = sorted((root / "Annotations" / "480p" / vid).glob("*.png"))
        first = np.asarray(Image.open(src[0]))
        names = sorted(p.stem for p in (root / "JPEGImages" / "480p" / vid).glob("*.jpg"))
        (dest / vid).mkdir(parents=True, exist_ok=True)
        for n in names:
            _save_png(first, dest / vid / f"{n}.png")
    return dest


def masks_figure(shown: dict, root: Path, path: Path, title: str, n_cols: int = 6) -> None:
    """Frames of the first evaluation videos with ground truth (top) and predicted masks
    (bottom) overlaid; memorised frames are marked with 'M'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vids = list(shown)[:2]
    rows = 2 * len(vids)
    fig, axes = plt.subplots(rows, n_cols, figsize=(1.8 * n_cols, 1.5 * rows + 0.4), squeeze=False)
    colours = np.array([[0, 0, 0], [230, 40, 40], [40, 200, 40], [240, 200, 0], [40, 80, 230]], dtype=float)
    for r, vid in enumerate(vids):
        frames, labels, mem = shown[vid]
        t_len = frames.shape[0]
        cols = np.unique(np.linspace(0, t_len - 1, n_cols).round().astype(int))
        gt_names = sorted((root / "Annotations" / "480p" / vid).glob("*.png"))
        for c, t in enumerate(cols):
            img = frames[t].permute(1, 2, 0).numpy() * 255
            gt = np.asarray(Image.open(gt_names[t])).astype(int)
            for k, (lab, tag) in enumerate(((gt, "GT"), (labels[t].astype(int), "pred"))):
                over = img.copy()
                m = lab > 0
                over[m] = 0.45 * over[m] + 0.55 * colours[np.clip(lab[m], 0, len(colours) - 1)]
                ax = axes[2 * r + k, c]
                ax.imshow(over.astype(np.uint8))
                ax.set_xticks([])
                ax.set_yticks([])
                label = f"{tag} t={t}" + (" M" if (tag == "pred" and t in mem) else "")
                ax.set_title(label, fontsize=7)
        for c in range(len(cols), n_cols):
            axes[2 * r, c].axis("off")
            axes[2 * r + 1, c].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def submissions(net, cfg, ctx) -> dict[str, float]:
    """For each server-scored set in ``cfg.submit`` (YouTube-VOS 2019 val, MOSE val, DAVIS
    2017 test-dev): predict its split with the trained network, write the archive its server takes into
    ``<run>/submissions/`` and record the upload instruction there (``UPLOAD.md``) and in
    the log. Returns the number of masks in each archive (no score: only the server has
    the ground truth)."""
    from .submission import SERVERS, make_submission

    out = {}
    sub_dir = Path(ctx.run_dir) / "submissions"
    tag = "-".join(x for x in (ctx.arm, f"seed{ctx.seed}") if x)
    for name in cfg.submit:
        dataset = SERVERS[name]["dataset"]
        if dataset not in ctx.data:
            raise RuntimeError(f"cfg.submit names {name!r} but the profile does not list the {dataset} dataset")
        archive, count, how = make_submission(net, Path(ctx.data[dataset]), name, sub_dir / f"{name}-{tag}.zip", cfg,
                                              size=cfg.eval_size)
        sub_dir.mkdir(parents=True, exist_ok=True)
        with open(sub_dir / "UPLOAD.md", "a") as fh:
            fh.write(f"- {how} ({count} masks)\n")
        ctx.echo(f"[cutie_vos] {how} ({count} masks)")
        out[f"{name}/submitted_masks"] = float(count)
    return out


def pretrain_config(cfg):
    """The pre-training stage's configuration: short synthetic sequences from static images,
    one object, its own step count, batch size, learning rate and crop (Config.pretrain_*)."""
    return dataclasses.replace(cfg, max_steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch_size,
                               lr=cfg.pretrain_lr, seq_length=cfg.pretrain_seq_length,
                               num_ref_frames=cfg.pretrain_num_ref_frames, num_objects=1, crop=cfg.pretrain_crop,
                               train_clips=cfg.pretrain_clips, train_num_points=cfg.pretrain_num_points,
                               lr_schedule="constant", lr_schedule_steps=())


def pretrain(cfg, ctx) -> tuple[dict | None, dict]:
    """Static-image pre-training (the paper's first stage) when ``cfg.pretrain_steps > 0``:
    trains under ``<unit>/pretrain`` (checkpointed and resumable like the main stage) and
    returns the network's weights for main training, or None without the stage."""
    if cfg.pretrain_steps <= 0:
        return None, {}
    if "vos_static_images" not in ctx.data:
        raise RuntimeError("pretrain_steps > 0 needs the vos_static_images dataset in the profile")
    pcfg = pretrain_config(cfg)
    module = CutieModule(pcfg)
    fit = ctx.fit_and_test(module, StaticDataModule(pcfg, Path(ctx.data["vos_static_images"]), seed=ctx.seed),
                           name="pretrain", cfg=pcfg)
    metrics = fit.get("metrics", {}) if isinstance(fit, dict) else {}
    out = {f"pretrain/{k.split('/', 1)[-1]}": float(v) for k, v in metrics.items()
           if k in ("train/loss", "test/clip_loss")}
    return module.net.state_dict(), out


def measure(cfg, ctx) -> dict[str, float]:
    root = data_root(cfg, ctx)
    torch.manual_seed(ctx.seed)
    t0 = time.time()
    weights, pre_metrics = pretrain(cfg, ctx)
    module = CutieModule(cfg)
    if weights is not None:
        module.net.load_state_dict(weights)
    youtube = None
    if "youtube_vos2019" in cfg.train_sets and cfg.source == "davis":
        if "youtube_vos2019" not in ctx.data:
            raise RuntimeError("cfg.train_sets names youtube_vos2019 but the profile does not list that dataset")
        youtube = Path(ctx.data["youtube_vos2019"])
    dm = VOSDataModule(cfg, root, seed=ctx.seed, youtube=youtube)
    fit = ctx.fit_and_test(module, dm)
    train_s = time.time() - t0
    net = module.net.to("cpu" if ctx.device.type == "cpu" else ctx.device)
    videos = split_videos(root, cfg.eval_split)
    unit = Path(ctx.unit_dir)
    pred_dir = unit / "predictions"
    if pred_dir.exists():
        shutil.rmtree(pred_dir)
    shown, fps = predict_split(net, root, videos, pred_dir, cfg)
    gt_dir = _gt_subset(root, videos, unit / "gt")
    res = evaluate_jf(gt_dir, pred_dir)
    (unit / "jf_results.csv").write_text(res.table)
    base_dir = unit / "copy_first"
    if base_dir.exists():
        shutil.rmtree(base_dir)
    base = evaluate_jf(gt_dir, _copy_first(root, videos, base_dir))
    shutil.rmtree(base_dir, ignore_errors=True)
    shutil.rmtree(gt_dir, ignore_errors=True)
    if ctx.seed == ctx.first_seed:
        arm = ctx.arm or "cutie"
        masks_figure(shown, root, Path(ctx.run_dir) / "figures" / f"masks_{arm}.png",
                     f"{arm}: predicted masks over frames (seed {ctx.seed}, J&F {res.jf:.1f}); "
                     "top: ground truth, bottom: prediction; M = memory frame")
    metrics = fit.get("metrics", {}) if isinstance(fit, dict) else {}
    out = {"jf": res.jf, "j": res.j, "f": res.f, "copy_first_jf": base.jf, "fps": fps, "train_seconds": train_s}
    out.update(pre_metrics)
    out.update(submissions(net, cfg, ctx))
    for key in ("train/loss", "test/clip_loss"):
        if key in metrics:
            out[key] = float(metrics[key])
    return out
