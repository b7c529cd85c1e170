"""The measurements behind the claims (Lightning Attention-2 on our hardware).

1. Equivalence: the tiled forward (Algorithm 1) and backward (Algorithm 2) in float32
   against the masked O(n^2) form in float64, on a length that is not a multiple of the
   block, without decay and with TransNormerLLM's per-head decay. Each error is divided
   by the rounding-error bound of the sum being computed (README, "Error analysis"):
   a ratio <= 1 means "equal up to float32 rounding".
2. Speed: median wall time of the tiled form, the masked O(n^2) form (same-run
   baseline) and PyTorch's causal softmax SDPA (the "other attention" baseline), for
   inference (forward) and training (forward + backward), over n with batch x n fixed;
   reported per token, with the log-log slope over n.
3. Memory: working memory (repro.measure.peak_memory) of the tiled and the masked form
   over the same sweep.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from repro.blocks.attention import sdpa_attention
from repro.blocks.linear_attention import causal_linear_attention, decay_mask
from repro.measure import interleaved_times, loglog_slope, max_abs_err, peak_memory

from .data import random_like, random_qkv
from .model import lightning_attention, tnl_decay

U32 = 2.0**-24  # unit roundoff of float32
MIB = 2.0**20


def rounding_bound(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, M: torch.Tensor, terms: int) -> torch.Tensor:
    """gamma_K * ((|a| |b|^T) * M) |c| in float64: the worst-case rounding error of any
    evaluation order of ((a b^T) * M) c with K accumulated roundings per entry
    (Higham, Accuracy and Stability of Numerical Algorithms, Sec. 3.1)."""
    gamma = terms * U32 / (1 - terms * U32)
    a, b, c = (t.detach().double().abs() for t in (a, b, c))
    return gamma * torch.matmul(torch.matmul(a, b.transpose(-2, -1)) * M.double().abs(), c)


def equivalence(cfg, seed: int, device) -> dict[str, float]:
    out: dict[str, float] = {}
    worst = {"fwd_tiled": 0.0, "grad_tiled": 0.0, "fwd_naive": 0.0, "grad_naive": 0.0}
    b, h, n, d = cfg.equiv_batch, cfg.equiv_heads, cfg.equiv_length, cfg.equiv_dim
    e = d
    # accumulated roundings per output entry: d (q.k) + n (over keys) + 2 per block (state and
    # decay products) + 3 (input rounding) + 8 (decay factors' own rounding, margin)
    terms = n + max(d, e) + 2 * math.ceil(n / cfg.equiv_block) + 11
    for case in ("no_decay", "tnl_decay"):
        q, k, v = random_qkv(b, h, n, d, e, seed=seed, dtype=torch.float64, device=device, requires_grad=True)
        lam = None if case == "no_decay" else tnl_decay(h, torch.float64).to(device)
        ref = causal_linear_attention(q, k, v, decay=lam)
        do = random_like(ref, seed + 1)
        ref_grads = torch.autograd.grad(ref, (q, k, v), do)
        M = decay_mask(n, lam, dtype=torch.float64, device=device)
        fwd_bound = rounding_bound(q, k, v, M, terms)
        grad_bounds = (rounding_bound(do, v, k, M, terms),  # dQ = ((dO V^T) * M) K
                       rounding_bound(v, do, q, M.transpose(-2, -1), terms),  # dK = ((V dO^T) * M^T) Q
                       rounding_bound(k, q, do, M.transpose(-2, -1), terms))  # dV = ((K Q^T) * M^T) dO
        q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
        lam32 = None if lam is None else lam.float()
        runs = {
            "tiled": lambda: lightning_attention(q32, k32, v32, lam32, cfg.equiv_block),
            "naive": lambda: causal_linear_attention(q32, k32, v32, decay=lam32),
        }
        for name, fn in runs.items():
            o = fn()
            grads = torch.autograd.grad(o, (q32, k32, v32), do.float())
            fr = ((o.double() - ref).abs() / fwd_bound).max().item()
            gr = max(((g.double() - r).abs() / bd).max().item() for g, r, bd in zip(grads, ref_grads, grad_bounds))
            out[f"equiv/{case}/fwd_err_{name}"] = max_abs_err(o, ref)
            out[f"equiv/{case}/grad_err_{name}"] = max(max_abs_err(g, r) for g, r in zip(grads, ref_grads))
            out[f"equiv/{case}/fwd_bound_ratio_{name}"] = fr
            out[f"equiv/{case}/grad_bound_ratio_{name}"] = gr
            worst[f"fwd_{name}"] = max(worst[f"fwd_{name}"], fr)
            worst[f"grad_{name}"] = max(worst[f"grad_{name}"], gr)
    for key, val in worst.items():
        kind, name = key.split("_")
        out[f"equiv/{kind}_bound_ratio_{name}"] = val
    return out


def _impls(cfg, lam):
    return {
        "tiled": lambda q, k, v: lightning_attention(q, k, v, lam, cfg.block_size),
        "naive": lambda q, k, v: causal_linear_attention(q, k, v, decay=lam),
        "sdpa": lambda q, k, v: sdpa_attention(q, k, v, causal=True),
    }


def _max_len(cfg, name: str) -> int:
    return {"tiled": max(cfg.lengths), "naive": cfg.naive_max_length, "sdpa": cfg.sdpa_max_length}[name]


def scaling(cfg, seed: int, device) -> tuple[dict[str, float], dict[str, Any]]:
    out: dict[str, float] = {}
    curves: dict[str, Any] = {}
    lam = tnl_decay(cfg.heads).to(device) if cfg.decay else None
    impls = _impls(cfg, lam)

    def make(mode, name, n):
        fn = impls[name]
        b = max(1, cfg.total_tokens // n)
        q, k, v = random_qkv(b, cfg.heads, n, cfg.head_dim, cfg.value_dim, seed=seed, device=device,
                             requires_grad=(mode == "train"))
        do = random_like(v, seed + 1) if mode == "train" else None

        def call():
            if mode == "fwd":
                with torch.no_grad():
                    return fn(q, k, v)
            return torch.autograd.grad(fn(q, k, v), (q, k, v), do)

        return call, b

    keys = [(mode, name, n) for mode in ("fwd", "train") for name in impls for n in cfg.lengths
            if n <= _max_len(cfg, name)]
    made = {key: make(*key) for key in keys}
    times = interleaved_times({key: c for key, (c, _) in made.items()}, cfg.time_repeats, device)
    for mode in ("fwd", "train"):
        for name in impls:
            ns = [n for (m_, nm, n) in keys if m_ == mode and nm == name]
            per_tok, mem = [], []
            for n in ns:
                call, b = made[(mode, name, n)]
                per_tok.append(times[(mode, name, n)] / (b * n) * 1e6)  # microseconds per token
                out[f"time/{mode}/{name}_us_per_token/n{n}"] = per_tok[-1]
                if name != "sdpa":  # SDPA is the speed baseline; memory is about the two linear forms
                    peak, _ = peak_memory(call, device)
                    mem.append(peak.overhead_bytes / MIB)
                    out[f"memory/{mode}/{name}_mib/n{n}"] = mem[-1]
            if len(ns) >= 2:
                out[f"time/{mode}/{name}_per_token_exponent"] = loglog_slope(ns, per_tok)
            curves[f"time/{mode}/{name}"] = (ns, per_tok)
            if len(mem) >= 2:
                out[f"memory/{mode}/{name}_exponent"] = loglog_slope(ns, [max(m, 1e-6) for m in mem])
                curves[f"memory/{mode}/{name}"] = (ns, mem)
        r = cfg.report_length
        if f"time/{mode}/sdpa_us_per_token/n{r}" in out and f"time/{mode}/tiled_us_per_token/n{r}" in out:
            out[f"time/{mode}/sdpa_over_tiled"] = (out[f"time/{mode}/sdpa_us_per_token/n{r}"]
                                                   / out[f"time/{mode}/tiled_us_per_token/n{r}"])
        rn = min(cfg.naive_max_length, r)
        if f"time/{mode}/naive_us_per_token/n{rn}" in out:
            out[f"time/{mode}/naive_over_tiled"] = (out[f"time/{mode}/naive_us_per_token/n{rn}"]
                                                    / out[f"time/{mode}/tiled_us_per_token/n{rn}"])
    return out, curves


def plot(curves: dict[str, Any], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = {"tiled": "#1f77b4", "naive": "#d62728", "sdpa": "#2a9d39"}
    labels = {"tiled": "Lightning Attention-2 (tiled)", "naive": "masked O(n^2) linear attn.",
              "sdpa": "softmax SDPA (causal)"}
    for key, (ns, ys) in curves.items():
        kind, mode, name = key.split("/")
        if not ns:
            continue
        if kind == "time":
            ax = axes[0] if mode == "fwd" else axes[1]
            ax.loglog(ns, ys, marker="o", color=colors[name], label=labels[name])
        else:
            axes[2].loglog(ns, ys, "-" if mode == "fwd" else "--", marker="o", color=colors[name],
                           label=f"{labels[name]}, {mode}")
    axes[0].set(xlabel="sequence length n (batch x n fixed)", ylabel="us per token", title="Inference (forward)")
    axes[1].set(xlabel="sequence length n (batch x n fixed)", ylabel="us per token", title="Training (fwd + bwd)")
    axes[2].set(xlabel="sequence length n (batch x n fixed)", ylabel="working memory (MiB)", title="Memory")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(cfg, ctx) -> dict[str, float]:
    """Equivalence on every seed (random inputs); speed and memory once, on the first
    seed (the baselines are timed in the same run, so their ratios are comparable)."""
    device = ctx.device
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        metrics = equivalence(cfg, ctx.seed, device)
        if cfg.lengths and ctx.seed == ctx.first_seed:
            scal, curves = scaling(cfg, ctx.seed, device)
            metrics.update(scal)
            plot(curves, ctx.run_dir / "figures" / "time_memory_vs_n.png",
                 f"Lightning Attention-2, H={cfg.heads}, d={cfg.head_dim}, block {cfg.block_size}, "
                 f"batch x n = {cfg.total_tokens}, {device.type}, {torch.get_num_threads()} thread(s)")
    finally:
        torch.set_num_threads(threads)
    return metrics
