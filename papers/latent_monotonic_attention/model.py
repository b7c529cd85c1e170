"""Latent monotonic (hard) attention vs global soft attention, after Zeyer, Schlüter & Ney,
"A study of latent monotonic attention variants" (arXiv 2103.16710). Written from the
paper's abstract and the official repository's READMEs (rwth-i6/returnn-experiments,
2021-latent-monotonic-attention); no official code is copied.

Notation: encoder frames h_1..h_T (BLSTM), labels y_1..y_S (y_S = EOS), decoder state g_s.

* Global soft attention (the paper's baseline): for every label s,
      alpha_{s,t} = softmax_t( v^T tanh(W g_s + U h_t) ),   c_s = sum_t alpha_{s,t} h_t,
      p(y_s | y_<s, x) = softmax(readout(g_s, c_s)),
  with the decoder LSTM reading [embed(y_{s-1}); c_{s-1}] (input feeding).

* Hard (latent-position) monotonic attention (the paper's "hard attention model"): the
  attended frame t_s of label s is a latent variable, monotonic in s. The model is
      p(y_1..S | x) = sum over t_1 < t_2 < ... < t_S of
                      prod_s p(t_s | t_{s-1}, y_<s, x) * p(y_s | y_<s, t_s, x),
  with t_0 = 0 (before the first frame), strict monotonicity t_s > t_{s-1} by default
  (``strict=False``: t_s >= t_{s-1}), and
      p(t_s = t | t_{s-1} = t', ...) = softmax over allowed t of
                      [ v^T tanh(W g_s + U h_t) + b_jump(min(t - t', D)) ],
      p(y_s | t_s = t, ...) = softmax(readout(g_s, h_t)).
  A jump bias b_jump (D bins, the last one shared by all longer jumps) is this recipe's
  choice, as is ``max_jump`` (0: any jump).

  Delta to the paper, stated: the official models feed the attended frame back into the
  decoder LSTM, so g_s depends on t_<s and training uses the best alignment found by
  search (Viterbi / maximum approximation; official README: the ChoiceLayer "allows for
  the Viterbi search during training"). Here the decoder LSTM reads labels only, so the
  model is first-order in t (as an HMM) and the sum over all monotonic alignments is
  *exact* by the forward recursion in log space:
      A_s(t) = log p(y_s | t) + logsumexp_{t'} [ A_{s-1}(t') + log p(t | t') ],
      A_0 = log delta(t' = 0),   log p(y | x) = logsumexp_t A_S(t)
  (``forward_marginal``; ``train_criterion="viterbi"`` replaces logsumexp by max, the
  maximum approximation). ``viterbi_align`` returns the best alignment with back-pointers.
  There is no end constraint on t_S (the EOS label may sit anywhere after t_{S-1}).

Decoding: greedy. Soft attention: argmax label per step. Hard attention: the joint argmax
over (t_s, y_s) of log p(t_s | t_{s-1}) + log p(y_s | t_s) per step (the paper uses beam
search over both variables).
"""

from __future__ import annotations

import itertools

import lightning as L
import torch
from torch import Tensor, nn

from repro.blocks.attention import naive_attention

from .data import vocab_ids

NEG = -1e30  # finite "minus infinity": exp() is exactly 0, gradients stay finite


# ---------------------------------------------------------------------------------------
# The latent-alignment recursions (model-agnostic: they take score tensors)
# ---------------------------------------------------------------------------------------

def allowed_transitions(feat_len: Tensor, t_max: int, *, strict: bool = True, max_jump: int = 0) -> Tensor:
    """Boolean (B, T+1, T): from previous position i (0 = before the first frame, else
    frame i, 1-based) to frame j+1. Monotonic (strict: j+1 > i; else j+1 >= i), at most
    ``max_jump`` frames ahead if > 0, and only into frames of the sequence."""
    i = torch.arange(t_max + 1, device=feat_len.device)[:, None]
    j = torch.arange(1, t_max + 1, device=feat_len.device)[None, :]
    ok = (j > i) if strict else (j >= i)
    if max_jump > 0:
        ok = ok & (j - i <= max_jump)
    return ok[None] & (j[None] <= feat_len.to(i.device)[:, None, None])


