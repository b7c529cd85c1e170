"""A small NMT pipeline on the shared blocks (used by ``rela_sparse_attention`` and ``headmask_nmt``).

Two tasks produce the same batches (``src``, ``tgt`` right-padded; the special ids are
``repro.bpe``'s, the one definition of the family: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>):

* ``toy``: a generated translation language whose gold word alignment is known. A
  source sentence is a sequence of words drawn from ``n_words``; its translation maps
  every word through a fixed random lexicon (a bijection chosen by ``data_seed``) and
  swaps each adjacent pair of words (positions 0<->1, 2<->3, ...), so target word j is
  aligned to source word ``swap(j)``. Words are written ``w<id>`` for BLEU.
* ``corpus``: a parallel text in a ``data_scripts`` layout (``<split>.<lang>`` files, one
  sentence per line), segmented by a joint sentencepiece BPE model trained on the
  training split with ``repro.bpe`` (cached under ``<data_dir>/bpe/``, keyed by its
  settings and the corpus contents); BLEU is computed on the detokenized output against
  the raw reference lines.

``NMTModule`` is a ``TransformerSeq2Seq`` trained with label-smoothed cross-entropy, Adam
and the inverse-square-root schedule of Vaswani et al. (2017, Sec. 5.3); its test loop
decodes (greedy or beam) and logs sacreBLEU and teacher-forced token accuracy. Papers
change it through two hooks: ``configure_attention(net)`` (swap the attention of each
layer) and ``train_head_mask(batch)`` (gate heads during a training step).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset

from repro.blocks.seq2seq import TransformerSeq2Seq, shift_right
from repro.bpe import BOS_ID as BOS
from repro.bpe import EOS_ID as EOS
from repro.bpe import PAD_ID as PAD
from repro.bpe import UNK_ID as UNK
from repro.metrics.text import corpus_bleu
from repro.training import SeededRandomSampler, TokenBatchSampler

FIRST_WORD = max(PAD, UNK, BOS, EOS) + 1  # the toy task's first word id


# --------------------------------------------------------------------------- toy task
def make_toy(n: int, n_words: int, min_len: int, max_len: int, seed: int, lexicon_seed: int) -> dict[str, Tensor]:
    """``n`` pairs: ``src``/``tgt`` (n, max_len + 1) with </s>, ``align`` (n, max_len + 1)
    the gold source position of each target word (-1 at </s> and padding)."""
    g = torch.Generator().manual_seed(lexicon_seed)
    lexicon = torch.randperm(n_words, generator=g) + FIRST_WORD  # source word w -> target word lexicon[w]
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    words = torch.randint(0, n_words, (n, max_len), generator=g)
    pos = torch.arange(max_len + 1)[None, :].expand(n, -1)
    real = pos < lengths[:, None]
    src = torch.full((n, max_len + 1), PAD, dtype=torch.long)
    src[:, :max_len] = words + FIRST_WORD
    src = torch.where(real, src, torch.full_like(src, PAD))
    src[torch.arange(n), lengths] = EOS
    # swap(j): j ^ 1, unless that runs past the sentence end (an odd-length tail stays)
    partner = pos ^ 1
    partner = torch.where(partner < lengths[:, None], partner, pos)
    align = torch.where(real, partner, torch.full_like(pos, -1))
    tgt = torch.full_like(src, PAD)
    gathered = src.gather(1, align.clamp_min(0))
    tgt = torch.where(real, lexicon[(gathered - FIRST_WORD).clamp_min(0)], tgt)
    tgt[torch.arange(n), lengths] = EOS
    return {"src": src, "tgt": tgt, "align": align}


def toy_words(ids) -> str:
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i >= FIRST_WORD:
            out.append(f"w{i - FIRST_WORD}")
    return " ".join(out)


# --------------------------------------------------------------------------- corpus task
def read_lines(path: Path, limit: int = 0) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, ln in enumerate(fh):
            if limit and i >= limit:
                break
            out.append(ln.rstrip("\n"))
    return out


def first_lines(path: Path, n: int, out_dir: Path) -> Path:
    """``path`` itself, or (``n > 0``) a copy of its first ``n`` lines under ``out_dir``
    (written once, atomically), so that a BPE model learned with ``max_train_pairs`` sees
    exactly the training lines the recipe uses."""
    if n <= 0:
        return path
    out = out_dir / f"{path.name}.first{n}"
    if not out.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.write_text("".join(ln + "\n" for ln in read_lines(path, n)), encoding="utf-8")
        os.replace(tmp, out)
    return out


def corpus_bpe(cfg, root: Path):
    """The joint BPE model (``repro.bpe.joint_bpe``, ids ``PAD``/``UNK``/``BOS``/``EOS``)
    of the training split, cached under ``<root>/bpe/``. ``bpe_vocab`` is an upper bound
    (``hard_vocab_limit=False``: tiny fixtures may hold fewer pieces); ``bpe_sentences``
    lines at most are sampled to learn it (0 = all)."""
    from repro.bpe import BPESettings, joint_bpe

    cache = root / "bpe"
    src, tgt = (first_lines(root / f"train.{lang}", cfg.max_train_pairs, cache) for lang in (cfg.src_lang, cfg.tgt_lang))
    return joint_bpe(src, tgt, cache, BPESettings(vocab_size=cfg.bpe_vocab, input_sentence_size=cfg.bpe_sentences))


class _Pairs(Dataset):
    def __init__(self, src: list[list[int]], tgt: list[list[int]]) -> None:
        self.src, self.tgt = src, tgt

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i):
        return {"src": self.src[i], "tgt": self.tgt[i], "idx": i}


class _Rows(Dataset):
    def __init__(self, t: dict[str, Tensor]) -> None:
        self.t = t

    def __len__(self) -> int:
        return len(self.t["src"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.t.items()} | {"idx": i}


def collate(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Right-pad ``src``/``tgt`` (and ``align``) to the longest item."""
    out: dict[str, Tensor] = {}
    for key, fill in (("src", PAD), ("tgt", PAD), ("align", -1)):
        if key not in items[0]:
            continue
        seqs = [torch.as_tensor(it[key]) for it in items]
        if key in ("src", "tgt"):  # trim the toy task's fixed padding
            seqs = [s[: int((s != PAD).sum())] for s in seqs]
        if key == "align":
            n = int(max((s != PAD).sum() for s in (torch.as_tensor(it["tgt"]) for it in items)))
            seqs = [s[:n] for s in seqs]
        width = max(len(s) for s in seqs)
        t = torch.full((len(seqs), width), fill, dtype=torch.long)
        for i, s in enumerate(seqs):
            t[i, : len(s)] = s
        out[key] = t
    out["idx"] = torch.tensor([int(it["idx"]) for it in items])
    return out


