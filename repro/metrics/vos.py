"""DAVIS-style J&F (region similarity J, boundary accuracy F) through ``vos-benchmark``.

``vos-benchmark`` (by the author of XMem/Cutie) matches the official davis2017
``metrics.py`` to three decimals, but it calls ``exit(1)`` when a prediction folder or
frame is missing and writes ``results.csv`` into the prediction root. This wrapper

* checks first that every ground-truth video and frame has a prediction (a clear
  :class:`VOSEvaluationError` naming the missing files instead of a silent exit);
* evaluates a temporary *copy* of the predictions, so the caller's folder is never
  written to (the ``results.csv`` is returned as text instead);
* returns J&F, J and F in percent (the convention of the DAVIS/Cutie tables) and the
  per-object values.

Layout (DAVIS): ``gt_root/<video>/<frame>.png`` and ``pred_root/<video>/<frame>.png``,
palette or grey PNGs whose pixel value is the object id (0 = background). The first
and last frames are skipped by default (the DAVIS semi-supervised protocol: the first
frame is the given annotation).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


class VOSEvaluationError(ValueError):
    """Predictions do not cover the ground truth (missing video or frame)."""


@dataclass
class JFResult:
    jf: float
    j: float
    f: float
    per_object: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    table: str = ""


def _videos(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def missing_predictions(gt_root: str | os.PathLike, pred_root: str | os.PathLike,
                        skip_first_and_last: bool = True) -> list[str]:
    """Relative paths (``video/frame.png``) the evaluation needs and ``pred_root`` lacks."""
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    missing: list[str] = []
    for vid in _videos(gt_root):
        frames = sorted(os.listdir(gt_root / vid))
        if skip_first_and_last:
            frames = frames[1:-1]
        if not (pred_root / vid).is_dir():
            missing.append(f"{vid}/")
            continue
        missing += [f"{vid}/{f}" for f in frames if not (pred_root / vid / f).is_file()]
    return missing


def evaluate_jf(gt_root: str | os.PathLike, pred_root: str | os.PathLike, *,
                skip_first_and_last: bool = True, num_processes: int = 1) -> JFResult:
    """J&F of ``pred_root`` against ``gt_root`` (both in the DAVIS layout), in percent."""
    from vos_benchmark.benchmark import benchmark

    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if not gt_root.is_dir() or not _videos(gt_root):
        raise VOSEvaluationError(f"no ground-truth videos under {gt_root}")
    if not pred_root.is_dir():
        raise VOSEvaluationError(f"prediction folder {pred_root} does not exist")
    missing = missing_predictions(gt_root, pred_root, skip_first_and_last)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise VOSEvaluationError(f"{len(missing)} prediction(s) missing under {pred_root}: {shown}")
    with tempfile.TemporaryDirectory(prefix="vos_eval_") as tmp:
        copy = Path(tmp) / "pred"
        copy.mkdir()
        for vid in _videos(gt_root):  # only the evaluated videos: strict mode demands equal sets
            shutil.copytree(pred_root / vid, copy / vid)
        try:
            # its pool workers are forked and ended by terminate(); repro's SIGTERM handler lets
            # them die of the signal (repro.cli), so no KeyboardInterrupt traceback reaches the log
            jf, j, f, per_obj = benchmark([str(gt_root)], [str(copy)], num_processes=num_processes,
                                          verbose=False, skip_first_and_last=skip_first_and_last)
        except SystemExit as exc:  # defensive: vos-benchmark's own exit(1) paths
            raise VOSEvaluationError(f"vos-benchmark rejected {pred_root} (exit {exc.code})") from None
        table = (copy / "results.csv").read_text() if (copy / "results.csv").exists() else ""
    per_object = {vid: {int(k): (float(iou[k]), float(bf[k])) for k in iou} for vid, (iou, bf) in per_obj[0].items()}
    return JFResult(float(jf[0]), float(j[0]), float(f[0]), per_object, table)
