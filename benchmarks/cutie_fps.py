"""Inference speed (frames/s) of our Cutie-small at DAVIS 480p against the official
implementation, both randomly initialised, on the same frames in the same process.

Ours: ``papers.cutie_vos.model.CutieNet`` with the Cutie-small configuration and
``segment_video`` (first frame permanent, mem_every 5, max 5 memory frames, top-k 30,
sensory memory updated every frame). Official (only with ``--official PATH``, a checkout
of https://github.com/hkchengrex/Cutie; nothing of it is copied here): its ``CUTIE``
network built from its own ``config/model/{base,small}.yaml`` and its ``InferenceCore``
with the ``d17-val`` settings of ``config/eval_config.yaml`` (needs ``omegaconf``). The
official code asks for ImageNet ResNet weights through ``torch.utils.model_zoo``; the
benchmark answers that request with a randomly initialised torchvision ResNet state
dict, so nothing is downloaded (speed does not depend on the weight values).

Each call segments the whole clip from scratch (first frame with its mask, then every
other frame). After one warm-up call each, ``--repeats`` rounds time every implementation
once, in alternating order (ours first in even rounds, official first in odd ones), both
wall time and this process's CPU time (user + sys; on a shared, loaded machine the CPU
time of a one-thread run is the steadier measure of the work done). Reported: medians as
frames/s = frames / seconds, and the per-round ratios ours/official (speed, so > 1 means
ours is faster) with their median and range.

    python benchmarks/cutie_fps.py --threads 1 --frames 6 --repeats 6 [--official /path/to/Cutie]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from data_scripts._vos_synth import render_video


def ours(frames: torch.Tensor, first: torch.Tensor):
    import dataclasses

    from papers.cutie_vos.model import build_net, segment_video
    from papers.cutie_vos.recipe import SMALL

    # random init like the official side (no ImageNet download); the training-only sensory aux head is not run
    net = build_net(dataclasses.replace(SMALL, pretrained_backbone=False, sensory_aux=False)).eval()

    def run():
        with torch.inference_mode():
            segment_video(net, frames, first, mem_every=SMALL.mem_every, max_mem_frames=SMALL.max_mem_frames,
                          top_k=SMALL.top_k)

    return run, sum(p.numel() for p in net.parameters())


def official(path: Path, frames: torch.Tensor, first: torch.Tensor):
    """Build the official network and inference core; raises with the reason if it cannot."""
    try:
        from omegaconf import OmegaConf
    except ImportError as exc:
        raise RuntimeError("the official implementation needs omegaconf (pip install omegaconf)") from exc
    import torchvision

    sys.path.insert(0, str(path))
    from cutie.inference.inference_core import InferenceCore  # noqa: E402
    from cutie.model import cutie as cutie_mod  # noqa: E402
    from cutie.model.utils import resnet as official_resnet  # noqa: E402

    def random_state(url, model_dir=None, **_):  # answers the official pretrained-weights request offline
        arch = "resnet50" if "resnet50" in url else "resnet18"
        return getattr(torchvision.models, arch)(weights=None).state_dict()

    official_resnet.model_zoo.load_url = random_state
    cfgdir = path / "cutie" / "config"
    model = OmegaConf.merge(OmegaConf.load(cfgdir / "model" / "base.yaml"),
                            {k: v for k, v in OmegaConf.load(cfgdir / "model" / "small.yaml").items() if k != "defaults"})
    ev = OmegaConf.load(cfgdir / "eval_config.yaml")
    for key in ("defaults", "hydra", "datasets"):
        ev.pop(key, None)
    d17 = OmegaConf.load(cfgdir / "eval_config.yaml").datasets["d17-val"]
    cfg = OmegaConf.merge(ev, {"model": model, "mem_every": d17.mem_every, "use_long_term": d17.use_long_term,
                               "save_all": True, "use_all_masks": False})
    net = cutie_mod.CUTIE(cfg).eval()
    idx_mask = (first.argmax(0) + 1) * (first.amax(0) > 0.5)

    def run():
        with torch.inference_mode():
            core = InferenceCore(net, cfg)
            for t in range(frames.shape[0]):
                if t == 0:
                    core.step(frames[0], idx_mask.long(), objects=list(range(1, first.shape[0] + 1)))
                else:
                    core.step(frames[t], end=(t == frames.shape[0] - 1))

    return run, sum(p.numel() for p in net.parameters())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, default=None, help="path of an official Cutie checkout")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    f, m = render_video(3, args.frames, args.height, args.width)
    frames = torch.from_numpy(f).permute(0, 3, 1, 2).float() / 255.0
    first = torch.from_numpy(m[0] == 1).float()[None]
    calls, params = {}, {}
    calls["ours"], params["ours"] = ours(frames, first)
    note = ""
    if args.official is not None:
        try:
            calls["official"], params["official"] = official(args.official, frames, first)
        except Exception as exc:  # noqa: BLE001 - report and still time ours
            note = f"official implementation could not be built offline: {type(exc).__name__}: {exc}"
    else:
        note = "no --official checkout given: only ours is timed"
    wall, cpu = rounds(calls, args.repeats)
    print(f"Cutie-small inference, {args.frames} frames of {args.height}x{args.width}, CPU, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved rounds")
    for name in calls:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:9s} {args.frames / w:7.3f} frames/s  ({w:.2f} s wall, {c:.2f} s CPU per clip, "
              f"{params[name] / 1e6:.1f} M params)")
    if "official" in calls:
        for label, samples in (("wall", wall), ("CPU", cpu)):
            ratios = [o / u for o, u in zip(samples["official"], samples["ours"])]
            print(f"  speed ratio ours/official ({label} time), per round: "
                  + " ".join(f"{r:.2f}" for r in ratios)
                  + f"; median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}"
                  + " (target >= 1.0x)")
    if note:
        print("  note:", note)
    return 0


def rounds(calls: dict, repeats: int) -> tuple[dict, dict]:
    """Per-round wall and CPU seconds of every call (one warm-up each; order alternates)."""
    for fn in calls.values():
        fn()
    wall: dict = {k: [] for k in calls}
    cpu: dict = {k: [] for k in calls}
    names = list(calls)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            calls[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


if __name__ == "__main__":
    raise SystemExit(main())
