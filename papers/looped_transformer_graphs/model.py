"""A hand-built looped transformer with graph attention heads that executes BFS, DFS and
Dijkstra exactly, after Back de Luca & Fountoulakis, "Simulation of Graph Algorithms with
Looped Transformers" (ICML 2024, arXiv 2402.01107).

This is our own construction, written from the paper's description of its architecture
and techniques; the official repository (opallab/graphalgosimulation) was read for the
conventions and constants, not ported. What follows the paper:

* **Architecture** (Section 3, "Algorithm 1: Looped Transformer"): a state matrix X with
  one row per node plus a global row 0, and a fixed sequence of layers applied in a loop
  until a termination flag in X[0] is set. A layer is attention + residual, then a ReLU
  MLP + residual. Besides ordinary heads softmax(X W_Q (X W_K)^T / T) X W_V, the
  attention has the paper's **extra graph heads** Ã softmax(...) X W_V and Ã^T softmax(...)
  X W_V, where Ã is the adjacency matrix padded with a zero row/column for the global
  row: the graph enters only through these heads, so **no parameter depends on the
  graph size**.
* **Hard attention by temperature** T = 1e-7 (the paper's value), through the suite's
  shared ``softmax_weights`` block.
* **Positional encodings on the circle**: node i has p_i = (sin iδ, cos iδ) with angular
  increment δ = 1e-2 (the paper's value); a node is addressed by the query whose dot
  product with p_i is largest, and a pointer to "the next node" is a rotation by δ
  (followed by the paper's rounding step, which snaps the pointer back onto the exact
  p_i by attention). Finite precision bounds how many nodes can be told apart.
* **Large constants** for conditionals: a value is kept or replaced by ReLU units gated
  with ±Ω (the paper's maximum value Ω = 1e5); comparisons are ReLU step functions with
  tolerance 1e-7; "unreached" is a sentinel value 1e4.
* **Algorithms as priority scans** (Section 4 and Figure 1): each loop iteration reads one
  node (a cursor that sweeps the nodes, one per iteration) and keeps the best unvisited
  candidate, the sequential minimum the paper uses because a softmax cannot take an exact
  arg-min with ties; when a sweep ends, the best node u is committed: marked visited, its
  adjacency row is read through a graph head, and its neighbours are relaxed. Dijkstra's
  priority is the distance; BFS's is the discovery count (a FIFO queue), DFS's is minus the
  discovery count (a LIFO stack, the recursive DFS with neighbours in index order; run
  over all roots in index order, as CLRS's DFS). Ties go to the lowest index, as in the
  reference implementations.

``LoopedGraphTransformer`` is generic (any list of layers); ``build_program`` compiles the
three algorithms into its weights; ``encode`` / ``decode`` map graphs to X and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from repro.blocks.attention import softmax_weights

Algorithm = Literal["bfs", "dfs", "dijkstra"]
ALGORITHMS: tuple[str, ...] = ("bfs", "dfs", "dijkstra")


@dataclass(frozen=True)
class Constants:
    """The construction's numerical constants (defaults: the paper's Appendix B values
    where it gives them: δ = 1e-2, Ω = 1e5, T = 1e-7)."""

    delta: float = 1e-2  # angular increment of the positional encoding
    temperature: float = 1e-7  # T of every head
    omega: float = 1e5  # gate constant: larger than every gated value
    tol: float = 1e-7  # step-function tolerance of comparisons
    unreached: float = 1e4  # priority of nodes not reached yet (must stay below omega / 5)


# --------------------------------------------------------------------------- layout


class Layout:
    """Named scalar columns of X. ``add("P", 2)`` creates "P.0" and "P.1"."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def add(self, name: str, size: int = 1) -> None:
        names = [name] if size == 1 else [f"{name}.{i}" for i in range(size)]
        for n in names:
            if n in self.index:
                raise ValueError(f"column {n} exists")
            self.index[n] = len(self.index)

    @property
    def width(self) -> int:
        return len(self.index)

    def __getitem__(self, name: str) -> int:
        return self.index[name]


