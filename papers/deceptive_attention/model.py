"""Deceptive attention (Pruthi, Gupta, Dhingra, Neubig & Lipton, "Learning to Deceive
with Attention-Based Explanations", ACL 2020, arXiv 1909.07913) on its synthetic
sequence-to-sequence tasks.

The paper's delta is one loss term, the attention-mass penalty: with attention weights
alpha over the source and a set I of impermissible source tokens, the training objective
becomes

    L = L_task + R,   R = -lambda * log(1 - sum_{i in I} alpha_i)

For the seq2seq tasks the impermissible token of output step t is the source token that
target t copies (its alignment). Following the official seq2seq training code, the mass
inside the log is the batch mean over target tokens,

    R = -lambda * log(1 - (1/N_trg) * sum_b sum_t sum_s alpha[b,t,s] * I[b,t,s]),

and the reported "attention mass" is the same quantity (in %) on the test set, decoded
greedily. ``deception_penalty`` and ``attention_mass`` implement these two lines; the
rest is a standard attentional GRU encoder-decoder.

Differences from the official model (stated, not hidden): the official code uses additive
(Bahdanau) scoring, feeds the context vector into the decoder GRU and trains with 50%
teacher forcing, which forces a Python loop over target steps. To fit 18 trainings into
a 2-core CPU budget we use Luong-style global attention without input feeding: the
decoder GRU reads the gold previous tokens in one call, its states query the encoder
states through the suite's shared softmax (``repro.blocks.attention.softmax_weights``,
scaled dot product after a learned query projection), and the output reads
[state; context; previous embedding]. The penalty does not depend on these choices.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.attention import softmax_weights

from .data import PAD, SOS


def attention_mass(attn: Tensor, imp: Tensor, trg_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(sum of attention on impermissible tokens, number of target tokens) over a batch.

    attn, imp: (B, T, S); trg_mask: (B, T) bool, True for real (non-pad) output steps.
    """
    mass = (attn * imp * trg_mask[..., None]).sum()
    return mass, trg_mask.sum()


def deception_penalty(attn: Tensor, imp: Tensor, trg_mask: Tensor, lam: float) -> Tensor:
    """R = -lambda * log(1 - mean attention mass on impermissible tokens)."""
    mass, n = attention_mass(attn, imp, trg_mask)
    return -lam * torch.log1p(-mass / n)


