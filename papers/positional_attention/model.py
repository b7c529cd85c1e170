"""Positional attention (Back de Luca, Giapitzakis, Yang, Veličković & Fountoulakis,
"Positional Attention: Expressivity and Learnability of Algorithmic Computation",
arXiv 2410.01686, ICML 2025).

The idea (Section 3, "positional Transformer"): the attention weights of every layer
are computed from fixed positional encodings P alone,

    A^(l) = softmax( (P W_Q^(l)) (P W_K^(l))^T / sqrt(d_k) ),

while the values carry the data: head output = A^(l) (X^(l) W_V^(l)). The weights are
therefore the same for every input of a given length, and the data can only act
through the value path and the MLPs. A standard Transformer computes Q and K from the
hidden state X^(l), which mixes data and positions.

Layer (as in the paper's experiments and the official code; no residual, no norm):

    X^(l+1) = MLP( [X^(l), MHA^(l)(X^(l))] ),   MLP: 2 layers, ReLU,

with an input encoder (linear) and an output decoder (linear). Depth is
log2(n) + 1 layers (the paper's O(log n) depth for these tasks). The positional
encodings are one-hot (the identity, n + 1 positions including one scratchpad node).
The standard Transformer receives the positions concatenated to its input values.

Deltas from the shared ``MultiHeadAttention``: Q and K take a separate input (P for the
positional model, X for the standard one) with their own width; per head they keep
the full input width d_k = width of that input (official code). V, the output
projection and the kernel (PyTorch SDPA) are the shared block's.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor, nn

from repro.blocks.attention import MultiHeadAttention, sdpa_attention


class QKSourceAttention(MultiHeadAttention):
    """Multi-head attention whose queries and keys come from ``qk_input`` (positions for
    positional attention, the hidden state for standard attention) and whose values come
    from ``x``. Each head's query/key width is ``qk_dim``."""

    def __init__(self, dim: int, heads: int, qk_in: int, qk_dim: int | None = None, *,
                 attn=sdpa_attention) -> None:
        super().__init__(dim, heads, attn=attn, bias=True)
        self.qk_dim = qk_in if qk_dim is None else qk_dim
        self.q_proj = nn.Linear(qk_in, heads * self.qk_dim)
        self.k_proj = nn.Linear(qk_in, heads * self.qk_dim)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):  # official init: Xavier, zero bias
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def qk(self, qk_input: Tensor, batch: int) -> tuple[Tensor, Tensor]:
        """(B, H, n, qk_dim) queries and keys. A (n, d) input (positions) is shared by the
        batch: the attention pattern cannot depend on the data."""
        if qk_input.dim() == 2:
            qk_input = qk_input.unsqueeze(0)
        n = qk_input.shape[1]

        def heads(t):
            return t.view(t.shape[0], n, self.heads, self.qk_dim).transpose(1, 2).expand(batch, -1, -1, -1)

        return heads(self.q_proj(qk_input)), heads(self.k_proj(qk_input))

    def forward(self, x: Tensor, qk_input: Tensor, need_weights: bool = False):
        b, n, _ = x.shape
        q, k = self.qk(qk_input, b)
        v = self.split(self.v_proj(x))
        if need_weights:
            w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.qk_dim), dim=-1)
            out = w @ v
        else:
            out = self.attn(q, k, v)
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, self.dim))
        return (out, w) if need_weights else out


class AlgorithmicLayer(nn.Module):
    """X <- MLP([X, MHA(X)]) (no residual or norm, as in the paper's experiments)."""

    def __init__(self, dim: int, heads: int, qk_in: int, mlp_hidden: int, mlp_layers: int, attn=sdpa_attention):
        super().__init__()
        self.attn = QKSourceAttention(dim, heads, qk_in, attn=attn)
        layers: list[nn.Module] = []
        width = 2 * dim
        for _ in range(mlp_layers - 1):
            layers += [nn.Linear(width, mlp_hidden), nn.ReLU()]
            width = mlp_hidden
        layers.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor, qk_input: Tensor) -> Tensor:
        return self.mlp(torch.cat([x, self.attn(x, qk_input)], dim=-1))