def default_layout() -> Layout:
    lay = Layout()
    for name, size in [
        ("ONE", 1), ("G", 1), ("L", 1),  # constants: 1 everywhere / on row 0 / on node rows
        ("P", 2), ("IDX", 1), ("NN", 1),  # node encoding, node index, number of nodes (row 0)
        ("D", 1), ("PAR", 1), ("VIS", 1),  # algorithm state on node rows
        ("CP", 2), ("CI", 1),  # cursor (row 0): encoding and 1-based position of the scanned node
        ("BV", 1), ("BP", 2), ("BI", 1),  # best candidate of the current sweep (row 0)
        ("UV", 1), ("UP", 2), ("UI", 1), ("CNT", 1),  # committed node u; number of commits (row 0)
        ("LESS", 1), ("END", 1), ("OK", 1), ("COMMIT", 1), ("TERM", 1),  # flags (row 0)
        ("SV", 1), ("SI", 1), ("SP", 2),  # scratch on row 0
        ("ISU", 1), ("EDGE", 1), ("BUV", 1), ("BUI", 1), ("BCNT", 1), ("BCOM", 1),  # scratch on node rows
        ("F1", 1), ("F2", 1), ("F3", 1),
    ]:
        lay.add(name, size)
    return lay


Expr = dict[str, float]  # a linear form over columns, e.g. {"BV": 1, "SV": -1}


# ----------------------------------------------------------------------- the network


@dataclass
class Head:
    """One attention head. ``kind``: "plain" (softmax(QK^T/T) X W_V), "A" or "AT" (the
    graph heads Ã softmax(...) X W_V and Ã^T softmax(...) X W_V). ``q``/``k``: one linear form
    per key dimension; ``v``: output column -> linear form."""

    kind: Literal["plain", "A", "AT"]
    q: list[Expr]
    k: list[Expr]
    v: dict[str, Expr]


@dataclass
class MLPSpec:
    """out = X + relu(X W1) W2 (no biases: constants come from the ONE/G/L columns)."""

    units: list[Expr] = field(default_factory=list)  # hidden unit -> input linear form
    outs: list[dict[str, float]] = field(default_factory=list)  # hidden unit -> {column: weight}

    def unit(self, expr: Expr, out: dict[str, float]) -> None:
        self.units.append(dict(expr))
        self.outs.append(dict(out))


def _mat(forms: list[Expr], lay: Layout) -> Tensor:
    m = torch.zeros(lay.width, len(forms), dtype=torch.float64)
    for j, form in enumerate(forms):
        for col, c in form.items():
            m[lay[col], j] += c
    return m


