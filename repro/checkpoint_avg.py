"""Checkpoint averaging: the parameters of the last N checkpoints, averaged element-wise.

Vaswani et al. (2017), Section 6.1: the base models are evaluated with "a single model
obtained by averaging the last 5 checkpoints, which were written at 10-minute
intervals" (20 for the big models); fairseq's ``scripts/average_checkpoints.py`` does
the same for its checkpoints. This is our own implementation for Lightning ``.ckpt``
files (parameters under ``"state_dict"``) and plain state dicts.

Floating-point tensors are averaged in float64 and cast back to their dtype; integer
and boolean tensors (step counters such as BatchNorm's ``num_batches_tracked``) cannot
be averaged meaningfully and are taken from the last checkpoint. All checkpoints must
have the same keys and shapes.

The harness keeps one rolling ``last.ckpt``; a recipe that averages adds its own
``ModelCheckpoint(save_top_k=-1, every_n_train_steps=...)`` so that the last N exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def average_state_dicts(states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """The element-wise mean of ``states`` (in the order given; the last one supplies
    the non-floating tensors)."""
    if not states:
        raise ValueError("no state dicts to average")
    keys = list(states[-1].keys())
    for i, sd in enumerate(states):
        missing, extra = set(keys) - set(sd), set(sd) - set(keys)
        if missing or extra:
            raise ValueError(f"state dict {i} does not match the last one: missing {sorted(missing)}, "
                             f"unexpected {sorted(extra)}")
    out: dict[str, Tensor] = {}
    for key in keys:
        last = states[-1][key]
        for i, sd in enumerate(states):
            if sd[key].shape != last.shape:
                raise ValueError(f"{key!r}: shape {tuple(sd[key].shape)} in state dict {i}, "
                                 f"{tuple(last.shape)} in the last one")
        if last.is_floating_point() or last.is_complex():
            acc = torch.zeros_like(last, dtype=torch.complex128 if last.is_complex() else torch.float64)
            for sd in states:
                acc += sd[key].to(device=last.device, dtype=acc.dtype)
            out[key] = (acc / len(states)).to(last.dtype)
        else:
            out[key] = last.clone()
    return out


def load_state_dict(path: str | Path, *, weights_only: bool = True) -> dict[str, Tensor]:
    """The model parameters in ``path``: a Lightning checkpoint's ``state_dict`` or a
    plain state dict. ``weights_only=False`` is needed for checkpoints that pickle
    arbitrary objects (only for files you trust)."""
    obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path}: neither a Lightning checkpoint nor a state dict of tensors")
    return dict(sd)


_NUMBER = [re.compile(r"step=(\d+)"), re.compile(r"epoch=(\d+)"), re.compile(r"(\d+)(?=\D*$)")]


def _order_key(path: Path) -> tuple:
    for pattern in _NUMBER:  # Lightning's "epoch=3-step=1200.ckpt", fairseq's "checkpoint12.pt"
        m = pattern.search(path.name)
        if m:
            return (0, int(m.group(1)), path.name)
    return (1, path.stat().st_mtime_ns, path.name)


def last_checkpoints(directory: str | Path, n: int, pattern: str = "*.ckpt") -> list[Path]:
    """The ``n`` newest checkpoints in ``directory`` (oldest first), ordered by the step
    (else epoch, else last number) in their names, or by modification time when a name
    has no number. ``last.ckpt`` and ``interrupted.ckpt`` are skipped: they repeat a
    numbered checkpoint or are partial."""
    found = [p for p in Path(directory).glob(pattern) if p.stem not in {"last", "interrupted"}]
    if len(found) < n:
        raise ValueError(f"{directory}: {len(found)} checkpoints match {pattern!r}, {n} wanted")
    return sorted(found, key=_order_key)[-n:]


def average_checkpoints(paths: Sequence[str | Path], output: str | Path | None = None, *,
                        weights_only: bool = True) -> dict[str, Tensor]:
    """Average the parameters of ``paths``; with ``output``, write the result in the
    format of the last input (a Lightning checkpoint keeps its other entries, so it
    loads with ``load_from_checkpoint``; its optimizer state is the last run's)."""
    paths = [Path(p) for p in paths]
    avg = average_state_dicts([load_state_dict(p, weights_only=weights_only) for p in paths])
    if output is not None:
        last: Any = torch.load(paths[-1], map_location="cpu", weights_only=weights_only)
        if isinstance(last, Mapping) and "state_dict" in last:
            last = dict(last)
            last["state_dict"] = avg
            last["averaged_checkpoints"] = [p.name for p in paths]
        else:
            last = avg
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(output).with_name(Path(output).name + ".tmp")
        torch.save(last, tmp)
        tmp.replace(output)
    return avg