def decoder_input(tgt: Tensor) -> Tensor:
    """The target shifted right behind <s> (teacher forcing); </s> is never an input."""
    return shift_right(tgt, BOS, EOS, PAD)


class NMTData(L.LightningDataModule):
    """train / val / test (+ ``importance``: held-out pairs for head-importance scores,
    never the test set). ``refs[split]``: reference strings for BLEU."""

    def __init__(self, cfg, seed: int) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, int(seed)
        self.splits: dict[str, Dataset] = {}
        self.refs: dict[str, list[str]] = {}
        self.vocab_size = 0
        self.sp = None

    # ------------------------------------------------------------------ building
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        (self._setup_toy if self.cfg.task == "toy" else self._setup_corpus)()

    def _setup_toy(self) -> None:
        c = self.cfg
        self.vocab_size = FIRST_WORD + c.n_words
        sizes = {"train": c.train_size, "val": c.val_size, "importance": c.importance_size, "test": c.test_size}
        for k, (split, n) in enumerate(sizes.items()):
            t = make_toy(n, c.n_words, c.min_len, c.max_len, seed=1000 * self.seed + k, lexicon_seed=c.data_seed)
            self.splits[split] = _Rows(t)
            self.refs[split] = [toy_words(row) for row in t["tgt"]]

    def _setup_corpus(self) -> None:
        c = self.cfg
        root = Path(c.data_dir)
        if not c.data_dir or not root.is_dir():
            raise FileNotFoundError(f"corpus task needs data_dir with the prepared dataset, got {c.data_dir!r}")
        s, t = c.src_lang, c.tgt_lang
        train_src = read_lines(root / f"train.{s}", c.max_train_pairs)
        train_tgt = read_lines(root / f"train.{t}", c.max_train_pairs)
        self.sp = corpus_bpe(c, root)
        self.vocab_size = self.sp.vocab_size
        enc = lambda lines: self.sp.encode(lines, add_eos=True)  # noqa: E731
        xs, ys = enc(train_src), enc(train_tgt)
        keep = [i for i in range(len(xs)) if 1 < len(xs[i]) <= c.max_sent_len and 1 < len(ys[i]) <= c.max_sent_len]
        self.splits["train"] = _Pairs([xs[i] for i in keep], [ys[i] for i in keep])
        for split, name in (("val", c.val_set), ("test", c.test_set)):
            src = read_lines(root / f"{name}.{s}", c.max_eval_sents)
            ref = read_lines(root / f"{name}.{t}", c.max_eval_sents)
            # evaluation sentences are never filtered; over-long sources are truncated to the model's limit
            self.splits[split] = _Pairs([x[: c.max_positions - 2] for x in enc(src)],
                                        [y[: c.max_positions - 2] for y in enc(ref)])
            self.refs[split] = ref
        n_imp = min(len(self.splits["val"]), c.importance_size)
        val = self.splits["val"]
        self.splits["importance"] = _Pairs(val.src[:n_imp], val.tgt[:n_imp])

    def detok(self, ids) -> str:
        ids = [int(i) for i in ids]
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        if self.cfg.task == "toy":
            return toy_words(ids)
        return self.sp.decode(ids)

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self):
        ds = self.splits["train"]
        if self.cfg.max_tokens > 0:
            lengths = [max(len(ds[i]["src"]), len(ds[i]["tgt"])) for i in range(len(ds))] \
                if isinstance(ds, _Pairs) else \
                torch.maximum((ds.t["src"] != PAD).sum(1), (ds.t["tgt"] != PAD).sum(1)).tolist()
            sampler = TokenBatchSampler(lengths, self.cfg.max_tokens, seed=self.seed)
        else:
            sampler = BatchSampler(SeededRandomSampler(len(ds), self.seed), self.cfg.batch_size, drop_last=True)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate)

    def loader(self, split: str) -> DataLoader:
        ds = self.splits[split]
        return DataLoader(ds, batch_sampler=BatchSampler(range(len(ds)), self.cfg.eval_batch_size, drop_last=False),
                          collate_fn=collate)

    def val_dataloader(self):
        return self.loader("val")

    def test_dataloader(self):
        return self.loader("test")

    def batches(self, split: str) -> list[dict[str, Tensor]]:
        self.setup()
        return list(self.loader(split))


