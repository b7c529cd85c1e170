"""The looped transformer against references: the packed attention against explicit
per-head attention (outputs and gradients), the ReLU gadgets against their definitions,
the cursor's rotation, and whole runs against networkx on edge-case and random graphs."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch

from repro.blocks.attention import naive_attention

from .data import GraphCase, random_case, reference_bfs, reference_dfs, reference_dijkstra_distances, \
    reference_dijkstra_paper
from .experiment import check, evaluate
from .model import (
    ALGORITHMS,
    Constants,
    LoopedGraphTransformer,
    Mlp,
    build_program,
    decode,
    default_layout,
    encode,
    positional_encoding,
    run,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


def _explicit_layer(layer, X, At):
    """Per head: naive softmax attention with the head's own W_Q, W_K, W_V; graph heads
    multiply by Ã or Ã^T afterwards; then the MLP written as relu(X W1) W2."""
    out = X
    for i, kind in enumerate(layer.kinds):
        wq, wk, wv = layer.head_weights(i)
        h = naive_attention(X @ wq, X @ wk, X @ wv, scale=1.0 / layer.temperature)
        if kind == "A":
            h = At @ h
        elif kind == "AT":
            h = At.transpose(-2, -1) @ h
        out = out + h
    if layer.w1.shape[1]:
        out = out + torch.relu(out @ layer.w1) @ layer.w2
    return out


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_packed_layers_match_explicit_heads_outputs_and_gradients(alg):
    # a soft temperature so that the gradients are not all zero, and small gate constants so
    # that float64 rounding of the 1e12-sized gadget weights does not swamp the comparison
    c = Constants(temperature=0.7, omega=10.0, tol=0.1, unreached=1.0)
    model = build_program(alg, c)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2, 7, default_layout().width, generator=g, dtype=torch.float64, requires_grad=True)
    A = (torch.rand(2, 6, 6, generator=g) > 0.5).double() * torch.randint(1, 5, (2, 6, 6), generator=g)
    At = LoopedGraphTransformer.pad_adjacency(A)
    for layer in model.layers:
        fast, ref = layer(X, At), _explicit_layer(layer, X, At)
        torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-10)
        gout = torch.randn(fast.shape, generator=g, dtype=torch.float64)
        (gf,) = torch.autograd.grad(fast, X, gout)
        (gr,) = torch.autograd.grad(ref, X, gout)
        torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-8)


def _gadget(build, columns: dict[str, float]):
    """Evaluate a one-row MLP gadget on the given column values; returns the new row."""
    c = Constants()
    lay = default_layout()
    m = Mlp(c)
    build(m)
    from .model import LoopLayer

    layer = LoopLayer([], m.spec, lay, c.temperature)
    X = torch.zeros(1, 1, lay.width, dtype=torch.float64)
    X[0, 0, lay["ONE"]] = 1
    for k, v in columns.items():
        X[0, 0, lay[k]] = v
    out = layer(X, torch.zeros(1, 1, 1, dtype=torch.float64))
    return {k: float(out[0, 0, lay[k]]) for k in lay.index}


@pytest.mark.parametrize("x,want", [(3.0, 1.0), (1e-7, 1.0), (0.0, 0.0), (-2.0, 0.0), (12345.0, 1.0)])
def test_step_gadget(x, want):
    out = _gadget(lambda m: m.step("LESS", {"SV": 1}, gate="G"), {"SV": x, "G": 1})
    assert out["LESS"] == want
    off = _gadget(lambda m: m.step("LESS", {"SV": 1}, gate="G"), {"SV": x, "G": 0})
    assert off["LESS"] == 0.0


@pytest.mark.parametrize("flag", [0.0, 1.0])
@pytest.mark.parametrize("value", [-4321.0, 0.0, 17.0])
def test_conditional_add_gadget(flag, value):
    on = _gadget(lambda m: m.add_if("D", {"SV": 1}, "LESS"), {"SV": value, "LESS": flag, "D": 5.0})
    off = _gadget(lambda m: m.add_if("D", {"SV": 1}, "LESS", when=False), {"SV": value, "LESS": flag, "D": 5.0})
    assert on["D"] == 5.0 + value * flag
    assert off["D"] == 5.0 + value * (1 - flag)
    cleared = _gadget(lambda m: m.clear("SV"), {"SV": value})
    assert cleared["SV"] == 0.0


def test_paper_step_tolerance_needs_float64():
    """The mechanism behind the float32 failures: a comparison scaled by 1/1e-7 loses the
    unit step once the pre-activation exceeds 2^24."""
    y = torch.tensor(1e4 / 1e-7, dtype=torch.float32)
    assert float(torch.relu(y) - torch.relu(y - 1)) == 0.0
    y64 = y.double()
    assert float(torch.relu(y64) - torch.relu(y64 - 1)) == 1.0


def test_cursor_rotates_and_snaps_onto_the_next_node():
    c = Constants()
    lay = default_layout()
    model = build_program("bfs", c, lay)
    adj = np.zeros((6, 6))
    X, A = encode([adj], [0], "bfs", c, lay)
    At = LoopedGraphTransformer.pad_adjacency(A)
    for i in range(1, 7):
        assert (float(X[0, 0, lay["CP.0"]]), float(X[0, 0, lay["CP.1"]])) == positional_encoding(i, c.delta)
        assert float(X[0, 0, lay["CI"]]) == i
        X = model.step(X, At)
    # node 6 was the last one of the sweep: the cursor wrapped to node 1
    assert (float(X[0, 0, lay["CP.0"]]), float(X[0, 0, lay["CP.1"]])) == positional_encoding(1, c.delta)


def _case(g: nx.Graph, source: int, weighted: bool = False) -> GraphCase:
    n = g.number_of_nodes()
    a = np.zeros((n, n))
    for u, v, w in g.edges(data="weight", default=1):
        a[u, v] = w if weighted else 1
        if not g.is_directed():
            a[v, u] = a[u, v]
    return GraphCase(g, a, source)


def _edge_cases(directed: bool, weighted: bool) -> list[GraphCase]:
    make = nx.DiGraph if directed else nx.Graph
    out = []
    g = make()
    g.add_node(0)
    out.append(_case(g, 0))  # a single node
    g = make()
    g.add_nodes_from(range(4))
    out.append(_case(g, 2))  # no edges
    g = nx.complete_graph(5, create_using=make())
    if weighted:
        for u, v in g.edges():
            g[u][v]["weight"] = 1 + (u * 7 + v * 3) % 4  # many equal-length paths: tie-breaking matters
    out.append(_case(g, 3, weighted))
    g = make()
    g.add_nodes_from(range(6))
    g.add_edges_from([(0, 1), (1, 2), (4, 5), (5, 3)])
    if weighted:
        for u, v in g.edges():
            g[u][v]["weight"] = 2
    out.append(_case(g, 4, weighted))  # two components, the source in the second
    return out


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_edge_case_graphs_are_simulated_exactly(alg):
    for case in _edge_cases(directed=alg == "dfs", weighted=alg == "dijkstra"):
        if alg == "dfs":
            case = GraphCase(case.graph, case.adjacency, 0)
        par, dist, _ = run([case.adjacency], [case.source], alg)
        assert check(case, alg, par[0], dist[0], Constants())[0], (alg, case.adjacency, par)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_random_graphs_of_two_sizes_with_one_network(alg):
    """The same weights (no parameter depends on n) run 5- and 9-node graphs exactly."""
    lay = default_layout()
    c = Constants()
    model = build_program(alg, c, lay)
    for n in (5, 9):
        cases = [random_case(n, alg, seed=100 + i) for i in range(4)]
        X, A = encode([cs.adjacency for cs in cases], [cs.source for cs in cases], alg, c, lay)
        out, loops = model(X, A)
        assert loops <= (n + 1) * n
        par, dist = decode(out, lay)
        for cs, p, d in zip(cases, par, dist):
            assert check(cs, alg, p, d, c)[0]


def test_references_agree_with_each_other():
    for s in range(5):
        case = random_case(9, "dijkstra", seed=s)
        par = reference_dijkstra_paper(case)
        dist = reference_dijkstra_distances(case)
        for j, p in enumerate(par):
            if j in dist and j != case.source:
                assert math.isclose(dist[p] + case.adjacency[p, j], dist[j])
        bfs_case = random_case(9, "bfs", seed=s)
        assert reference_bfs(bfs_case)[bfs_case.source] == bfs_case.source
        dfs_case = random_case(9, "dfs", seed=s)
        assert reference_dfs(dfs_case)[0] == 0


def test_wrong_outputs_are_detected():
    case = random_case(8, "dijkstra", seed=3)
    par, dist, _ = run([case.adjacency], [case.source], "dijkstra")
    assert check(case, "dijkstra", par[0], dist[0], Constants())[0]
    bad = list(dist[0])
    j = next(i for i in range(8) if i != case.source and bad[i] < 1e4)
    bad[j] += 1
    assert not check(case, "dijkstra", par[0], bad, Constants())[0]
    r = evaluate("bfs", 6, 2, seed=0, dtype=torch.float64)
    assert r["agreement"] == 1.0
