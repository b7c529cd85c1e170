"""Attention rollout and attention flow (Abnar & Zuidema, "Quantifying Attention Flow in
Transformers", ACL 2020, arXiv 2005.00928), Section 3, and the agreement classifier they
are applied to (Section 2).

Section 3: information reaches layer l+1 through attention *and* the residual stream,
V_{l+1} = (W_att + I) V_l, so the attention graph is augmented with the identity and
renormalised; with heads averaged (as in the paper's analysis),

    A(l) = 0.5 * mean_h W_att^h(l) + 0.5 * I                                  (residual_attention)

* attention rollout multiplies these down to the input (Eq. 1, with j = 0):
      A~(l) = A(l) A~(l-1),   A~(1) = A(1)                                   (attention_rollout)
* attention flow treats the layered graph (nodes = positions at layers 0..L, an edge from
  (l, i) to (l-1, j) with capacity A(l)[i, j]) as a flow network and takes, for a node at
  layer l, the maximum flow to each input node                              (attention_flow)

``attention_flow`` is the max-flow computed with networkx (the reference);
``attention_flow_fast`` solves the same problems with scipy's compiled max-flow on
capacities scaled to integers (1e-7 resolution), and is checked against networkx and
against closed forms in the tests.

The model (Section 2): a Transformer encoder with GPT-2 blocks (pre-norm), no causal
mask, a <cls> token whose final embedding feeds a linear classifier; here the suite's
shared ``TransformerEncoder`` (learned positions, pre-norm, per-layer attention weights).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.transformer import TransformerEncoder

from .data import PAD


# ----------------------------------------------------------------------------- Section 3
def residual_attention(weights: np.ndarray) -> np.ndarray:
    """(L, H, n, n) or (L, n, n) attention probabilities -> (L, n, n) residual-augmented,
    head-averaged, row-stochastic matrices A(l) = (W + I) / rowsum (= 0.5 W + 0.5 I)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 4:
        w = w.mean(axis=1)
    a = w + np.eye(w.shape[-1])[None]
    return a / a.sum(axis=-1, keepdims=True)


def attention_rollout(a: np.ndarray) -> np.ndarray:
    """Eq. 1: rollout[l] = A(l) @ rollout[l-1], rollout[0] = A(1); (L, n, n)."""
    out = np.empty_like(a)
    out[0] = a[0]
    for layer in range(1, len(a)):
        out[layer] = a[layer] @ out[layer - 1]
    return out


def _graph_edges(a: np.ndarray, layer: int):
    """Edges (u, v, capacity) of the layered graph up to ``layer`` (1-based); node id of
    position i at layer l is l * n + i."""
    n = a.shape[-1]
    for lv in range(1, layer + 1):
        for i in range(n):
            for j in range(n):
                cap = float(a[lv - 1, i, j])
                if cap > 0:
                    yield lv * n + i, (lv - 1) * n + j, cap


def attention_flow(a: np.ndarray, layer: int, source: int) -> np.ndarray:
    """Max-flow value from node (layer, source) to every input node (0, j), networkx
    reference; ``a`` from ``residual_attention``, ``layer`` in 1..L. Returns (n,)."""
    import networkx as nx

    n = a.shape[-1]
    g = nx.DiGraph()
    g.add_weighted_edges_from(_graph_edges(a, layer), weight="capacity")
    s = layer * n + source
    return np.array([nx.maximum_flow_value(g, s, j) if g.has_node(j) else 0.0 for j in range(n)])


SCALE = 10**7  # integer capacity units for scipy's max-flow (resolution 1e-7)


def attention_flow_fast(a: np.ndarray, layer: int, source: int) -> np.ndarray:
    """Same as ``attention_flow`` with ``scipy.sparse.csgraph.maximum_flow`` (Dinic) on
    capacities rounded to multiples of 1/SCALE; each flow is off by at most the rounding
    of one cut (< n^2 * layer / SCALE)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    n = a.shape[-1]
    size = (layer + 1) * n
    rows, cols, caps = [], [], []
    for u, v, c in _graph_edges(a, layer):
        rows.append(u)
        cols.append(v)
        caps.append(int(round(c * SCALE)))
    graph = csr_matrix((np.array(caps, dtype=np.int32), (rows, cols)), shape=(size, size))
    s = layer * n + source
    return np.array([maximum_flow(graph, s, j, method="dinic").flow_value / SCALE for j in range(n)])


# ----------------------------------------------------------------------------- Section 2
class AgreementTransformer(nn.Module):
    """<cls> + sentence -> verb number logits (2,), with per-layer attention on request."""

    def __init__(self, vocab: int, dim: int, heads: int, layers: int, max_len: int) -> None:
        super().__init__()
        self.encoder = TransformerEncoder(vocab, dim, heads, layers, max_len=max_len, positions="learned",
                                          norm_first=True)
        self.head = nn.Linear(dim, 2)

    def forward(self, tokens: Tensor, need_weights: bool = False):
        mask = tokens != PAD
        out = self.encoder(tokens, mask=mask, need_weights=need_weights)
        if need_weights:
            h, weights = out
            return self.head(h[:, 0]), weights
        return self.head(out[:, 0])


class AgreementClassifier(L.LightningModule):
    def __init__(self, cfg, vocab_size: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = AgreementTransformer(vocab_size, cfg.dim, cfg.heads, cfg.layers, max_len)
        self._correct = self._total = 0

    def training_step(self, batch, _):
        loss = F.cross_entropy(self.net(batch["tokens"]), batch["label"])
        self.log("train/loss", loss, batch_size=len(batch["label"]))
        return loss

    def on_test_epoch_start(self):
        self._correct = self._total = 0

    def test_step(self, batch, _):
        pred = self.net(batch["tokens"]).argmax(-1)
        self._correct += int((pred == batch["label"]).sum())
        self._total += len(pred)

    def on_test_epoch_end(self):
        self.log("test/acc", self._correct / max(self._total, 1))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)