def forward_marginal(log_trans: Tensor, log_emit: Tensor, label_len: Tensor, *, use_max: bool = False) -> Tensor:
    """log p(y | x) = log sum over monotonic alignments, by the forward recursion.

    ``log_trans`` (B, S, T+1, T): log p(t_s = j+1 | t_{s-1} = i) (NEG where not allowed);
    ``log_emit`` (B, S, T): log p(y_s | t_s = t+1). Returns (B,), the total at s =
    ``label_len``. ``use_max``: the Viterbi score (maximum approximation) instead.
    """
    b, s_max, _, t_max = log_trans.shape
    red = (lambda x, d: x.max(d).values) if use_max else torch.logsumexp
    prev = log_emit.new_full((b, t_max + 1), NEG)
    prev[:, 0] = 0.0
    totals = []
    for s in range(s_max):
        a = red(prev[:, :, None] + log_trans[:, s], 1) + log_emit[:, s]  # (B, T)
        totals.append(red(a, -1))
        prev = torch.cat([a.new_full((b, 1), NEG), a], dim=1)
    return torch.stack(totals, 1).gather(1, (label_len.to(log_emit.device) - 1)[:, None])[:, 0]


@torch.no_grad()
def viterbi_align(log_trans: Tensor, log_emit: Tensor, label_len: Tensor) -> tuple[Tensor, Tensor]:
    """Best alignment: (B, S) 1-based frames t_s (0 beyond ``label_len``) and its score (B,)."""
    b, s_max, _, t_max = log_trans.shape
    prev = log_emit.new_full((b, t_max + 1), NEG)
    prev[:, 0] = 0.0
    bps, alphas = [], []
    for s in range(s_max):
        scores = prev[:, :, None] + log_trans[:, s]  # (B, T+1, T)
        best, bp = scores.max(1)
        a = best + log_emit[:, s]
        bps.append(bp)
        alphas.append(a)
        prev = torch.cat([a.new_full((b, 1), NEG), a], dim=1)
    label_len = label_len.to(log_emit.device)
    last = torch.stack(alphas, 1).gather(1, (label_len - 1)[:, None, None].expand(-1, 1, t_max))[:, 0]
    score, end = last.max(-1)
    path = torch.zeros(b, s_max, dtype=torch.long, device=log_emit.device)
    cur = end + 1
    for s in reversed(range(s_max)):
        cur = torch.where(label_len - 1 == s, end + 1, cur)
        active = s < label_len
        path[:, s] = torch.where(active, cur, 0)
        back = bps[s].gather(1, (cur - 1).clamp(min=0)[:, None])[:, 0]
        cur = torch.where(active, back, cur)
    return path, score


def brute_force(log_trans: Tensor, log_emit: Tensor, s_len: int, t_len: int, *, strict: bool = True,
                max_jump: int = 0) -> tuple[Tensor, tuple[int, ...]]:
    """One example, by enumeration of every monotonic alignment (reference for the tests):
    (log sum of path scores, best path as 1-based frames)."""
    combos = itertools.combinations if strict else itertools.combinations_with_replacement
    scores, paths = [], []
    for path in combos(range(1, t_len + 1), s_len):
        if max_jump > 0 and any(b - a > max_jump for a, b in zip((0,) + path, path)):
            continue
        sc = sum(log_trans[s, prev, t - 1] + log_emit[s, t - 1] for s, (prev, t) in enumerate(zip((0,) + path, path)))
        scores.append(sc)
        paths.append(path)
    stacked = torch.stack(scores)
    return torch.logsumexp(stacked, 0), paths[int(stacked.argmax())]


# ---------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------

