"""GRU encoder-decoder with the cross-attention variants compared by Ray Chowdhury &
Caragea, "Monotonic Location Attention for Length Generalization" (ICML 2023, arXiv
2305.20019). Written from the paper's description (Sections 2-4) and the official
implementation's hyperparameters (JRC1995/MonotonicLocationAttention, configs/copy_configs.py).

Backbone (Section 2, as in the official code): the source [START, x_1..x_n, END] is
encoded by a bidirectional GRU; the decoder is a GRU cell whose state h_t is the
attention query; the context c_t = Attn(h_t, keys = encodings, values =
leaky_relu(W e_j)) enters the next cell input with the previous token's embedding;
output logits are tied to the input embeddings.

Attention variants (the paper's names):

* ``content``: scaled dot-product attention on the encodings (Bahdanau/Luong style
  cross-attention with learned projections).
* ``relative`` (Section 3.1): Transformer-XL relative attention between decoding step t
  and encoder position j,
      s_tj = (q_t + u)^T k_j + (q_t + v)^T W_R R(j - t),   R = fixed sinusoids.
* ``bi_relative`` (Section 3.2, "Bi-Relative"): the same on an interpolation of the
  forward encodings and the reversed ones, e_j' = g e_j + (1 - g) e_{n+1-j}, with a
  gate g = sigmoid(5 w^T h_0) from the decoder's initial state.
* ``onestep`` (Section 4, "OneStepAttn"): location attention only. A Gaussian over
  normalised positions p_j = j / (n + 1),
      a_tj ∝ exp(-(p_j - mu_t)^2 / (2 sigma_t^2)),
      mu_t = mu_{t-1} + step_t / (n + 1),  step_t = sigmoid(5 rho_t) in (0, 1),
      sigma_t = (relu(w_sigma^T q_t) + 0.27) / (n + 2),
  where mu_{t-1} is the expected position attended at t - 1 (Section 4.2), on the
  bi-directionally interpolated encodings.
* ``mono`` (Section 4.3, "MonoAttn"): the same with a monotonic step that may exceed
  one position, step_t = s relu(rho_t) + (1 - s) sigmoid(5 rho_t), s = sigmoid(b),
  b learned (initialised at 20).

The content and relative paths call the suite's SDPA kernel (the relative term enters
as an additive bias); ``naive=True`` uses the explicit-softmax reference kernel. The
location path is the paper's own mechanism and is written out here.
"""

from __future__ import annotations

import copy
import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.attention import naive_attention, sdpa_attention

from .data import PAD, SOS, VOCAB_SIZE

ATTENTIONS = ("content", "relative", "bi_relative", "onestep", "mono")


