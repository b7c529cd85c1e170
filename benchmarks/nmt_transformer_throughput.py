"""Training throughput of ``repro.blocks.seq2seq.TransformerSeq2Seq`` against a plain
``torch.nn.Transformer`` of the same size, measured in the same process.

Both models get the same scaled embeddings + sinusoidal positions, the same tied output
projection, cross-entropy loss and Adam step, the same batch (right-padded, with
source/target padding masks and a causal decoder) and the same dropout (residual, FFN and
attention weights). Post-norm for both (``nn.Transformer``'s default; it adds a final
LayerNorm to each stack even then, which ours does only for pre-norm). Steps alternate
between the two models, ``--repeats`` timings of ``--steps`` steps each after warm-up;
the median is reported as target tokens per second (non-padding target tokens, like
fairseq's "wps").

    python benchmarks/nmt_transformer_throughput.py --threads 1 --steps 20
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from repro.blocks.seq2seq import TransformerSeq2Seq
from repro.blocks.transformer import sinusoidal_positions
from repro.bpe import BOS_ID as BOS
from repro.bpe import PAD_ID as PAD


class TorchTransformerNMT(nn.Module):
    """``nn.Transformer`` with the embeddings and output layer of ``TransformerSeq2Seq``."""

    def __init__(self, vocab, dim, heads, layers, ffn, dropout, norm_first):
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0.0, dim ** -0.5)
        self.core = nn.Transformer(dim, heads, layers, layers, ffn, dropout, batch_first=True, norm_first=norm_first)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_positions(1024, dim), persistent=False)

    def emb(self, x):
        return self.drop(self.embed(x) * math.sqrt(self.dim) + self.pe[: x.shape[1]])

    def forward(self, src, prev):
        causal = nn.Transformer.generate_square_subsequent_mask(prev.shape[1], dtype=torch.bool)
        pad = src == PAD
        h = self.core(self.emb(src), self.emb(prev), tgt_mask=causal, src_key_padding_mask=pad,
                      memory_key_padding_mask=pad, tgt_is_causal=True)
        return F.linear(h, self.embed.weight)


def make_batch(batch, src_len, tgt_len, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(2, vocab, (batch, src_len), generator=g)
    tgt = torch.randint(2, vocab, (batch, tgt_len + 1), generator=g)
    for i in range(batch):  # right padding: lengths between half and full
        src[i, torch.randint(src_len // 2, src_len + 1, (1,), generator=g).item():] = PAD
        tgt[i, torch.randint(tgt_len // 2, tgt_len + 1, (1,), generator=g).item() + 1:] = PAD
    tgt[:, 0] = BOS
    return src, tgt[:, :-1], tgt[:, 1:]


def train_steps(model, opt, batch, n):
    src, prev, gold = batch
    for _ in range(n):
        logits = model(src, prev)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="training steps per timed repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--src-len", type=int, default=24)
    p.add_argument("--tgt-len", type=int, default=24)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--norm-first", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ours = TransformerSeq2Seq(a.vocab, a.vocab, a.dim, a.heads, a.layers, a.layers, a.ffn, a.dropout,
                              attn_dropout=a.dropout, norm_first=a.norm_first, share_embeddings=True).train()
    base = TorchTransformerNMT(a.vocab, a.dim, a.heads, a.layers, a.ffn, a.dropout, a.norm_first).train()
    models = {"repro TransformerSeq2Seq": ours, "torch.nn.Transformer": base}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    batch = make_batch(a.batch, a.src_len, a.tgt_len, a.vocab, seed=0)
    tokens = int((batch[2] != PAD).sum()) * a.steps
    for k, m in models.items():
        train_steps(m, opts[k], batch, a.warmup)
    times = {k: [] for k in models}
    for _ in range(a.repeats):
        for k, m in models.items():  # interleaved, so drift hits both
            t0 = time.perf_counter()
            train_steps(m, opts[k], batch, a.steps)
            times[k].append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}, {a.threads} thread(s); d={a.dim} heads={a.heads} layers={a.layers}+{a.layers} "
          f"ffn={a.ffn} vocab={a.vocab} batch={a.batch}x({a.src_len},{a.tgt_len}) dropout={a.dropout} "
          f"{'pre' if a.norm_first else 'post'}-norm; {a.repeats} x {a.steps} steps")
    tps = {}
    for k, m in models.items():
        tps[k] = tokens / statistics.median(times[k])
        n = sum(p.numel() for p in m.parameters())
        print(f"  {k:26s} {tps[k]:10.0f} target tokens/s  (median of {[round(t, 3) for t in times[k]]} s; "
              f"{n} parameters)")
    ratio = tps["repro TransformerSeq2Seq"] / tps["torch.nn.Transformer"]
    print(f"ratio repro / torch.nn.Transformer: {ratio:.3f}x (target >= 1.0x)")
    return ratio


if __name__ == "__main__":
    main()