class Seq2SeqAttention(nn.Module):
    """Bidirectional-GRU encoder; GRU decoder with global softmax attention over the
    source (Luong et al., 2015 style: the decoder state s_t queries the encoder states,
    the output reads [s_t; context_t; embedding of y_{t-1}]).

    ``forward`` with gold inputs (teacher forcing) runs the decoder GRU over the whole
    target at once and attends for all steps in one batched call; ``greedy`` decodes
    step by step from its own predictions. ``decode_stepwise`` is the step-by-step
    reference of ``forward`` (same outputs and gradients; tested)."""

    def __init__(self, vocab_size: int, emb: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.trg_embed = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.encoder = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.decoder = nn.GRU(emb, hidden, batch_first=True)
        self.query = nn.Linear(hidden, 2 * hidden, bias=False)
        self.out = nn.Linear(hidden + 2 * hidden + emb, vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor]:
        x = self.drop(self.src_embed(src))
        packed = nn.utils.rnn.pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return out, torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=-1)))[None]

    def attend(self, s: Tensor, enc: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Decoder states s (B, T, H) attend to encoder states (B, S, 2H): returns the
        weights (B, T, S) (shared softmax block, one head) and the contexts (B, T, 2H)."""
        a = softmax_weights(self.query(s)[:, None], enc[:, None], src_mask[:, None, None, :])[:, 0]
        return a, a @ enc

    def readout(self, s: Tensor, ctx: Tensor, e: Tensor) -> Tensor:
        return self.out(torch.cat([s, ctx, e], dim=-1))

    def forward(self, src: Tensor, src_len: Tensor, trg: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits (B, T-1, V) for target positions 1..T-1 and the
        attention (B, T-1, S) of each output step."""
        enc, h = self.encode(src, src_len)
        e = self.drop(self.trg_embed(trg[:, :-1]))
        s, _ = self.decoder(e, h)
        a, ctx = self.attend(s, enc, src != PAD)
        return self.readout(s, ctx, e), a

    def decode_stepwise(self, src: Tensor, src_len: Tensor, trg: Tensor | None, steps: int) -> tuple[Tensor, Tensor]:
        """One decoder step at a time, feeding the gold token (``trg`` given) or the
        argmax of the previous step (``trg=None``: greedy decoding from <sos>)."""
        enc, h = self.encode(src, src_len)
        src_mask = src != PAD
        y = torch.full_like(src[:, 0], SOS) if trg is None else trg[:, 0]
        logits, attns = [], []
        for t in range(1, steps + 1):
            e = self.drop(self.trg_embed(y))[:, None]
            s, h = self.decoder(e, h)
            a, ctx = self.attend(s, enc, src_mask)
            o = self.readout(s, ctx, e)[:, 0]
            logits.append(o)
            attns.append(a[:, 0])
            y = o.argmax(-1) if trg is None else trg[:, min(t, trg.shape[1] - 1)]
        return torch.stack(logits, 1), torch.stack(attns, 1)

    def greedy(self, src: Tensor, src_len: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        return self.decode_stepwise(src, src_len, None, steps)


class DeceptiveSeq2Seq(L.LightningModule):
    """Task loss (cross-entropy) + the deception penalty with coefficient ``cfg.lam``.
    Test metrics (greedy decoding, target length given, as in the official evaluation):
    ``test/acc`` token accuracy (%) and ``test/attn_mass`` (%), both over target tokens
    including <eos>."""

    def __init__(self, cfg) -> None:
        super().__init__()
        from .data import N_SPECIAL

        self.cfg = cfg
        self.net = Seq2SeqAttention(cfg.vocab + N_SPECIAL, cfg.emb, cfg.hidden, cfg.dropout)
        self._sums: dict[str, float] = {}

    def _loss(self, batch, greedy: bool = False):
        if greedy:  # test: decode from own predictions for the target's length (official evaluation)
            logits, attn = self.net.greedy(batch["src"], batch["src_len"], batch["trg"].shape[1] - 1)
        else:
            logits, attn = self.net(batch["src"], batch["src_len"], batch["trg"])
        gold = batch["trg"][:, 1:]
        trg_mask = gold != PAD
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=PAD)
        penalty = deception_penalty(attn, batch["imp"], trg_mask, self.cfg.lam)
        return ce, penalty, logits, attn, gold, trg_mask

    def training_step(self, batch, _):
        ce, penalty, _, attn, _, trg_mask = self._loss(batch)
        loss = ce + penalty
        mass, n = attention_mass(attn.detach(), batch["imp"], trg_mask)
        self.log_dict({"train/loss": loss, "train/ce": ce, "train/attn_mass": 100 * mass / n},
                      prog_bar=False, batch_size=len(trg_mask))
        return loss

    def on_test_epoch_start(self):
        self._sums = {"correct": 0.0, "mass": 0.0, "tokens": 0.0}

    def test_step(self, batch, _):
        _, _, logits, attn, gold, trg_mask = self._loss(batch, greedy=True)
        mass, n = attention_mass(attn, batch["imp"], trg_mask)
        self._sums["correct"] += float(((logits.argmax(-1) == gold) & trg_mask).sum())
        self._sums["mass"] += float(mass)
        self._sums["tokens"] += float(n)

    def on_test_epoch_end(self):
        s = self._sums
        self.log("test/acc", 100.0 * s["correct"] / s["tokens"])
        self.log("test/attn_mass", 100.0 * s["mass"] / s["tokens"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)