def relative_sinusoids(delta: Tensor, dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed sinusoidal embedding of integer relative distances (any sign), (..., dim)."""
    div = torch.exp(torch.arange(0, dim, 2, device=delta.device, dtype=dtype) * (-math.log(10000.0) / dim))
    ang = delta.to(dtype)[..., None] * div
    pe = torch.zeros(*delta.shape, dim, device=delta.device, dtype=dtype)
    pe[..., 0::2] = torch.sin(ang)
    pe[..., 1::2] = torch.cos(ang)
    return pe


class DotProductCrossAttention(nn.Module):
    """Content attention, optionally with Transformer-XL relative position scores."""

    def __init__(self, dim: int, heads: int, head_dim: int, *, relative: bool, naive: bool = False) -> None:
        super().__init__()
        self.dim, self.heads, self.d, self.relative = dim, heads, head_dim, relative
        self.kernel = naive_attention if naive else sdpa_attention
        self.q = nn.Linear(dim, heads * head_dim, bias=False)
        self.k = nn.Linear(dim, heads * head_dim, bias=False)
        self.v = nn.Linear(dim, heads * dim, bias=False)
        self.o = nn.Linear(heads * dim, dim, bias=False)
        if relative:
            self.u = nn.Parameter(torch.zeros(heads, head_dim))  # content bias
            self.vb = nn.Parameter(torch.zeros(heads, head_dim))  # position bias
            self.r = nn.Linear(dim, heads * head_dim, bias=False)
        for lin in [self.q, self.k, self.v, self.o] + ([self.r] if relative else []):
            nn.init.xavier_uniform_(lin.weight)

    def prepare(self, keys: Tensor, values: Tensor) -> dict:
        b, s, _ = keys.shape
        return {"k": self.k(keys).view(b, s, self.heads, self.d).transpose(1, 2),
                "v": self.v(values).view(b, s, self.heads, self.dim).transpose(1, 2)}

    def forward(self, h: Tensor, cache: dict, mask: Tensor, t: int, state=None) -> tuple[Tensor, Tensor | None]:
        b = h.shape[0]
        q = self.q(h).view(b, self.heads, 1, self.d)
        s = cache["k"].shape[2]
        bias = torch.zeros(b, self.heads, 1, s, device=h.device, dtype=h.dtype)
        if self.relative:
            delta = torch.arange(s, device=h.device) - t  # value position - query position
            rel = self.r(relative_sinusoids(delta, self.dim, h.dtype)).view(s, self.heads, self.d)
            bias = torch.einsum("bhqd,shd->bhqs", q + self.vb[None, :, None], rel) / math.sqrt(self.d)
            q = q + self.u[None, :, None]
        bias = bias.masked_fill(~mask[:, None, None, :], float("-inf"))
        out = self.kernel(q, cache["k"], cache["v"], bias)  # softmax((q k^T) / sqrt(d) + bias) v
        return self.o(out.transpose(1, 2).reshape(b, self.heads * self.dim)), None


class LocationAttention(nn.Module):
    """OneStepAttn / MonoAttn (Section 4): a Gaussian over normalised positions whose
    mean moves forward from the previously attended position by a bounded step."""

    def __init__(self, dim: int, heads: int, head_dim: int, *, step: str) -> None:
        super().__init__()
        if step not in ("sigmoid", "controlled_relu", "relu"):
            raise ValueError(f"unknown step activation {step!r}")
        self.dim, self.heads, self.d, self.step = dim, heads, head_dim, step
        self.qpos = nn.Linear(dim, heads * head_dim)
        self.w_sigma = nn.Parameter(torch.empty(heads, head_dim, 1))
        self.w_rho = nn.Parameter(torch.empty(heads, head_dim, 1))
        self.step_bias = nn.Parameter(torch.tensor([20.0]))  # MonoAttn: s = sigmoid(b) starts ~1 (relu step)
        self.v = nn.Linear(dim, heads * dim, bias=False)
        self.o = nn.Linear(heads * dim, dim, bias=False)
        for w in (self.qpos.weight, self.w_sigma, self.w_rho, self.v.weight, self.o.weight):
            nn.init.xavier_uniform_(w)
        if step != "controlled_relu":
            self.step_bias.requires_grad_(False)

    def prepare(self, keys: Tensor, values: Tensor) -> dict:
        b, s, _ = values.shape
        return {"v": self.v(values).view(b, s, self.heads, self.dim).transpose(1, 2)}

    def weights(self, h: Tensor, mask: Tensor, past: Tensor | None) -> tuple[Tensor, Tensor]:
        """Attention weights (B, H, S) and the expected attended position (B, H)."""
        b, s = mask.shape
        n_valid = mask.sum(-1, keepdim=True).to(h.dtype)  # n + 2 (START and END included)
        unit = 1.0 / torch.clamp(n_valid - 1, min=1.0)  # one position, normalised
        pos = torch.arange(s, device=h.device, dtype=h.dtype)[None] * unit  # (B, S)
        qp = self.qpos(h).view(b, self.heads, self.d)
        sigma = (F.relu(torch.einsum("bhd,hdo->bho", qp, self.w_sigma)) + 0.27) / n_valid[:, :, None]
        rho = torch.einsum("bhd,hdo->bho", qp, self.w_rho)
        if self.step == "sigmoid":
            step = torch.sigmoid(5 * rho)
        elif self.step == "relu":
            step = F.relu(rho)
        else:
            sb = torch.sigmoid(self.step_bias)
            step = sb * F.relu(rho) + (1 - sb) * torch.sigmoid(5 * rho)
        prev = torch.zeros(b, self.heads, 1, device=h.device, dtype=h.dtype) if past is None else past[..., None]
        mu = step * unit[:, :, None] + prev  # (B, H, 1)
        g = torch.exp(-((pos[:, None, :] - mu) ** 2) / (2 * sigma**2)) * mask[:, None, :].to(h.dtype)
        w = g / (g + 1e-20).sum(-1, keepdim=True)
        return w, (w * pos[:, None, :]).sum(-1)

    def forward(self, h: Tensor, cache: dict, mask: Tensor, t: int, state=None) -> tuple[Tensor, Tensor]:
        w, expected = self.weights(h, mask, state)
        out = torch.einsum("bhs,bhsd->bhd", w, cache["v"])
        return self.o(out.reshape(h.shape[0], self.heads * self.dim)), expected


class Seq2Seq(nn.Module):
    """Bidirectional-GRU encoder, GRU-cell decoder with one of ``ATTENTIONS``."""

    def __init__(self, attention: str, *, embed_dim: int = 64, hidden: int = 128, heads: int = 1,
                 head_dim: int = 128, dropout: float = 0.5, naive: bool = False) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; known: {', '.join(ATTENTIONS)}")
        self.attention, self.hidden, self.dropout = attention, hidden, dropout
        self.mix_directions = attention in ("bi_relative", "onestep", "mono")
        self.embed = nn.Embedding(VOCAB_SIZE, embed_dim, padding_idx=PAD)
        nn.init.kaiming_normal_(self.embed.weight, mode="fan_out")
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        self.start = nn.Parameter(torch.zeros(embed_dim))
        self.end = nn.Parameter(torch.zeros(embed_dim))
        self.encoder = nn.GRU(embed_dim, hidden // 2, batch_first=True, bidirectional=True)
        self.value_transform = nn.Linear(hidden, hidden)
        nn.init.xavier_uniform_(self.value_transform.weight)
        if self.mix_directions:
            self.dir_gate = nn.Linear(hidden, 1)
        if attention in ("onestep", "mono"):
            self.attn = LocationAttention(hidden, heads, head_dim, step="sigmoid" if attention == "onestep"
                                          else "controlled_relu")
        else:
            self.attn = DotProductCrossAttention(hidden, heads, head_dim, relative=attention != "content", naive=naive)
        self.cell = nn.GRUCell(embed_dim + hidden, hidden)
        self.out = nn.Linear(hidden, embed_dim)
        nn.init.xavier_uniform_(self.out.weight)
        self.out_bias = nn.Parameter(torch.zeros(VOCAB_SIZE))

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encodings of [START, x, END] (B, S, hidden), their mask and the initial state."""
        b = src.shape[0]
        s = int(src_len.max()) + 2
        x = self.embed(src[:, : s - 2])
        pos = torch.arange(s, device=src.device)[None]
        n = src_len.to(src.device)[:, None]
        seq = torch.zeros(b, s, x.shape[-1], device=src.device, dtype=x.dtype)
        seq[:, 1 : s - 1] = x
        seq = torch.where((pos == 0)[..., None], self.start.expand(b, s, -1), seq)
        seq = torch.where((pos == n + 1)[..., None], self.end.expand(b, s, -1), seq)
        mask = pos <= n + 1
        seq = seq * mask[..., None]
        packed = nn.utils.rnn.pack_padded_sequence(seq, (src_len + 2).cpu(), batch_first=True, enforce_sorted=False)
        enc, h_n = self.encoder(packed)
        enc, _ = nn.utils.rnn.pad_packed_sequence(enc, batch_first=True, total_length=s)
        h0 = h_n.transpose(0, 1).reshape(b, self.hidden)
        enc = F.dropout(enc, self.dropout, self.training)
        if self.mix_directions:  # Bi-Relative / location variants: interpolate with the reversed encodings
            idx = (n + 1 - pos).clamp(min=0)  # reversed position j -> n + 1 - j inside the sequence
            rev = enc.gather(1, idx[..., None].expand(-1, -1, enc.shape[-1])) * mask[..., None]
            g = torch.sigmoid(5 * self.dir_gate(h0))[:, None]
            enc = g * enc + (1 - g) * rev
        return enc, mask, h0

    def logits(self, h: Tensor) -> Tensor:
        return F.linear(self.out(h), self.embed.weight, self.out_bias)  # tied output embedding

    def forward(self, src: Tensor, src_len: Tensor, tgt: Tensor | None = None, steps: int | None = None) -> Tensor:
        """Teacher-forced logits (B, T, V) if ``tgt`` is given, else greedy decoding for
        ``steps`` steps (each input is the previous argmax)."""
        enc, mask, h = self.encode(src, src_len)
        cache = self.attn.prepare(enc, F.leaky_relu(self.value_transform(enc)))
        steps = tgt.shape[1] if tgt is not None else steps
        token = torch.full((src.shape[0],), SOS, dtype=torch.long, device=src.device)
        state, out = None, []
        for t in range(steps):
            if t > 0:
                token = tgt[:, t - 1] if tgt is not None else out[-1].argmax(-1)
            c, state = self.attn(h, cache, mask, t, state)
            h = self.cell(torch.cat([self.embed(token), c], dim=-1), h)
            out.append(self.logits(h))
        return torch.stack(out, dim=1)


def exact_match(pred: Tensor, tgt: Tensor, tgt_len: Tensor) -> Tensor:
    """Per sequence: the prediction equals the target up to and including its EOS
    (the official sequence accuracy: prediction cut at its first <eos> == target)."""
    pos = torch.arange(tgt.shape[1], device=tgt.device)[None]
    valid = pos < tgt_len[:, None].to(tgt.device)
    return ((pred[:, : tgt.shape[1]] == tgt) | ~valid).all(dim=1)


class LengthGeneralisationModule(L.LightningModule):
    """Cross-entropy with teacher forcing; greedy decoding for dev/test sequence accuracy;
    the weights of the best dev epoch are tested (the official protocol saves by dev
    accuracy)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Seq2Seq(cfg.attention, embed_dim=cfg.embed_dim, hidden=cfg.hidden, heads=cfg.heads,
                             head_dim=cfg.head_dim, dropout=cfg.dropout)
        self.best_acc = -1.0
        self.best_state: dict | None = None
        self._correct: Tensor | None = None

    def training_step(self, batch, _):
        src, ls, tgt, lt = batch
        tgt = tgt[:, : int(lt.max())]
        logits = self.model(src, ls, tgt)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=PAD)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=src.shape[0])
        return loss

    def _greedy_correct(self, src, ls, tgt, lt) -> Tensor:
        steps = int(lt.max())
        pred = self.model(src, ls, steps=steps).argmax(-1)
        return exact_match(pred, tgt[:, :steps], lt)

    def on_validation_epoch_start(self):
        self._val = [0, 0]

    def validation_step(self, batch, _):
        ok = self._greedy_correct(*batch)
        self._val[0] += int(ok.sum())
        self._val[1] += len(ok)

    def on_validation_epoch_end(self):
        acc = self._val[0] / max(1, self._val[1])
        self.log("val/acc", acc)
        if acc > self.best_acc and not self.trainer.sanity_checking:
            self.best_acc = acc
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def on_save_checkpoint(self, checkpoint):
        checkpoint["best_dev"] = {"acc": self.best_acc, "state": self.best_state}

    def on_load_checkpoint(self, checkpoint):
        best = checkpoint.get("best_dev", {})
        self.best_acc, self.best_state = best.get("acc", -1.0), best.get("state")

    def on_test_epoch_start(self):
        if self.best_state is not None and self.cfg.select_by_dev:
            self.model.load_state_dict(self.best_state)
        k = 1 + len(self.cfg.test_lengths)
        self._correct = torch.zeros(k)
        self._total = torch.zeros(k)

    def test_step(self, batch, _):
        src, ls, tgt, lt, split = batch
        ok = self._greedy_correct(src, ls, tgt, lt).float().cpu()
        self._correct.index_add_(0, split.cpu(), ok)
        self._total.index_add_(0, split.cpu(), torch.ones_like(ok))

    def on_test_epoch_end(self):
        names = ["iid"] + [f"len{n}" for n in self.cfg.test_lengths]
        for i, name in enumerate(names):
            self.log(f"test/acc_{name}", float(self._correct[i] / self._total[i]))
        self.log("test/best_dev_acc", max(self.best_acc, 0.0))

    def configure_optimizers(self):
        c = self.cfg
        opt = torch.optim.AdamW(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=4)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": "val/acc", "interval": "epoch", "strict": False}}