class LoopLayer(nn.Module):
    """Attention (sum of heads) + residual, then MLP + residual, with fixed weights.

    The per-head projections are packed into one matrix so that a layer costs one
    projection matmul, then per head the shared ``softmax_weights`` and one product."""

    def __init__(self, heads: list[Head], mlp: MLPSpec, lay: Layout, temperature: float) -> None:
        super().__init__()
        self.kinds = [h.kind for h in heads]
        self.temperature = temperature
        blocks, self.slices = [], []
        col = 0
        for h in heads:
            wq, wk = _mat(h.q, lay), _mat(h.k, lay)
            wv = torch.zeros(lay.width, lay.width, dtype=torch.float64)
            for dst, form in h.v.items():
                for src, c in form.items():
                    wv[lay[src], lay[dst]] += c
            kd = wq.shape[1]
            self.slices.append((slice(col, col + kd), slice(col + kd, col + 2 * kd),
                                slice(col + 2 * kd, col + 2 * kd + lay.width)))
            col += 2 * kd + lay.width
            blocks += [wq, wk, wv]
        self.register_buffer("wqkv", torch.cat(blocks, 1) if blocks else torch.zeros(lay.width, 0, dtype=torch.float64))
        self.register_buffer("w1", _mat(mlp.units, lay))
        w2 = torch.zeros(len(mlp.units), lay.width, dtype=torch.float64)
        for j, out in enumerate(mlp.outs):
            for c_, w in out.items():
                w2[j, lay[c_]] += w
        self.register_buffer("w2", w2)

    def head_weights(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        """(W_Q, W_K, W_V) of head i."""
        sq, sk, sv = self.slices[i]
        return self.wqkv[:, sq], self.wqkv[:, sk], self.wqkv[:, sv]

    def attention(self, X: Tensor, At: Tensor) -> Tensor:
        proj = X @ self.wqkv
        out = X
        for kind, (sq, sk, sv) in zip(self.kinds, self.slices):
            phi = softmax_weights(proj[..., sq], proj[..., sk], scale=1.0 / self.temperature)
            h = phi @ proj[..., sv]
            if kind == "A":
                h = At @ h
            elif kind == "AT":
                h = At.transpose(-2, -1) @ h
            out = out + h
        return out

    def mlp(self, X: Tensor) -> Tensor:
        flat = X.reshape(-1, X.shape[-1])
        return torch.addmm(flat, torch.relu(flat @ self.w1), self.w2).view_as(X)

    def forward(self, X: Tensor, At: Tensor) -> Tensor:
        if self.kinds:
            X = self.attention(X, At)
        if self.w1.shape[1]:
            X = self.mlp(X)
        return X


class LoopedGraphTransformer(nn.Module):
    """Applies its layers in a loop until X[:, 0, TERM] > 1/2 for every graph in the batch
    (or ``max_loops``). ``forward(X, A)`` with X (B, n+1, d) and A (B, n, n) (A[i, j] = weight of
    the edge i -> j, 0 if none). Returns the final X and the number of loops run."""

    def __init__(self, layers: list[LoopLayer], term_col: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.term_col = term_col

    @staticmethod
    def pad_adjacency(A: Tensor) -> Tensor:
        b, n, _ = A.shape
        At = torch.zeros(b, n + 1, n + 1, dtype=A.dtype, device=A.device)
        At[:, 1:, 1:] = A
        return At

    def step(self, X: Tensor, At: Tensor) -> Tensor:
        for layer in self.layers:
            X = layer(X, At)
        return X

    @torch.no_grad()
    def forward(self, X: Tensor, A: Tensor, max_loops: int = 1_000_000) -> tuple[Tensor, int]:
        At = self.pad_adjacency(A.to(X.dtype))
        loops = 0
        while loops < max_loops:
            X = self.step(X, At)
            loops += 1
            if bool((X[:, 0, self.term_col] > 0.5).all()):
                break
        return X, loops


# ------------------------------------------------------------------- MLP primitives


class Mlp:
    """Builds an MLPSpec from ReLU gadgets (each exact in real arithmetic)."""

    def __init__(self, c: Constants) -> None:
        self.spec = MLPSpec()
        self.c = c

    def add(self, dst: str, expr: Expr, coef: float = 1.0) -> None:
        """dst += coef * expr (two units: relu(e) - relu(-e))."""
        self.spec.unit(expr, {dst: coef})
        self.spec.unit({k: -v for k, v in expr.items()}, {dst: -coef})

    def clear(self, col: str) -> None:
        self.add(col, {col: 1.0}, -1.0)

    def step(self, dst: str, expr: Expr, gate: str | None = None) -> None:
        """dst += 1 if expr >= tol else 0 (0 for expr <= 0; a ramp in between), and only
        where the ``gate`` column is 1 (gate = 0 subtracts Ω, assuming |expr| < Ω)."""
        t, om = self.c.tol, self.c.omega
        e = {k: v / t for k, v in expr.items()}
        if gate is not None:
            e["ONE"] = e.get("ONE", 0.0) - om / t
            e[gate] = e.get(gate, 0.0) + om / t
        self.spec.unit(e, {dst: 1.0})
        e1 = dict(e)
        e1["ONE"] = e1.get("ONE", 0.0) - 1.0
        self.spec.unit(e1, {dst: -1.0})

    def add_if(self, dst: str, expr: Expr, flag: str, when: bool = True) -> None:
        """dst += expr where the 0/1 ``flag`` is 1 (``when=False``: where it is 0). Needs
        |expr| < Ω."""
        om = self.c.omega
        for sign in (1.0, -1.0):
            e = {k: sign * v for k, v in expr.items()}
            if when:  # subtract Ω (1 - flag)
                e["ONE"] = e.get("ONE", 0.0) - om
                e[flag] = e.get(flag, 0.0) + om
            else:  # subtract Ω flag
                e[flag] = e.get(flag, 0.0) - om
            self.spec.unit(e, {dst: sign})

    def relu_to(self, dst: str, expr: Expr) -> None:
        """dst += relu(expr) (one unit)."""
        self.spec.unit(expr, {dst: 1.0})


# ------------------------------------------------------------------------ compiler


def _cand(algorithm: str) -> Expr:
    """The relaxation candidate for a neighbour of the committed node u (node rows)."""
    if algorithm == "dijkstra":
        return {"BUV": 1.0, "EDGE": 1.0}  # D[u] + w(u, j)
    if algorithm == "bfs":
        return {"BCNT": 1.0, "ONE": 1.0}  # discovery count: FIFO
    if algorithm == "dfs":
        return {"BCNT": -1.0, "ONE": -1.0}  # minus discovery count: LIFO
    raise ValueError(f"unknown algorithm {algorithm!r}")


def bound(algorithm: str, c: Constants) -> float:
    """A node may be committed while its priority is below this: reached nodes only for
    BFS/Dijkstra (single source); also unreached ones for DFS, which restarts from the
    lowest-index unvisited node like CLRS's DFS over all roots."""
    return c.unreached + 1.0 if algorithm == "dfs" else c.unreached


def build_program(algorithm: str, c: Constants = Constants(), lay: Layout | None = None) -> LoopedGraphTransformer:
    """Compile one algorithm into a LoopedGraphTransformer (9 layers per loop iteration)."""
    lay = lay or default_layout()
    visited_offset = 4.0 * c.unreached  # candidate value of a visited node: never below the bound
    rot = (math.cos(c.delta), math.sin(c.delta))
    p1 = (math.sin(c.delta), math.cos(c.delta))
    layers: list[LoopLayer] = []

    def layer(heads, mlp: Mlp | None):
        layers.append(LoopLayer(heads, mlp.spec if mlp else MLPSpec(), lay, c.temperature))

    # 1. read the node under the cursor into row 0; compare with the best; end of sweep?
    read = Head("plain", q=[{"CP.0": 1}, {"CP.1": 1}], k=[{"P.0": 1}, {"P.1": 1}],
                v={"SV": {"D": 1, "VIS": visited_offset}, "SI": {"IDX": 1}})
    m = Mlp(c)
    m.step("LESS", {"BV": 1, "SV": -1}, gate="G")  # candidate strictly better than the best
    m.relu_to("END", {"CI": 1, "NN": -1, "ONE": 1, "L": -c.omega})  # CI == n on row 0
    layer([read], m)

    # 2. keep the better candidate; advance the cursor (rotate by δ, or wrap to node 1)
    m = Mlp(c)
    m.add_if("BV", {"SV": 1, "BV": -1}, "LESS")
    m.add_if("BI", {"SI": 1, "BI": -1}, "LESS")
    for i in range(2):
        m.add_if(f"BP.{i}", {f"CP.{i}": 1, f"BP.{i}": -1}, "LESS")
    # rotation p_i -> p_{i+1}: (sin, cos) -> (sin cos δ + cos sin δ, cos cos δ - sin sin δ)
    m.add_if("CP.0", {"CP.0": rot[0] - 1, "CP.1": rot[1]}, "END", when=False)
    m.add_if("CP.1", {"CP.1": rot[0] - 1, "CP.0": -rot[1]}, "END", when=False)
    m.add_if("CP.0", {"G": p1[0], "CP.0": -1}, "END")
    m.add_if("CP.1", {"G": p1[1], "CP.1": -1}, "END")
    m.add_if("CI", {"G": 1}, "END", when=False)
    m.add_if("CI", {"G": 1, "CI": -1}, "END")
    for col in ("SV", "SI", "LESS"):
        m.clear(col)
    layer([], m)

    # 3. round the cursor onto the exact encoding of its node (the paper's rounding step)
    snap = Head("plain", q=[{"CP.0": 1}, {"CP.1": 1}], k=[{"P.0": 1}, {"P.1": 1}],
                v={"SP.0": {"P.0": 1}, "SP.1": {"P.1": 1}})
    m = Mlp(c)
    for i in range(2):
        m.add_if(f"CP.{i}", {f"SP.{i}": 1, f"CP.{i}": -1}, "G")
        m.clear(f"SP.{i}")
    layer([snap], m)

    # 4. at the end of a sweep: is there a node to commit?
    m = Mlp(c)
    m.step("OK", {"ONE": bound(algorithm, c), "BV": -1}, gate="G")
    layer([], m)

    # 5. commit (copy the best into u) or terminate; reset the best for the next sweep
    m = Mlp(c)
    m.relu_to("COMMIT", {"END": 1, "OK": 1, "ONE": -1})
    m.relu_to("TERM", {"END": 1, "OK": -1, "TERM": -1})
    m.add("UV", {"BV": 1, "UV": -1})
    m.add("UI", {"BI": 1, "UI": -1})
    for i in range(2):
        m.add(f"UP.{i}", {f"BP.{i}": 1, f"UP.{i}": -1})
        m.add_if(f"BP.{i}", {f"BP.{i}": -1}, "END")
    m.add_if("BV", {"G": bound(algorithm, c), "BV": -1}, "END")
    m.add_if("BI", {"BI": -1}, "END")
    m.clear("OK")
    m.clear("END")
    layer([], m)

    # 6. broadcast u to the node rows; mark the row of u (ISU)
    bcast = Head("plain", q=[{"L": 1}], k=[{"G": 1}],
                 v={"BUV": {"UV": 1}, "BUI": {"UI": 1}, "BCNT": {"CNT": 1}, "BCOM": {"COMMIT": 1}})
    cu = math.cos(c.delta / 2)
    isu = Head("plain", q=[{"P.0": 1}, {"P.1": 1}], k=[{"UP.0": 1, "P.0": cu}, {"UP.1": 1, "P.1": cu}],
               v={"ISU": {"G": 1}})
    m = Mlp(c)
    for col in ("BUV", "BUI", "BCNT", "BCOM", "ISU"):
        m.add_if(col, {col: -1}, "G")  # row 0 received averages: clear them there
    layer([bcast, isu], m)

    # 7. graph head: EDGE_j = Ã^T[j, :] ISU = A[u, j]; flags for the relaxation
    edge = Head("AT", q=[{"P.0": 1}, {"P.1": 1}], k=[{"P.0": 1}, {"P.1": 1}], v={"EDGE": {"ISU": 1}})
    m = Mlp(c)
    m.step("F1", {"EDGE": 1}, gate="L")  # an edge u -> j
    cand = _cand(algorithm)
    m.step("F2", {"D": 1, **{k: -v for k, v in cand.items()}}, gate="L")  # candidate < D_j
    layer([edge], m)

    # 8. relax only with a commit, along an edge, into an unvisited node; mark u visited
    m = Mlp(c)
    m.relu_to("F3", {"BCOM": 1, "F1": 1, "F2": 1, "VIS": -1, "ONE": -2})
    m.relu_to("VIS", {"ISU": 1, "BCOM": 1, "ONE": -1})
    m.add("CNT", {"COMMIT": 1})
    m.clear("COMMIT")
    layer([], m)

    # 9. write the relaxation; clear every node-row scratch column
    m = Mlp(c)
    m.add_if("D", {**cand, "D": -1}, "F3")
    m.add_if("PAR", {"BUI": 1, "PAR": -1}, "F3")
    for col in ("F1", "F2", "F3", "EDGE", "ISU", "BUV", "BUI", "BCNT", "BCOM"):
        m.clear(col)
    layer([], m)

    return LoopedGraphTransformer(layers, lay["TERM"])


# --------------------------------------------------------------- encode / decode


def positional_encoding(i: int, delta: float) -> tuple[float, float]:
    """p_i = R(δ)^i (0, 1) = (sin iδ, cos iδ), computed in float64."""
    return (math.sin(i * delta), math.cos(i * delta))


def encode(adjs: list[np.ndarray], sources: list[int], algorithm: str, c: Constants = Constants(),
           lay: Layout | None = None) -> tuple[Tensor, Tensor]:
    """Initial X (B, n+1, d) and adjacency (B, n, n), float64, for graphs of one size n."""
    lay = lay or default_layout()
    n = adjs[0].shape[0]
    if any(a.shape != (n, n) for a in adjs):
        raise ValueError("encode batches graphs of one size")
    X = torch.zeros(len(adjs), n + 1, lay.width, dtype=torch.float64)
    for b, s in enumerate(sources):
        x = X[b]
        x[:, lay["ONE"]] = 1
        x[0, lay["G"]] = 1
        x[1:, lay["L"]] = 1
        for i in range(n):
            p = positional_encoding(i + 1, c.delta)
            x[i + 1, lay["P.0"]], x[i + 1, lay["P.1"]] = p
        x[1:, lay["IDX"]] = torch.arange(n, dtype=torch.float64)
        x[1:, lay["PAR"]] = torch.arange(n, dtype=torch.float64)
        x[0, lay["NN"]] = n
        x[1:, lay["D"]] = c.unreached
        if algorithm != "dfs":
            x[s + 1, lay["D"]] = 0.0
        x[0, lay["CP.0"]], x[0, lay["CP.1"]] = positional_encoding(1, c.delta)
        x[0, lay["CI"]] = 1
        x[0, lay["BV"]] = bound(algorithm, c)
    A = torch.as_tensor(np.stack(adjs), dtype=torch.float64)
    return X, A


def decode(X: Tensor, lay: Layout | None = None) -> tuple[list[list[int]], list[list[float]]]:
    """Parents (rounded to the nearest integer) and priorities/distances of every node."""
    lay = lay or default_layout()
    par = X[:, 1:, lay["PAR"]].double()
    d = X[:, 1:, lay["D"]].double()
    return [[int(round(v)) if math.isfinite(v) else -1 for v in row] for row in par.tolist()], d.tolist()


def run(adjs: list[np.ndarray], sources: list[int], algorithm: str, c: Constants = Constants(),
        dtype: torch.dtype = torch.float64, max_loops: int | None = None):
    """Build, encode, loop, decode. Returns (parents, priorities, loops)."""
    lay = default_layout()
    model = build_program(algorithm, c, lay).to(dtype)
    X, A = encode(adjs, sources, algorithm, c, lay)
    n = X.shape[1] - 1
    limit = max_loops if max_loops is not None else (n + 2) * (n + 1) + 5
    out, loops = model(X.to(dtype), A.to(dtype), max_loops=limit)
    par, dist = decode(out, lay)
    return par, dist, loops


def with_constants(c: Constants, **kw) -> Constants:
    return replace(c, **kw)
