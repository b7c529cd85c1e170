"""The measurements behind the claims (TaylorShift's efficiency analysis, on our hardware).

1. Equivalence: direct- and efficient-TaylorShift with the paper's input normalisation,
   in float64 against each other (the identity), and in float32 against a float64
   reference (forward error / rounding bound; gradient relative error).
2. Crossovers: for each head dimension d, the sequence length where efficient-TaylorShift
   starts to need less memory (repro.measure.peak_memory, integer bisection over N) and
   fewer operations (torch.utils.flop_counter on shape-only tensors), against the
   paper's analytic N1(d) and N0(d).
3. Time: median wall time of both forms over N at one d, the measured time crossover
   (CPU; reported, hardware-specific) and the ratio at the longest N.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from repro.measure import interleaved_times, peak_memory

from .data import random_like, random_qkv
from .model import A, B, C, direct_taylorshift, efficient_taylorshift, flops_crossover, memory_crossover, taylorshift

U32 = 2.0**-24
MIB = 2.0**20
FORMS: dict[str, Callable] = {"direct": direct_taylorshift, "efficient": efficient_taylorshift}


def forward_bound(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, terms: int,
                  temperature: float) -> torch.Tensor:
    """First-order rounding bound of Y = Y~_v / Y~_0 (Eq. 3) per output entry, float64:
    gamma_K (Y_bar_v + |o| Y_bar_0) / Y~_0, where Y_bar is the numerator evaluated with
    absolute values (a (|q|.|k|)^2 + b |q|.|k| + c) |v| -- the sum of the magnitudes of
    every product either form accumulates (README, "Error analysis")."""
    gamma = terms * U32 / (1 - terms * U32)
    qn = F.normalize(q.detach().double(), dim=-1) * temperature
    kn = F.normalize(k.detach().double(), dim=-1)
    x = qn @ kn.transpose(-2, -1)
    xa = qn.abs() @ kn.abs().transpose(-2, -1)
    y0 = (A * x * x + B * x + C).sum(-1, keepdim=True)
    wa = A * xa * xa + B * xa + C
    ybar_v = wa @ v.detach().double().abs()
    ybar_0 = wa.sum(-1, keepdim=True)
    return gamma * (ybar_v + out.detach().double().abs() * ybar_0) / y0


def equivalence(cfg, seed: int, device) -> dict[str, float]:
    out: dict[str, float] = {}
    worst = {"fp64": 0.0, "fwd_efficient": 0.0, "fwd_direct": 0.0, "grad_efficient": 0.0, "grad_direct": 0.0}
    for n, d in zip(cfg.equiv_lengths, cfg.equiv_dims):
        tag = f"n{n}_d{d}"
        q, k, v = random_qkv(cfg.equiv_batch, cfg.equiv_heads, n, d, seed=seed + n, dtype=torch.float64,
                             device=device, requires_grad=True)
        tau = cfg.temperature
        res = {f: taylorshift(q, k, v, form=f, temperature=tau) for f in FORMS}
        g = random_like(res["direct"], seed + 1)
        grads = {f: torch.autograd.grad(o, (q, k, v), g) for f, o in res.items()}
        ref, ref_g = res["direct"], grads["direct"]
        fp64 = max(((res["efficient"] - ref).abs().max() / ref.abs().max()).item(),
                   *(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(grads["efficient"], ref_g)))
        out[f"equiv/{tag}/fp64_rel_diff"] = fp64
        worst["fp64"] = max(worst["fp64"], fp64)
        # roundings per entry: N keys + d^2 (box contraction) + 2d (q.k, normalisation) + 24 (casts, scalings)
        bound = forward_bound(q, k, v, ref, n + d * d + 2 * d + 24, tau)
        q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
        for f in FORMS:
            o = taylorshift(q32, k32, v32, form=f, temperature=tau)
            gs = torch.autograd.grad(o, (q32, k32, v32), g.float())
            fr = ((o.double() - ref).abs() / bound).max().item()
            gr = max(((a.double() - b).abs().max() / b.abs().max()).item() for a, b in zip(gs, ref_g))
            out[f"equiv/{tag}/fwd_bound_ratio_{f}"] = fr
            out[f"equiv/{tag}/grad_rel_err_{f}"] = gr
            out[f"equiv/{tag}/fwd_max_abs_err_{f}"] = (o.double() - ref).abs().max().item()
            worst[f"fwd_{f}"] = max(worst[f"fwd_{f}"], fr)
            worst[f"grad_{f}"] = max(worst[f"grad_{f}"], gr)
    out["equiv/fp64_rel_diff"] = worst["fp64"]
    for f in FORMS:
        out[f"equiv/fwd_bound_ratio_{f}"] = worst[f"fwd_{f}"]
        out[f"equiv/grad_rel_err_{f}"] = worst[f"grad_{f}"]
    return out


def memory_bytes(form: str, n: int, d: int, device, batch: int = 1, heads: int = 1) -> int:
    """Peak bytes of tensors alive during one inference call (inputs excluded, the
    output included: equal for both forms)."""
    q, k, v = random_qkv(batch, heads, n, d, seed=0, device=device)
    with torch.no_grad():
        peak, _ = peak_memory(lambda: FORMS[form](q, k, v), device)
    return peak.peak_bytes


def operation_count(form: str, n: int, d: int, batch: int = 1, heads: int = 1) -> int:
    """FLOPs of one inference call as counted by torch.utils.flop_counter (matrix
    products; element-wise work is not counted), on shape-only tensors."""
    q, k, v = random_qkv(batch, heads, n, d, seed=0, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        FORMS[form](q, k, v)
    return fc.get_total_flops()


def crossing(diff: Callable[[int], float], lo: int = 2) -> float:
    """The N where diff(N) = cost_efficient(N) - cost_direct(N) changes sign from + to -,
    by integer bisection and linear interpolation between the bracketing integers."""
    if diff(lo) <= 0:
        raise ValueError("efficient is not the more expensive form at the start of the search")
    hi = lo * 2
    while diff(hi) > 0:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if diff(mid) > 0:
            lo = mid
        else:
            hi = mid
    f_lo, f_hi = diff(lo), diff(hi)
    return lo + f_lo / (f_lo - f_hi)


def crossovers(cfg, device) -> dict[str, float]:
    out: dict[str, float] = {}
    mem_dev, op_dev = [], []
    for d in cfg.crossover_dims:
        mem = crossing(lambda n: memory_bytes("efficient", n, d, device) - memory_bytes("direct", n, d, device))
        ops = crossing(lambda n: operation_count("efficient", n, d) - operation_count("direct", n, d))
        out[f"memory/crossover_d{d}"] = mem
        out[f"memory/analytic_crossover_d{d}"] = memory_crossover(d)
        out[f"memory/crossover_ratio_d{d}"] = mem / memory_crossover(d)
        out[f"flops/crossover_d{d}"] = ops
        out[f"flops/analytic_crossover_d{d}"] = flops_crossover(d)
        out[f"flops/crossover_ratio_d{d}"] = ops / flops_crossover(d)
        mem_dev.append(abs(mem / memory_crossover(d) - 1))
        op_dev.append(abs(ops / flops_crossover(d) - 1))
    out["memory/crossover_max_rel_dev"] = max(mem_dev)
    out["flops/crossover_max_rel_dev"] = max(op_dev)
    return out


def _log_crossing(ns: list[int], ratio: list[float]) -> float | None:
    """First N where ratio (efficient / direct) falls below 1, interpolated in log-log."""
    for i in range(1, len(ns)):
        if ratio[i - 1] > 1 >= ratio[i]:
            a, b = math.log(ratio[i - 1]), math.log(ratio[i])
            t = a / (a - b)
            return math.exp(math.log(ns[i - 1]) + t * (math.log(ns[i]) - math.log(ns[i - 1])))
    return None


def sweep(cfg, seed: int, device) -> tuple[dict[str, float], dict[str, Any]]:
    """Time, memory and operations of both forms over N at d = cfg.time_dim."""
    out: dict[str, float] = {}
    d, b = cfg.time_dim, cfg.time_batch
    curves: dict[str, Any] = {"n": list(cfg.time_lengths)}
    inputs = {n: random_qkv(b, 1, n, d, seed=seed, device=device) for n in cfg.time_lengths}

    def make(fn, n):
        q, k, v = inputs[n]

        def call():
            with torch.no_grad():
                return fn(q, k, v)

        return call

    times = interleaved_times({(f, n): make(fn, n) for f, fn in FORMS.items() for n in cfg.time_lengths},
                              cfg.time_repeats, device)
    for f in FORMS:
        mems, ops = [], []
        for n in cfg.time_lengths:
            mems.append(memory_bytes(f, n, d, device, batch=b) / MIB)
            ops.append(operation_count(f, n, d, batch=b))
            out[f"time/{f}_s/n{n}"] = times[(f, n)]
            out[f"memory/{f}_mib/n{n}"] = mems[-1]
        curves[f] = {"time": [times[(f, n)] for n in cfg.time_lengths], "memory": mems, "flops": ops}
    ratio = [e / di for e, di in zip(curves["efficient"]["time"], curves["direct"]["time"])]
    tc = _log_crossing(list(cfg.time_lengths), ratio)
    if tc is not None:
        out[f"time/crossover_d{d}"] = tc
        out[f"time/crossover_over_flops_analytic_d{d}"] = tc / flops_crossover(d)
    r = cfg.time_report_length
    if r in cfg.time_lengths:
        out["time/efficient_over_direct"] = out[f"time/efficient_s/n{r}"] / out[f"time/direct_s/n{r}"]
    curves["time_crossover"] = tc
    return out, curves


def plot(curves: dict[str, Any], d: int, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = curves["n"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = {"direct": "#d62728", "efficient": "#1f77b4"}
    for f in FORMS:
        axes[0].loglog(ns, curves[f]["memory"], marker="o", color=colors[f], label=f"{f}-TaylorShift")
        axes[1].loglog(ns, curves[f]["flops"], marker="o", color=colors[f], label=f"{f}-TaylorShift")
        axes[2].loglog(ns, curves[f]["time"], marker="o", color=colors[f], label=f"{f}-TaylorShift")
    axes[0].axvline(memory_crossover(d), color="k", ls="--", label=f"analytic N1({d}) = {memory_crossover(d):.0f}")
    for ax in axes[1:]:
        ax.axvline(flops_crossover(d), color="k", ls="--", label=f"analytic N0({d}) = {flops_crossover(d):.0f}")
    if curves.get("time_crossover"):
        axes[2].axvline(curves["time_crossover"], color="#2a9d39", ls=":",
                        label=f"measured time crossover {curves['time_crossover']:.0f}")
    axes[0].set(xlabel="sequence length N", ylabel="peak memory (MiB)", title="Memory (inference)")
    axes[1].set(xlabel="sequence length N", ylabel="FLOPs (matrix products)", title="Operations")
    axes[2].set(xlabel="sequence length N", ylabel="median time (s)", title="Time (this run's hardware)")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(cfg, ctx) -> dict[str, float]:
    """Equivalence on every seed (random inputs); crossovers (deterministic) and the
    time sweep once, on the first seed."""
    device = ctx.device
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        metrics = equivalence(cfg, ctx.seed, device)
        if ctx.seed == ctx.first_seed:
            metrics.update(crossovers(cfg, device))
            if cfg.time_lengths:
                sw, curves = sweep(cfg, ctx.seed, device)
                metrics.update(sw)
                plot(curves, cfg.time_dim, ctx.run_dir / "figures" / "memory_flops_time_vs_n.png",
                     f"TaylorShift, d = {cfg.time_dim}, batch {cfg.time_batch}, 1 head, {device.type}, "
                     f"{torch.get_num_threads()} thread(s)")
    finally:
        torch.set_num_threads(threads)
    return metrics
