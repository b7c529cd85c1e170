"""The Dynamical Systems Framework (DSF) of Sieber, Amo Alonso, Didier, Zeilinger & Orvieto,
"Understanding the differences in Foundation Models: Attention, State Space Models, and
Recurrent Neural Networks" (NeurIPS 2024, arXiv 2405.15731), for linear attention, and the
small language model of its MQAR experiment (Sec. 4, Figure 5).

DSF (Sec. 3): every sequence mixer is written as a linear time-varying system

    h_i = Lambda_i h_{i-1} + B_i u_i,    y_i = C_i h_i + D_i u_i,                 (DSF)

with a hidden state h_i of dimension N = n x d (n: the *state expansion*). Normalised
linear attention, y_i = sum_{j<=i} phi(q_i)^T phi(k_j) v_j / eta_i with
eta_i = phi(q_i)^T sum_{j<=i} phi(k_j), is (DSF) with u_i = v_i (the values), D_i = 0,

    Lambda_i = (eta_{i-1} / eta_i) I_N,   B_i = (1 / eta_i) (phi(k_i) kron I_d),
    C_i = phi(q_i)^T kron I_d,

so that h_i = (1/eta_i) sum_{j<=i} phi(k_j) v_j^T (stored as an n x d matrix): the state
is the running key-value memory, rescaled when the normaliser changes; n = dim phi(q) is
the state expansion the paper varies in Figure 5. Unrolling (DSF) gives the
input-output map y_i = sum_{j<=i} C_i Lambda_i ... Lambda_{j+1} B_j u_j: its kernel is the
(causal, normalised) attention matrix (``dsf_kernel``). Softmax attention has no finite n
(its feature map is infinite-dimensional), which is why its state is the whole KV cache.

Here: ``dsf_linear_attention_matrices`` builds (Lambda_i, B_i, C_i) explicitly, ``ltv_scan``
runs any such system, ``dsf_linear_attention`` runs the recurrence with the state as an
n x d matrix (the efficient form of the same system), all tested against the parallel form
of the shared block (``repro.blocks.linear_attention.causal_linear_attention``).

The MQAR model (the paper's Zoology configuration): token + learned position embeddings,
two blocks ``x + mixer(LayerNorm(x))`` with no MLP (the configs' state mixer is the
identity), a final LayerNorm and an output layer tied to the embeddings. Mixers: softmax
attention (the suite's ``MultiHeadAttention``, one head, causal) or linear attention with
the elu+1 feature map and normalisation (Katharopoulos et al.) whose query/key projection
has n = ``state_n`` outputs.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.attention import MultiHeadAttention
from repro.blocks.linear_attention import causal_linear_attention, elu_plus_one

from .data import IGNORE

# --------------------------------------------------------------------------------------
# The DSF representation of normalised linear attention (Sec. 3)
# --------------------------------------------------------------------------------------


def normalisers(fq: Tensor, fk: Tensor) -> Tensor:
    """eta_i = phi(q_i)^T sum_{j<=i} phi(k_j); fq, fk: (..., L, n) features -> (..., L)."""
    return (fq * fk.cumsum(dim=-2)).sum(dim=-1)


def dsf_linear_attention_matrices(fq: Tensor, fk: Tensor, d: int, normalize: bool = True):
    """Explicit DSF matrices of one sequence: fq, fk (L, n) -> Lambda (L, N, N),
    B (L, N, d), C (L, d, N) with N = n d and the state h = vec(S), S in R^{n x d}
    (row-major: h[a d + c] = S[a, c])."""
    steps, n = fq.shape
    eye_d = torch.eye(d, dtype=fq.dtype, device=fq.device)
    eta = normalisers(fq, fk) if normalize else torch.ones(steps, dtype=fq.dtype, device=fq.device)
    eta_prev = torch.cat([eta[:1], eta[:-1]])  # Lambda_0 multiplies h_{-1} = 0: any value works
    N = n * d
    lam = (eta_prev / eta)[:, None, None] * torch.eye(N, dtype=fq.dtype, device=fq.device)
    Bm = torch.stack([torch.kron(fk[i][:, None], eye_d) / eta[i] for i in range(steps)])  # (L, N, d)
    Cm = torch.stack([torch.kron(fq[i][None, :], eye_d) for i in range(steps)])  # (L, d, N)
    return lam, Bm, Cm


def ltv_scan(lam: Tensor, Bm: Tensor, Cm: Tensor, u: Tensor, Dm: Tensor | None = None) -> Tensor:
    """Run h_i = Lambda_i h_{i-1} + B_i u_i, y_i = C_i h_i (+ D_i u_i) from h_{-1} = 0;
    u: (L, d_in) -> y: (L, d_out)."""
    h = torch.zeros(lam.shape[-1], dtype=u.dtype, device=u.device)
    ys = []
    for i in range(u.shape[0]):
        h = lam[i] @ h + Bm[i] @ u[i]
        y = Cm[i] @ h
        ys.append(y if Dm is None else y + Dm[i] @ u[i])
    return torch.stack(ys)


def dsf_kernel(lam: Tensor, Bm: Tensor, Cm: Tensor) -> Tensor:
    """The input-output map of the DSF as a block matrix Phi[i, j] = C_i Lambda_i ...
    Lambda_{j+1} B_j (j <= i), shape (L, L, d_out, d_in)."""
    steps = lam.shape[0]
    phi = torch.zeros(steps, steps, Cm.shape[1], Bm.shape[2], dtype=lam.dtype, device=lam.device)
    for j in range(steps):
        prop = Bm[j]
        for i in range(j, steps):
            if i > j:
                prop = lam[i] @ prop
            phi[i, j] = Cm[i] @ prop
    return phi


def dsf_linear_attention(fq: Tensor, fk: Tensor, v: Tensor, normalize: bool = True) -> Tensor:
    """(DSF) for linear attention with the state kept as an n x d matrix S_i:
    S_i = (eta_{i-1}/eta_i) S_{i-1} + phi(k_i) v_i^T / eta_i, y_i = S_i^T phi(q_i).
    fq, fk: (..., L, n) features; v: (..., L, d). O(L n d), state O(n d)."""
    eta = normalisers(fq, fk) if normalize else torch.ones(fq.shape[:-1], dtype=fq.dtype, device=fq.device)
    S = torch.zeros(*fq.shape[:-2], fq.shape[-1], v.shape[-1], dtype=v.dtype, device=v.device)
    ys = []
    for i in range(fq.shape[-2]):
        lam = (eta[..., i - 1] / eta[..., i]) if i > 0 else torch.zeros_like(eta[..., 0])
        S = lam[..., None, None] * S + fk[..., i, :, None] * v[..., i, None, :] / eta[..., i, None, None]
        ys.append(torch.einsum("...n,...nd->...d", fq[..., i, :], S))
    return torch.stack(ys, dim=-2)


# --------------------------------------------------------------------------------------
# The MQAR model (Sec. 4 / Figure 5, Zoology configuration, scaled to the CPU)
# --------------------------------------------------------------------------------------


class LinearAttentionMixer(nn.Module):
    """Normalised elu+1 linear attention with state expansion n: W_qk: d -> 2n, W_v: d -> d,
    one head (the paper's ``MHA(lin_att=True)`` with ``d_qk = n``)."""

    def __init__(self, d_model: int, state_n: int) -> None:
        super().__init__()
        self.state_n = state_n
        self.qk = nn.Linear(d_model, 2 * state_n)
        self.v = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """phi(q), phi(k): (B, L, n); v: (B, L, d)."""
        q, k = self.qk(x).chunk(2, dim=-1)
        return elu_plus_one(q), elu_plus_one(k), self.v(x)

    def forward(self, x: Tensor) -> Tensor:
        fq, fk, v = self.features(x)
        y = causal_linear_attention(fq, fk, v, feature_map="identity", normalize=True)
        return self.out_proj(y)


class SoftmaxMixer(nn.Module):
    """Causal softmax attention, one head (the suite's MultiHeadAttention / SDPA)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x, causal=True)


class MQARModel(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int, d_model: int, layers: int, mixer: str, state_n: int,
                 embed_dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.drop = nn.Dropout(embed_dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
        if mixer == "softmax":
            self.mixers = nn.ModuleList(SoftmaxMixer(d_model) for _ in range(layers))
        elif mixer == "linear":
            self.mixers = nn.ModuleList(LinearAttentionMixer(d_model, state_n) for _ in range(layers))
        else:
            raise ValueError(f"mixer must be softmax or linear, got {mixer!r}")
        self.norm_f = nn.LayerNorm(d_model)
        for m in self.modules():  # Zoology's initialisation: N(0, 0.02), zero biases
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def hidden(self, tokens: Tensor, upto: int | None = None) -> Tensor:
        """Residual stream after ``upto`` blocks (all by default), before the final norm."""
        x = self.drop(self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device)))
        for norm, mixer in list(zip(self.norms, self.mixers))[:upto]:
            x = x + mixer(norm(x))
        return x

    def forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """Logits (tied output layer); only at ``positions`` (a boolean mask) if given."""
        h = self.norm_f(self.hidden(tokens))
        if positions is not None:
            h = h[positions]
        return h @ self.embed.weight.T


class MQARModule(L.LightningModule):
    """Next-token cross-entropy on the query positions; test accuracy = fraction of
    queries whose value is the arg-max (Zoology's MQAR accuracy). For linear attention the
    test also checks the DSF recurrence against the parallel form on the trained layers."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = MQARModel(cfg.vocab_size, cfg.seq_len, cfg.d_model, cfg.layers, cfg.mixer, cfg.state_n,
                               cfg.embed_dropout)
        self._sums: dict[str, float] = {}

    def setup(self, stage: str) -> None:
        # one thread: small matrix products on a shared 2-core machine (README)
        self._threads = torch.get_num_threads()
        if self.cfg.threads > 0:
            torch.set_num_threads(self.cfg.threads)

    def teardown(self, stage: str) -> None:
        torch.set_num_threads(getattr(self, "_threads", torch.get_num_threads()))

    def _loss_acc(self, batch):
        x, y = batch
        pos = y != IGNORE
        logits = self.model(x, pos)
        target = y[pos]
        return F.cross_entropy(logits, target), (logits.argmax(-1) == target).float()

    def training_step(self, batch, _):
        loss, acc = self._loss_acc(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        self.log("train/acc", acc.mean(), on_step=False, on_epoch=True)
        return loss

    def on_test_epoch_start(self):
        self._sums = {"correct": 0.0, "n": 0.0, "loss": 0.0, "dsf": 0.0}

    def test_step(self, batch, batch_idx):
        loss, acc = self._loss_acc(batch)
        self._sums["correct"] += acc.sum().item()
        self._sums["n"] += acc.numel()
        self._sums["loss"] += loss.item() * acc.numel()
        if batch_idx == 0 and self.cfg.mixer == "linear":
            self._sums["dsf"] = self.dsf_check(batch[0][: self.cfg.dsf_check_batch])

    @torch.no_grad()
    def dsf_check(self, tokens: Tensor) -> float:
        """Max relative difference, in float64, between each trained linear-attention layer
        computed in parallel form and as the DSF recurrence, on real hidden states."""
        worst = 0.0
        for layer, (norm, mixer) in enumerate(zip(self.model.norms, self.model.mixers)):
            x = norm(self.model.hidden(tokens, upto=layer)).double()
            fq, fk, v = (t.double() for t in mixer.features(x.float()))
            par = causal_linear_attention(fq, fk, v, feature_map="identity", normalize=True)
            rec = dsf_linear_attention(fq, fk, v)
            worst = max(worst, ((rec - par).abs().max() / par.abs().max()).item())
        return worst

    def on_test_epoch_end(self):
        n = max(self._sums["n"], 1.0)
        self.log("test/acc", self._sums["correct"] / n)
        self.log("test/loss", self._sums["loss"] / n)
        if self.cfg.mixer == "linear":
            self.log("test/dsf_rel_err", self._sums["dsf"])

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        steps = max(1, self.cfg.max_steps)
        warm = max(1, int(self.cfg.warmup_fraction * steps))

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 0
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