class AlgorithmicTransformer(nn.Module):
    """``positional=True``: the paper's positional Transformer (Q, K from P only);
    ``False``: the standard Transformer baseline (positions appended to the input,
    Q, K from the hidden state)."""

    def __init__(self, n_positions: int, *, positional: bool, dim: int = 64, heads: int = 2, layers: int = 4,
                 mlp_hidden: int = 64, mlp_layers: int = 2, attn=sdpa_attention) -> None:
        super().__init__()
        self.positional = positional
        self.register_buffer("pe", torch.eye(n_positions), persistent=False)  # one-hot positions
        in_dim = 1 if positional else 1 + n_positions
        qk_in = n_positions if positional else dim
        self.encode = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList(AlgorithmicLayer(dim, heads, qk_in, mlp_hidden, mlp_layers, attn)
                                    for _ in range(layers))
        self.decode = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, n_positions, 1) values -> (B, n_positions, 1) predictions."""
        b, n, _ = x.shape
        pe = self.pe[:n]
        h = self.encode(x if self.positional else torch.cat([x, pe.expand(b, -1, -1)], dim=-1))
        for layer in self.layers:
            h = layer(h, pe if self.positional else h)
        return self.decode(h)

    def attention_weights(self, x: Tensor) -> list[Tensor]:
        """Every layer's attention probabilities (B, H, n, n), computed explicitly."""
        b, n, _ = x.shape
        pe = self.pe[:n]
        h = self.encode(x if self.positional else torch.cat([x, pe.expand(b, -1, -1)], dim=-1))
        weights = []
        for layer in self.layers:
            a, w = layer.attn(h, pe if self.positional else h, need_weights=True)
            weights.append(w)
            h = layer.mlp(torch.cat([h, a], dim=-1))
        return weights


class ValueGeneralisationModule(L.LightningModule):
    """MSE regression on the task (scratchpad excluded); test MSE per value scale."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        layers = cfg.layers or int(math.log2(cfg.n)) + 1
        self.model = AlgorithmicTransformer(cfg.n + cfg.scratch, positional=cfg.architecture == "positional",
                                            dim=cfg.embed_dim, heads=cfg.heads, layers=layers,
                                            mlp_hidden=cfg.mlp_hidden, mlp_layers=cfg.mlp_layers)
        self._sse: Tensor | None = None

    def forward(self, x):
        return self.model(x)

    def _mse(self, x, y):
        n = self.cfg.n
        return ((self(x)[:, :n] - y[:, :n]) ** 2).mean()

    def training_step(self, batch, _):
        x, y = batch
        loss = self._mse(x, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val/loss", self._mse(x, y))

    def on_test_epoch_start(self):
        k = len(self.cfg.test_scales)
        self._sse = torch.zeros(k, dtype=torch.float64)
        self._count = torch.zeros(k, dtype=torch.float64)
        self._ssy = torch.zeros(k, dtype=torch.float64)  # sum of squared targets: relative error

    def test_step(self, batch, _):
        x, y, scale = batch
        n = self.cfg.n
        err = ((self(x)[:, :n] - y[:, :n]) ** 2).sum(dim=(1, 2)).double().cpu()
        self._sse.index_add_(0, scale.cpu(), err)
        self._count.index_add_(0, scale.cpu(), torch.full_like(err, float(n)))
        self._ssy.index_add_(0, scale.cpu(), (y[:, :n] ** 2).sum(dim=(1, 2)).double().cpu())

    def on_test_epoch_end(self):
        for i, s in enumerate(self.cfg.test_scales):
            mse = float(self._sse[i] / self._count[i])
            self.log(f"test/mse_x{s}", mse)
            self.log(f"test/log10_mse_x{s}", math.log10(max(mse, 1e-30)))
            self.log(f"test/rel_mse_x{s}", float(self._sse[i] / self._ssy[i]))  # MSE / mean(y^2)

    def configure_optimizers(self):
        c = self.cfg
        opt = torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        # official schedule: x0.9 after 50 epochs without improvement of the training loss
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=50, factor=0.9, min_lr=1e-6)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "train/loss", "interval": "epoch"}}
