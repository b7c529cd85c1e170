"""The measurements behind the claims (README, "Claims and tolerances").

1. Exact simulation: for each algorithm and graph size, a batch of random graphs is run
   through the looped transformer (float64, the paper's constants) and every graph's
   output is compared with the reference: BFS/DFS parents against networkx (sorted
   neighbours), Dijkstra distances against networkx and parents against the paper's
   tie-breaking reference. A graph counts only if every node is right.
2. Finite precision (first seed only; measured, not claimed): the same check while one
   thing is pushed: the number type (float32, bfloat16), the angular increment δ at the
   paper's temperature, the graph size at a coarse δ (positional encodings wrap around
   the circle), and the edge-weight range against the "unreached" sentinel 1e4.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .data import (
    GraphCase,
    random_case,
    reference_bfs,
    reference_dfs,
    reference_dijkstra_distances,
    reference_dijkstra_paper,
)
from .model import Constants, default_layout, run

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


def _seed(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def check(case: GraphCase, algorithm: str, parents: list[int], dist: list[float], c: Constants) -> tuple[bool, bool]:
    """(exactly right, Dijkstra tree valid under any tie-breaking)."""
    n = case.adjacency.shape[0]
    if algorithm == "bfs":
        ok = parents == reference_bfs(case)
        return ok, ok
    if algorithm == "dfs":
        ok = parents == reference_dfs(case)
        return ok, ok
    ref = reference_dijkstra_distances(case)
    want = [ref.get(i, c.unreached) for i in range(n)]
    dist_ok = all(abs(a - b) <= 1e-9 * max(1.0, abs(b)) for a, b in zip(dist, want))
    valid = dist_ok
    for j in range(n):
        p = parents[j]
        if j == case.source or j not in ref:
            valid = valid and p == j
        else:
            valid = valid and 0 <= p < n and p in ref and case.adjacency[p, j] > 0 \
                and abs(ref[p] + case.adjacency[p, j] - ref[j]) <= 1e-9
    return dist_ok and parents == reference_dijkstra_paper(case), valid


def evaluate(algorithm: str, n: int, count: int, seed: int, c: Constants = Constants(),
             dtype: torch.dtype = torch.float64, max_weight: int = 10) -> dict[str, float]:
    cases = [random_case(n, algorithm, _seed(seed, algorithm, n, i, max_weight), max_weight=max_weight)
             for i in range(count)]
    parents, dist, loops = run([cs.adjacency for cs in cases], [cs.source for cs in cases], algorithm, c, dtype)
    results = [check(cs, algorithm, p, d, c) for cs, p, d in zip(cases, parents, dist)]
    return {
        "agreement": float(np.mean([r[0] for r in results])),
        "valid": float(np.mean([r[1] for r in results])),
        "loops": float(loops),
    }


def exact_simulation(cfg, seed: int, first: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    sizes = tuple(cfg.sizes) + (tuple(cfg.first_seed_sizes) if first else ())
    for alg in cfg.algorithms:
        right = []
        for n in sizes:
            r = evaluate(alg, n, cfg.graphs_per_size, seed, max_weight=cfg.max_weight)
            out[f"{alg}/n{n}/agreement"] = r["agreement"]
            out[f"{alg}/n{n}/loops"] = r["loops"]
            if alg == "dijkstra":
                out[f"{alg}/n{n}/valid_tree"] = r["valid"]
            right.append(r["agreement"])
        out[f"{alg}/agreement"] = float(np.mean(right))  # equal graph counts per size
    lay = default_layout()
    out["model/width"] = float(lay.width)
    return out


def precision_limits(cfg, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    out: dict[str, float] = {}
    curves: dict[str, Any] = {}
    n, cnt = cfg.limit_n, cfg.limit_graphs
    base = Constants()
    # number type, at the paper's constants (and float32 with constants sized for it)
    bars = {}
    for name in cfg.limit_dtypes:
        r = evaluate("dijkstra", n, cnt, seed, base, DTYPES[name], cfg.max_weight)
        out[f"limit/dtype_{name}/agreement"] = bars[name] = r["agreement"]
    small = replace(base, omega=1e3, unreached=1e2, tol=0.5)
    r = evaluate("bfs", n, cnt, seed, small, torch.float32)
    out["limit/dtype_float32_small_constants/agreement"] = bars["float32,\nsmall consts\n(BFS)"] = r["agreement"]
    curves["dtype"] = bars
    # angular increment at the paper's temperature
    xs, ys = [], []
    for delta in cfg.limit_deltas:
        r = evaluate("dijkstra", n, cnt, seed, replace(base, delta=delta), torch.float64, cfg.max_weight)
        out[f"limit/delta_{delta:g}/agreement"] = r["agreement"]
        xs.append(delta)
        ys.append(r["agreement"])
    curves["delta"] = (xs, ys)
    # graph size at a coarse increment: encodings wrap around the circle after 2 pi / delta nodes
    xs, ys = [], []
    for size in cfg.wrap_sizes:
        r = evaluate("bfs", size, cnt, seed, replace(base, delta=cfg.wrap_delta), torch.float64)
        out[f"limit/wrap_n{size}/agreement"] = r["agreement"]
        xs.append(size)
        ys.append(r["agreement"])
    curves["wrap"] = (xs, ys)
    # edge-weight range against the unreached sentinel
    xs, ys = [], []
    for w in cfg.limit_weights:
        r = evaluate("dijkstra", n, cnt, seed, base, torch.float64, max_weight=w)
        out[f"limit/weight_{w}/agreement"] = r["agreement"]
        xs.append(w)
        ys.append(r["agreement"])
    curves["weight"] = (xs, ys)
    return out, curves


def plot(cfg, curves: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    names = list(curves["dtype"])
    axes[0].bar(range(len(names)), [curves["dtype"][k] for k in names], color="#1f77b4")
    axes[0].set_xticks(range(len(names)), names, fontsize=7)
    axes[0].set(ylabel="graphs simulated exactly", title=f"number type (Dijkstra, n={cfg.limit_n})", ylim=(0, 1.05))
    xs, ys = curves["delta"]
    axes[1].semilogx(xs, ys, "o-")
    axes[1].set(xlabel="angular increment δ (T = 1e-7)", title="positional-encoding resolution", ylim=(-0.05, 1.05))
    xs, ys = curves["wrap"]
    axes[2].plot(xs, ys, "o-")
    axes[2].axvline(2 * np.pi / cfg.wrap_delta, color="gray", ls="--", lw=1, label="2π/δ")
    axes[2].set(xlabel=f"nodes n (δ = {cfg.wrap_delta})", title="graph size vs encoding wrap-around",
                ylim=(-0.05, 1.05))
    axes[2].legend(fontsize=7)
    xs, ys = curves["weight"]
    axes[3].semilogx(xs, ys, "o-")
    axes[3].set(xlabel="max edge weight (sentinel 'unreached' = 1e4)", title="value range (Dijkstra)",
                ylim=(-0.05, 1.05))
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.suptitle("Looped transformer: fraction of graphs simulated exactly when precision is pushed", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(cfg, ctx) -> dict[str, float]:
    """Every seed: exact simulation on its own random graphs (the first seed adds the
    large sizes). First seed: the precision limits and the figure. Runs single-threaded (the work is thousands of tiny matmuls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = exact_simulation(cfg, ctx.seed, ctx.seed == ctx.first_seed)
        if cfg.limits and ctx.seed == ctx.first_seed:
            lim, curves = precision_limits(cfg, ctx.seed)
            metrics.update(lim)
            plot(cfg, curves, ctx.run_dir / "figures" / "precision_limits.png")
    finally:
        torch.set_num_threads(threads)
    return metrics
