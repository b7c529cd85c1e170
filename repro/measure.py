"""Measurement helpers shared by efficiency papers: tensor-memory peaks, timings,
scaling exponents, error against a float64 reference.

Memory: PyTorch exposes allocator peaks only for CUDA, so on CPU we count tensor
storage ourselves: a ``TorchDispatchMode`` sees every op's outputs and tracks the
bytes of storages created inside the measured call while they are alive (a weakref
callback fires when a storage is freed). This counts exactly what the algorithm
keeps (activations, autograd's saved tensors, gradients), independent of allocator
caching, and works on any device. On CUDA ``torch.cuda.max_memory_allocated`` is
recorded beside it.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class _LiveTensorBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}
        self._refs: list[weakref.ref] = []

    def _free(self, key: int, _ref) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # Outputs sharing storage with an input are views (or in-place results): no new memory.
        inputs = {a.untyped_storage()._cdata for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            key = st._cdata
            if key in self._live or key in inputs:
                continue
            nbytes = st.nbytes()
            self._live[key] = nbytes
            self._refs.append(weakref.ref(st, lambda r, k=key: self._free(k, r)))
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        return out


@dataclass(frozen=True)
class MemoryPeak:
    peak_bytes: int  # live tensor bytes created inside the call, at their maximum
    retained_bytes: int  # of those, still alive when the call returned (its results)
    cuda_peak_bytes: int | None = None  # allocator view, CUDA only

    @property
    def overhead_bytes(self) -> int:
        """Peak minus what the call returns: the working memory of the algorithm."""
        return self.peak_bytes - self.retained_bytes


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[MemoryPeak, Any]:
    """Run ``fn`` once and measure its tensor-memory peak (see module docstring)."""
    device = torch.device(device)
    gc.collect()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    tracker = _LiveTensorBytes()
    with tracker:
        result = fn()
    if cuda:
        torch.cuda.synchronize(device)
        cuda_peak = torch.cuda.max_memory_allocated(device) - base
    else:
        cuda_peak = None
    return MemoryPeak(tracker.peak, tracker.current, cuda_peak), result


def time_call(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, device: str | torch.device = "cpu") -> float:
    """Median wall time (s) of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_times(calls: dict[Any, Callable[[], Any]], repeats: int, device) -> dict[Any, float]:
    """Median wall time of every call, timed round-robin (one warm-up each, then
    ``repeats`` rounds over all calls), so that a slow drift of the machine's load is
    spread over all calls instead of aliasing into a trend over the sweep."""
    for fn in calls.values():
        time_call(fn, repeats=1, warmup=0, device=device)
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, fn in calls.items():
            samples[key].append(time_call(fn, repeats=1, warmup=0, device=device))
    return {key: statistics.median(v) for key, v in samples.items()}


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) on log(x): the scaling exponent."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-30)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    num = sum((a - mx) * (b - my) for a, b in zip(lx, ly))
    den = sum((a - mx) ** 2 for a in lx)
    return num / den


def max_abs_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return (x.double() - ref.double()).abs().max().item()
