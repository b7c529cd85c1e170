"""The measurements behind the claims (Sections 3-6 of the paper, on our hardware).

1. Equivalence: forward outputs and gradients of chunked attention and of standard
   attention (the paper's baseline: materialise the n x n matrix) are compared with a
   float64 computation of the same attention; chunking must not add error beyond
   standard attention's own fp32 rounding (ratio of errors, see README).
2. Memory: the working memory (peak live tensor bytes minus the returned tensors) of
   both, for inference and for differentiation, over n; the log-log slope over n.
3. Time: median wall time of chunked, standard and PyTorch SDPA in the same run.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from repro.blocks.attention import naive_attention, sdpa_attention
from repro.measure import loglog_slope, max_abs_err, peak_memory, time_call

from .data import random_qkv
from .model import chunked_attention

MIB = 2.0**20


def _impls(cfg) -> dict[str, Any]:
    return {
        "standard": naive_attention,
        "chunked": lambda q, k, v: chunked_attention(q, k, v, query_chunk=cfg.query_chunk, key_chunk=cfg.key_chunk),
        "sdpa": sdpa_attention,
    }


def equivalence(cfg, seed: int, device) -> dict[str, float]:
    """Max |error| against float64 for chunked and standard attention, forward and
    backward, on an odd length with many chunks, for ordinary and very large logits."""
    out: dict[str, float] = {}
    worst = {"fwd_chunked": 0.0, "fwd_standard": 0.0, "grad_chunked": 0.0, "grad_standard": 0.0}
    n = cfg.equiv_length
    for case, scale in (("normal", 1.0), ("large_logits", cfg.large_logit_scale)):
        q, k, v = random_qkv(cfg.batch, cfg.heads, n, cfg.head_dim, seed=seed, dtype=torch.float64,
                             device=device, logit_scale=scale, requires_grad=True)
        ref = naive_attention(q, k, v)
        g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64).to(device)
        ref_grads = torch.autograd.grad(ref, (q, k, v), g)
        q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
        runs = {
            "standard": lambda: naive_attention(q32, k32, v32),
            "chunked": lambda: chunked_attention(q32, k32, v32, query_chunk=cfg.equiv_query_chunk,
                                                 key_chunk=cfg.equiv_key_chunk),
        }
        for name, fn in runs.items():
            o = fn()
            grads = torch.autograd.grad(o, (q32, k32, v32), g.float())
            fe = max_abs_err(o, ref)
            ge = max(max_abs_err(a, b) / b.abs().max().item() for a, b in zip(grads, ref_grads))
            out[f"equiv/{case}/fwd_err_{name}"] = fe
            out[f"equiv/{case}/grad_err_{name}"] = ge
            worst[f"fwd_{name}"] = max(worst[f"fwd_{name}"], fe)
            worst[f"grad_{name}"] = max(worst[f"grad_{name}"], ge)
        out[f"equiv/{case}/finite"] = float(all(torch.isfinite(t).all() for t in (o, *grads)))
    out["equiv/fwd_err_ratio"] = worst["fwd_chunked"] / worst["fwd_standard"]
    out["equiv/grad_err_ratio"] = worst["grad_chunked"] / worst["grad_standard"]
    out["equiv/fwd_err_chunked"] = worst["fwd_chunked"]
    out["equiv/grad_err_chunked"] = worst["grad_chunked"]
    return out


def scaling(cfg, seed: int, device) -> tuple[dict[str, float], dict[str, Any]]:
    """Memory and time over ``cfg.lengths`` for inference and differentiation."""
    out: dict[str, float] = {}
    curves: dict[str, Any] = {}
    impls = _impls(cfg)
    for mode in ("inference", "grad"):
        for name in ("standard", "chunked", "sdpa"):
            mem, tim, mem_n = [], [], []
            for n in cfg.lengths:
                if name == "standard" and n > cfg.standard_max_length:
                    continue
                q, k, v = random_qkv(cfg.batch, cfg.heads, n, cfg.head_dim, seed=seed, device=device,
                                     requires_grad=(mode == "grad"))
                fn = impls[name]

                def call():
                    if mode == "inference":
                        with torch.no_grad():
                            return fn(q, k, v)
                    o = fn(q, k, v)
                    return torch.autograd.grad(o, (q, k, v), torch.ones_like(o))

                if name != "sdpa":  # SDPA is the time baseline; its memory is not the paper's subject
                    peak, _ = peak_memory(call, device)
                    mem.append(peak.overhead_bytes / MIB)
                    mem_n.append(n)
                    out[f"memory/{mode}/{name}_mib/n{n}"] = mem[-1]
                tim.append(time_call(call, repeats=cfg.time_repeats, warmup=1, device=device))
                out[f"time/{mode}/{name}_s/n{n}"] = tim[-1]
            if mem:
                out[f"memory/{mode}/{name}_exponent"] = loglog_slope(mem_n, mem)
                curves[f"memory/{mode}/{name}"] = (mem_n, mem)
            curves[f"time/{mode}/{name}"] = ([n for n in cfg.lengths if name != "standard"
                                              or n <= cfg.standard_max_length], tim)
        r = cfg.report_length
        out[f"memory/{mode}/saving"] = out[f"memory/{mode}/standard_mib/n{r}"] / out[f"memory/{mode}/chunked_mib/n{r}"]
        out[f"time/{mode}/chunked_over_standard"] = out[f"time/{mode}/chunked_s/n{r}"] / out[f"time/{mode}/standard_s/n{r}"]
        out[f"time/{mode}/chunked_over_sdpa"] = out[f"time/{mode}/chunked_s/n{r}"] / out[f"time/{mode}/sdpa_s/n{r}"]
        out[f"time/{mode}/standard_over_sdpa"] = out[f"time/{mode}/standard_s/n{r}"] / out[f"time/{mode}/sdpa_s/n{r}"]
    return out, curves


def sqrt_chunk_scaling(cfg, seed: int, device) -> tuple[dict[str, float], dict[str, Any]]:
    """Working memory of chunked attention with key chunks of ceil(sqrt(n)), the
    setting of the paper's O(sqrt(n)) statement (query chunks stay at the default)."""
    out: dict[str, float] = {}
    curves: dict[str, Any] = {}
    for mode in ("inference", "grad"):
        mem = []
        for n in cfg.lengths:
            kc = math.ceil(math.sqrt(n))
            q, k, v = random_qkv(cfg.batch, cfg.heads, n, cfg.head_dim, seed=seed, device=device,
                                 requires_grad=(mode == "grad"))

            def call():
                if mode == "inference":
                    with torch.no_grad():
                        return chunked_attention(q, k, v, query_chunk=cfg.query_chunk, key_chunk=kc)
                o = chunked_attention(q, k, v, query_chunk=cfg.query_chunk, key_chunk=kc)
                return torch.autograd.grad(o, (q, k, v), torch.ones_like(o))

            peak, _ = peak_memory(call, device)
            mem.append(peak.overhead_bytes / MIB)
            out[f"memory/{mode}/sqrt_chunked_mib/n{n}"] = mem[-1]
        out[f"memory/{mode}/sqrt_chunked_exponent"] = loglog_slope(cfg.lengths, mem)
        curves[f"memory/{mode}/sqrt_chunked"] = (list(cfg.lengths), mem)
    return out, curves