class Encoder(nn.Module):
    """BLSTM encoder over frames (the paper: 6 BLSTM layers with time downsampling; here
    ``layers`` BLSTM layers, no downsampling)."""

    def __init__(self, feat_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(feat_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, feats: Tensor, feat_len: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(feats, feat_len.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=feats.shape[1])
        return out


class AdditiveEnergy(nn.Module):
    """e_{s,t} = v^T tanh(W g_s + U h_t) (MLP attention energies, as in the RETURNN baselines)."""

    def __init__(self, query_dim: int, key_dim: int, att_dim: int) -> None:
        super().__init__()
        self.w = nn.Linear(query_dim, att_dim, bias=False)
        self.u = nn.Linear(key_dim, att_dim)
        self.v = nn.Linear(att_dim, 1, bias=False)

    def forward(self, g: Tensor, h: Tensor) -> Tensor:
        """g (B, S, Dq), h (B, T, Dk) -> (B, S, T)."""
        return self.v(torch.tanh(self.w(g)[:, :, None] + self.u(h)[:, None]))[..., 0]


class Readout(nn.Module):
    """p(y | g, c) = softmax(W_o tanh(A g + C c)); g and c broadcast against each other."""

    def __init__(self, query_dim: int, ctx_dim: int, dim: int, vocab: int) -> None:
        super().__init__()
        self.a = nn.Linear(query_dim, dim)
        self.c = nn.Linear(ctx_dim, dim, bias=False)
        self.o = nn.Linear(dim, vocab)

    def forward(self, g: Tensor, c: Tensor) -> Tensor:
        return self.o(torch.tanh(self.a(g) + self.c(c)))


class TransducerBase(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.eos, self.bos, self.pad = vocab_ids(cfg.vocab)
        self.n_out = cfg.vocab + 1  # symbols + EOS
        self.encoder = Encoder(cfg.vocab + 1, cfg.enc_hidden, cfg.enc_layers)
        self.enc_dim = 2 * cfg.enc_hidden
        self.embed = nn.Embedding(cfg.vocab + 3, cfg.embed_dim)  # symbols, EOS, BOS, PAD

    def prev_labels(self, labels: Tensor) -> Tensor:
        """[BOS, y_1 .. y_{S-1}] (PAD never reaches a counted position)."""
        bos = labels.new_full((labels.shape[0], 1), self.bos)
        return torch.cat([bos, labels[:, :-1]], dim=1)


class HardMonotonicAttention(TransducerBase):
    """The latent-position model of the module docstring: label-only decoder LSTM, position
    model p(t_s | t_{s-1}, g_s, h), emission p(y_s | g_s, h_{t_s})."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.strict, self.max_jump = cfg.strict, cfg.max_jump
        self.decoder = nn.LSTM(cfg.embed_dim, cfg.dec_hidden, batch_first=True)
        self.energy = AdditiveEnergy(cfg.dec_hidden, self.enc_dim, cfg.att_dim)
        self.jump_bias = nn.Parameter(torch.zeros(cfg.jump_bins))
        self.readout = Readout(cfg.dec_hidden, self.enc_dim, cfg.readout_dim, self.n_out)

    def jump_index(self, t_max: int, device) -> Tensor:
        """(T+1, T) bin of the jump j+1 - i (0 for a non-strict stay), clipped at the last bin."""
        i = torch.arange(t_max + 1, device=device)[:, None]
        j = torch.arange(1, t_max + 1, device=device)[None, :]
        d = (j - i).clamp(min=0) if not self.strict else (j - i - 1).clamp(min=0)
        return d.clamp(max=len(self.jump_bias) - 1)

    def log_transitions(self, energy: Tensor, feat_len: Tensor) -> Tensor:
        """energy (B, S, T) -> log p(t_s = j+1 | t_{s-1} = i), (B, S, T+1, T), NEG where not allowed."""
        t_max = energy.shape[-1]
        allowed = allowed_transitions(feat_len, t_max, strict=self.strict, max_jump=self.max_jump)[:, None]
        logits = energy[:, :, None, :] + self.jump_bias[self.jump_index(t_max, energy.device)]
        logits = logits.masked_fill(~allowed, NEG)
        return torch.log_softmax(logits, dim=-1).masked_fill(~allowed, NEG)

    def scores(self, feats: Tensor, feat_len: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(log_trans (B, S, T+1, T), log_emit (B, S, T)) for the given label sequences."""
        h = self.encoder(feats, feat_len)
        g, _ = self.decoder(self.embed(self.prev_labels(labels)))  # (B, S, D): labels only
        log_trans = self.log_transitions(self.energy(g, h), feat_len)
        logp = torch.log_softmax(self.readout(g[:, :, None], h[:, None]), dim=-1)  # (B, S, T, V)
        log_emit = logp.gather(-1, labels.clamp(max=self.n_out - 1)[:, :, None, None]
                               .expand(-1, -1, h.shape[1], 1))[..., 0]
        return log_trans, log_emit

    def log_likelihood(self, feats, feat_len, labels, label_len, *, use_max: bool = False) -> Tensor:
        log_trans, log_emit = self.scores(feats, feat_len, labels)
        return forward_marginal(log_trans, log_emit, label_len, use_max=use_max)

    def align(self, feats, feat_len, labels, label_len) -> tuple[Tensor, Tensor]:
        log_trans, log_emit = self.scores(feats, feat_len, labels)
        return viterbi_align(log_trans, log_emit, label_len)

    @torch.no_grad()
    def greedy(self, feats: Tensor, feat_len: Tensor, max_steps: int) -> Tensor:
        """Joint greedy search over (t_s, y_s); returns (B, max_steps) labels, EOS-terminated
        (a hypothesis with no frame left ends with EOS)."""
        b, t_max = feats.shape[0], feats.shape[1]
        h = self.encoder(feats, feat_len)
        hu = self.energy.u(h)
        allowed_all = allowed_transitions(feat_len, t_max, strict=self.strict, max_jump=self.max_jump)
        jidx = self.jump_index(t_max, feats.device)
        prev_t = torch.zeros(b, dtype=torch.long, device=feats.device)
        token = torch.full((b,), self.bos, dtype=torch.long, device=feats.device)
        state, out = None, []
        done = torch.zeros(b, dtype=torch.bool, device=feats.device)
        rows = torch.arange(b, device=feats.device)
        for _ in range(max_steps):
            g, state = self.decoder(self.embed(token)[:, None], state)  # (B, 1, D)
            e = self.energy.v(torch.tanh(self.energy.w(g) + hu))[..., 0]  # (B, T)
            allowed = allowed_all[rows, prev_t]  # (B, T)
            logits = (e + self.jump_bias[jidx[prev_t]]).masked_fill(~allowed, NEG)
            log_pos = torch.log_softmax(logits, -1)
            log_lab = torch.log_softmax(self.readout(g, h), -1)  # (B, T, V)
            joint = (log_pos[..., None] + log_lab).masked_fill(~allowed[..., None], NEG).flatten(1)
            best = joint.argmax(-1)
            t_new, y = best // self.n_out, best % self.n_out
            y = torch.where(allowed.any(-1), y, torch.full_like(y, self.eos))  # no frame left: end
            y = torch.where(done, torch.full_like(y, self.eos), y)
            out.append(y)
            prev_t = torch.where(done, prev_t, t_new + 1)
            done = done | (y == self.eos)
            token = y
            if bool(done.all()):
                break
        return torch.stack(out, 1)


class GlobalSoftAttention(TransducerBase):
    """The baseline: global soft (MLP) attention over all frames, decoder LSTM with input
    feeding ([embed(y_{s-1}); c_{s-1}]), readout from (g_s, c_s). The weighted sum uses the
    suite's reference attention kernel with the additive energies as a float mask."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.input_feeding = cfg.input_feeding
        in_dim = cfg.embed_dim + (self.enc_dim if cfg.input_feeding else 0)
        self.cell = nn.LSTMCell(in_dim, cfg.dec_hidden)
        self.energy = AdditiveEnergy(cfg.dec_hidden, self.enc_dim, cfg.att_dim)
        self.readout = Readout(cfg.dec_hidden, self.enc_dim, cfg.readout_dim, self.n_out)

    def attend(self, g: Tensor, h: Tensor, hu: Tensor, mask_bias: Tensor) -> Tensor:
        """c = softmax_t(e_t) h_t for one step: g (B, D) -> (B, enc_dim)."""
        e = self.energy.v(torch.tanh(self.energy.w(g)[:, None] + hu))[..., 0]  # (B, T)
        q = h.new_zeros(h.shape[0], 1, 1)
        k = h.new_zeros(h.shape[0], h.shape[1], 1)  # zero keys: the scores are exactly e + mask
        return naive_attention(q, k, h, (e + mask_bias)[:, None])[:, 0]

    def _run(self, h: Tensor, feat_len: Tensor, steps: int, labels: Tensor | None) -> Tensor:
        b = h.shape[0]
        hu = self.energy.u(h)
        mask_bias = torch.zeros(b, h.shape[1], device=h.device, dtype=h.dtype).masked_fill(
            torch.arange(h.shape[1], device=h.device)[None] >= feat_len.to(h.device)[:, None], NEG)
        hx = h.new_zeros(b, self.cell.hidden_size)
        cx = hx.clone()
        c = h.new_zeros(b, self.enc_dim)
        token = torch.full((b,), self.bos, dtype=torch.long, device=h.device)
        out = []
        for s in range(steps):
            if s > 0:
                token = labels[:, s - 1] if labels is not None else out[-1].argmax(-1)
            inp = torch.cat([self.embed(token), c], -1) if self.input_feeding else self.embed(token)
            hx, cx = self.cell(inp, (hx, cx))
            c = self.attend(hx, h, hu, mask_bias)
            out.append(self.readout(hx, c))
        return torch.stack(out, 1)  # (B, S, V)

    def log_likelihood(self, feats, feat_len, labels, label_len, *, use_max: bool = False) -> Tensor:
        logits = self._run(self.encoder(feats, feat_len), feat_len, labels.shape[1], labels)
        lp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(max=self.n_out - 1)[..., None])[..., 0]
        valid = torch.arange(labels.shape[1], device=labels.device)[None] < label_len.to(labels.device)[:, None]
        return (lp * valid).sum(1)

    @torch.no_grad()
    def greedy(self, feats: Tensor, feat_len: Tensor, max_steps: int) -> Tensor:
        return self._run(self.encoder(feats, feat_len), feat_len, max_steps, None).argmax(-1)


# ---------------------------------------------------------------------------------------
# Metric and Lightning module
# ---------------------------------------------------------------------------------------

def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def cut_at_eos(seq: list[int], eos: int) -> list[int]:
    return seq[: seq.index(eos)] if eos in seq else seq


ARCHS = {"hard_monotonic": HardMonotonicAttention, "global_soft": GlobalSoftAttention}


class LatentAttentionModule(L.LightningModule):
    """Negative log-likelihood per label (hard: exact full sum or Viterbi score; soft: cross
    entropy); tests: label error rate (%) of greedy decoding on the ``iid`` and ``long`` test
    splits, and for the hard model the Viterbi alignment accuracy (fraction of symbols whose
    t_s falls inside the symbol's true frame span)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = ARCHS[cfg.attention](cfg)
        self.eos = vocab_ids(cfg.vocab)[0]

    def _loss(self, batch) -> Tensor:
        ll = self.model.log_likelihood(batch["feats"], batch["feat_len"], batch["labels"], batch["label_len"],
                                       use_max=self.cfg.train_criterion == "viterbi")
        return -ll.sum() / batch["label_len"].sum()

    def training_step(self, batch, _):
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["feat_len"]))
        return loss

    def validation_step(self, batch, _):
        self.log("val/loss", self._loss(batch), batch_size=len(batch["feat_len"]))

    def on_test_epoch_start(self):
        self._acc = {k: [0, 0, 0, 0] for k in ("iid", "long")}  # edits, ref len, aligned-in-span, symbols

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        split = ("iid", "long")[dataloader_idx]
        acc = self._acc[split]
        steps = int(batch["label_len"].max()) * 2 + 2
        hyp = self.model.greedy(batch["feats"], batch["feat_len"], steps).tolist()
        for h, ref, n in zip(hyp, batch["labels"].tolist(), batch["label_len"].tolist()):
            ref = ref[: n - 1]
            acc[0] += edit_distance(cut_at_eos(h, self.eos), ref)
            acc[1] += len(ref)
        if isinstance(self.model, HardMonotonicAttention):
            path, _ = self.model.align(batch["feats"], batch["feat_len"], batch["labels"], batch["label_len"])
            t0 = path[:, :-1] - 1  # 0-based frame of each symbol (EOS excluded)
            ok = (t0 >= batch["seg_start"]) & (t0 < batch["seg_end"]) & (batch["seg_start"] >= 0)
            acc[2] += int(ok.sum())
            acc[3] += int((batch["seg_start"] >= 0).sum())

    def on_test_epoch_end(self):
        for split, (edits, total, inspan, syms) in self._acc.items():
            if total:
                self.log(f"test/ler_{split}", 100.0 * edits / total)
            if syms:
                self.log(f"test/align_acc_{split}", inspan / syms)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)

