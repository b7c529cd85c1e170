"""Random graphs and the reference algorithms (networkx, plus the tie-breaking reference
of the paper's Dijkstra).

The paper validates on CLRS-30 graphs (16 nodes for train/validation, 64 for test);
``dm-clrs`` is not installed here, so we draw Erdős–Rényi graphs of the same sizes with
networkx, in the spirit of the CLRS samplers: undirected for BFS and Dijkstra (integer
weights 1..max_weight), directed for DFS, random source for BFS/Dijkstra, DFS over all
roots in index order (CLRS's DFS). Edge probabilities are drawn per graph, so some graphs
are disconnected and the unreachable-node paths are exercised too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import networkx as nx
import numpy as np


@dataclass
class GraphCase:
    graph: nx.Graph
    adjacency: np.ndarray  # A[i, j] = weight of edge i -> j (1 for unweighted), 0 if none
    source: int


def random_case(n: int, algorithm: str, seed: int, max_weight: int = 10, p_range=(0.1, 0.5)) -> GraphCase:
    rng = random.Random(seed)
    p = rng.uniform(*p_range)
    directed = algorithm == "dfs"
    g = nx.gnp_random_graph(n, p, seed=rng.randrange(2**31), directed=directed)
    g.add_nodes_from(range(n))  # keeps node order 0..n-1 for DFS roots
    if algorithm == "dijkstra":
        for u, v in g.edges():
            g[u][v]["weight"] = rng.randint(1, max_weight)
    a = np.zeros((n, n))
    for u, v, w in g.edges(data="weight", default=1):
        a[u, v] = w
        if not directed:
            a[v, u] = w
    source = rng.randrange(n) if algorithm != "dfs" else 0
    return GraphCase(g, a, source)


def reference_bfs(case: GraphCase) -> list[int]:
    """BFS tree parents, neighbours visited in increasing index; unreached nodes (and the
    source) are their own parent."""
    n = case.adjacency.shape[0]
    parent = list(range(n))
    for child, par in nx.bfs_predecessors(case.graph, case.source, sort_neighbors=sorted):
        parent[child] = par
    return parent


def reference_dfs(case: GraphCase) -> list[int]:
    """Depth-first forest over all roots in index order, neighbours in increasing index."""
    n = case.adjacency.shape[0]
    parent = list(range(n))
    for child, par in nx.dfs_predecessors(case.graph, sort_neighbors=sorted).items():
        parent[child] = par
    return parent


def reference_dijkstra_distances(case: GraphCase) -> dict[int, float]:
    return dict(nx.single_source_dijkstra_path_length(case.graph, case.source, weight="weight"))


def reference_dijkstra_paper(case: GraphCase) -> list[int]:
    """Dijkstra with the tie-breaking of the paper's pseudocode and official reference:
    extract the lowest-index node of minimum distance, relax with a strict '<'."""
    a = case.adjacency
    n = a.shape[0]
    inf = float("inf")
    dist = [inf] * n
    dist[case.source] = 0.0
    parent = list(range(n))
    done = [False] * n
    while True:
        best, u = inf, -1
        for i in range(n):
            if not done[i] and dist[i] < best:
                best, u = dist[i], i
        if u < 0:
            break
        done[u] = True
        for v in range(n):
            if a[u, v] != 0 and not done[v] and dist[u] + a[u, v] < dist[v]:
                dist[v] = dist[u] + a[u, v]
                parent[v] = u
    return parent