# --------------------------------------------------------------------------- model
def per_example_loss(net: TransformerSeq2Seq, batch: dict[str, Tensor], head_mask=None,
                     label_smoothing: float = 0.0) -> Tensor:
    """Summed token cross-entropy per example ``(B,)`` (padding excluded)."""
    tgt = batch["tgt"]
    logits = net(batch["src"], decoder_input(tgt), head_mask=head_mask)
    nll = F.cross_entropy(logits.float().transpose(1, 2), tgt, ignore_index=PAD, reduction="none",
                          label_smoothing=label_smoothing)
    return nll.sum(1)


class NMTModule(L.LightningModule):
    def __init__(self, cfg, vocab_size: int, detok=None, refs: list[str] | None = None) -> None:
        super().__init__()
        self.cfg, self.detok, self.refs = cfg, detok, refs
        self.net = TransformerSeq2Seq(
            vocab_size, vocab_size, dim=cfg.dim, heads=cfg.heads, encoder_layers=cfg.layers,
            decoder_layers=cfg.layers, ffn_dim=cfg.ffn_dim, dropout=cfg.dropout, attn_dropout=cfg.attn_dropout,
            norm_first=cfg.norm_first, share_embeddings=True, pad_id=PAD, max_positions=cfg.max_positions)
        self.configure_attention(self.net)
        self._hyps: dict[int, str] = {}
        self._acc = [0, 0]

    # hooks ------------------------------------------------------------------
    def configure_attention(self, net: TransformerSeq2Seq) -> None:
        """Swap attention kernels (default: the standard SDPA softmax path)."""

    def train_head_mask(self, batch: dict[str, Tensor]):
        """A head mask for this training step (default: none)."""
        return None

    # training ---------------------------------------------------------------
    def training_step(self, batch, _):
        mask = self.train_head_mask(batch)
        ntok = (batch["tgt"] != PAD).sum()
        loss = per_example_loss(self.net, batch, mask, self.cfg.label_smoothing).sum() / ntok
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=batch["tgt"].shape[0])
        return loss

    def validation_step(self, batch, _):
        ntok = (batch["tgt"] != PAD).sum()
        self.log("val/loss", per_example_loss(self.net, batch).sum() / ntok, batch_size=batch["tgt"].shape[0])

    def on_test_epoch_start(self):
        self._hyps, self._acc = {}, [0, 0]

    def test_step(self, batch, _):
        tgt = batch["tgt"]
        pred = self.net(batch["src"], decoder_input(tgt)).argmax(-1)
        real = tgt != PAD
        self._acc[0] += int(((pred == tgt) & real).sum())
        self._acc[1] += int(real.sum())
        if self.detok is not None:
            hyps = self.net.generate(batch["src"], bos=BOS, eos=EOS, beam_size=self.cfg.beam_size,
                                     alpha=self.cfg.lenpen, max_len_a=self.cfg.max_len_a,
                                     max_len_b=self.cfg.max_len_b)
            for i, h in zip(batch["idx"].tolist(), hyps):
                self._hyps[i] = self.detok(h[0].tokens)

    def on_test_epoch_end(self):
        self.log("test/token_acc", 100.0 * self._acc[0] / max(self._acc[1], 1))
        if self.refs is not None and self._hyps:
            order = sorted(self._hyps)
            hyps = [self._hyps[i] for i in order]
            refs = [self.refs[i] for i in order]
            bleu = corpus_bleu(hyps, refs, tokenize=self.cfg.bleu_tokenize)
            self.bleu_signature = bleu.signature
            self.log("test/bleu", bleu.score)
            self.log("test/exact_match", 100.0 * sum(h == r for h, r in zip(hyps, refs)) / len(refs))

    def configure_optimizers(self):
        c = self.cfg
        opt = torch.optim.Adam(self.parameters(), lr=c.lr, betas=(0.9, 0.98), eps=1e-9)
        warm = max(1, c.warmup_steps)

        def inverse_sqrt(step: int) -> float:  # linear warm-up to lr, then lr * sqrt(warm / step)
            step = step + 1
            return step / warm if step < warm else math.sqrt(warm / step)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, inverse_sqrt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
