"""Recipe: Simulation of Graph Algorithms with Looped Transformers (Back de Luca &
Fountoulakis, ICML 2024).

A measurement recipe: forward passes of a hand-built looped transformer, no training.
The claim is the paper's theorem by construction: the network simulates the algorithm
exactly, on graphs of any size that the number precision allows. Claims and tolerances
were written before the first run (README, "Claims and tolerances").
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, lazy


@dataclass(frozen=True)
class Config:
    algorithms: tuple[str, ...] = ("bfs", "dfs", "dijkstra")
    sizes: tuple[int, ...] = (4, 8, 16, 32)  # nodes, every seed (16: the CLRS train/validation size)
    first_seed_sizes: tuple[int, ...] = (64,)  # extra sizes on the first seed only (64: the CLRS test size)
    graphs_per_size: int = 8  # random graphs per (algorithm, size, seed)
    max_weight: int = 10  # Dijkstra edge weights are integers 1..max_weight
    # finite-precision measurements (first seed only; measured, not claimed)
    limits: bool = True
    limit_n: int = 12  # nodes of the graphs used for the precision measurements
    limit_graphs: int = 8
    limit_dtypes: tuple[str, ...] = ("float64", "float32", "bfloat16")
    limit_deltas: tuple[float, ...] = (1e-2, 5e-3, 3e-3, 2e-3, 1e-3)
    wrap_delta: float = 0.5  # a coarse increment: encodings wrap around after 2 pi / 0.5 = 12.6 nodes
    wrap_sizes: tuple[int, ...] = (8, 12, 14, 16, 20)
    limit_weights: tuple[int, ...] = (10, 1000, 10000)


PAPER = Paper(
    slug="looped_transformer_graphs",
    title="Simulation of Graph Algorithms with Looped Transformers",
    arxiv="2402.01107",
    year=2024,
    authors=("Artur Back de Luca", "Kimon Fountoulakis"),
    venue="ICML 2024",
    code="https://github.com/opallab/graphalgosimulation",
)

_EXACT_TOL = Tolerance(
    "abs", 0.0, "definition",
    "Simulation is exact by construction: every node's output must equal the reference on every graph. In float64 "
    "with integer data every quantity the network computes is an integer or an exactly representable constant (or "
    "differs from one by a softmax leak below 1e-100), so there is no rounding to allow for.",
)
_SOURCE = (
    "Abstract: 'We prove by construction that this architecture can simulate individual algorithms such as "
    "Dijkstra's shortest path, Breadth- and Depth-First Search, and Kosaraju's strongly connected components'; the "
    "paper validates its networks empirically (Appendix B.3) on CLRS graphs of 16 nodes (train/validation) and 64 "
    "nodes (test) with δ = 1e-2, Ω = 1e5, T = 1e-7. Our network is our own construction from the paper's "
    "description (README)."
)


def _proto(alg: str, ref: str) -> str:
    return (f"8 random graphs per size n in {{4, 8, 16, 32}} per seed, and n = 64 on the first seed (Erdős–Rényi, "
            f"p ~ U(0.1, 0.5) per graph; "
            f"{ref}); looped transformer in float64 with δ = 1e-2, T = 1e-7, Ω = 1e5, step tolerance 1e-7, "
            f"looped until its termination flag; fraction of graphs whose decoded output equals the reference at "
            f"every node, mean over sizes; worst seed.")


CPU_CLAIMS = (
    Claim(
        id="bfs-exact", metric="bfs/agreement", reported=1.0, better="higher", bound=True, tolerance=_EXACT_TOL,
        seeds=3, aggregate="min", source=_SOURCE + " (BFS)",
        protocol=_proto("bfs", "undirected, random source; reference: networkx bfs_predecessors with sorted "
                               "neighbours, unreached nodes their own parent"),
        unit="fraction of graphs",
    ),
    Claim(
        id="dfs-exact", metric="dfs/agreement", reported=1.0, better="higher", bound=True, tolerance=_EXACT_TOL,
        seeds=3, aggregate="min", source=_SOURCE + " (DFS)",
        protocol=_proto("dfs", "directed, DFS forest over all roots in index order as in CLRS; reference: networkx "
                               "dfs_predecessors with sorted neighbours"),
        unit="fraction of graphs",
    ),
    Claim(
        id="dijkstra-exact", metric="dijkstra/agreement", reported=1.0, better="higher", bound=True,
        tolerance=_EXACT_TOL, seeds=3, aggregate="min", source=_SOURCE + " (Dijkstra)",
        protocol=_proto("dijkstra", "undirected, integer weights 1..10, random source; reference: networkx "
                                    "single_source_dijkstra_path_length for every distance, and parents equal to "
                                    "the paper's Dijkstra (lowest-index minimum, strict '<' relaxation)"),
        unit="fraction of graphs",
    ),
)

PROFILES = {
    "cpu": Profile(
        "cpu", Config(),
        "BFS, DFS and Dijkstra on random graphs of 4-32 nodes (8 per size, 3 seeds) and 64 nodes (first seed), "
        "float64 at the paper's constants; on the first seed the precision limits (number type, δ, graph size at "
        "coarse δ, weight range).",
        claims=CPU_CLAIMS, seeds=3, budget_minutes=2.0,  # 77 s measured on 2 cores: runs in CI
    ),
    "smoke": Profile(
        "smoke", Config(sizes=(4,), first_seed_sizes=(), graphs_per_size=2, limit_n=4, limit_graphs=1, limit_dtypes=("float32",),
                        limit_deltas=(1e-2,), wrap_sizes=(4,), limit_weights=(10,)),
        "Wiring only: 4-node graphs, one of each precision setting.", budget_minutes=0.5,
    ),
}



METRICS = ("bfs/agreement", "dfs/agreement", "dijkstra/agreement")

RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, measure=lazy(".experiment:measure", __package__),
    skips={
        "full": "The paper's larger experiment is its validation on the CLRS-30 graph sets (16-node train/validation, "
                "64-node test); the cpu profile already runs graphs of those sizes, and the CLRS data itself needs the "
                "dm-clrs package (not installed; no download script). The paper reports no number beyond exactness.",
        "scc": "Kosaraju's SCC construction (two DFS passes on A and A^T) is not implemented; BFS, DFS and Dijkstra "
               "are.",
    },
)