def plot(curves: dict[str, Any], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = {"standard": "#d62728", "chunked": "#1f77b4", "sqrt_chunked": "#ff7f0e", "sdpa": "#2a9d39"}
    for key, (ns, ys) in curves.items():
        kind, mode, name = key.split("/")
        ax = axes[0] if kind == "memory" else axes[1]
        ax.loglog(ns, ys, "-" if mode == "inference" else "--", color=colors[name], marker="o",
                  label=f"{name}, {mode}")
    axes[0].set(xlabel="sequence length n", ylabel="working memory (MiB)", title="Memory overhead")
    axes[1].set(xlabel="sequence length n", ylabel="median time (s)", title="Time")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(cfg, ctx) -> dict[str, float]:
    """Equivalence on every seed (the inputs are random); memory and time once, on the
    first seed (memory is deterministic, and the time ratios are taken in one run)."""
    device = ctx.device
    metrics = equivalence(cfg, ctx.seed, device)
    if cfg.lengths and ctx.seed == ctx.first_seed:
        scal, curves = scaling(cfg, ctx.seed, device)
        sq, sq_curves = sqrt_chunk_scaling(cfg, ctx.seed, device)
        metrics.update(scal)
        metrics.update(sq)
        curves.update(sq_curves)
        plot(curves, ctx.run_dir / "figures" / "memory_time_vs_n.png",
             f"Chunked vs standard attention, d={cfg.head_dim}, {device.type}")
    return metrics
