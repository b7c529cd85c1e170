"""Shared pieces of the captioning family (Show, Attend and Tell; Bottom-Up and
Top-Down): the vocabulary, additive ("MLP") attention over image regions, beam search
over any step function, caption datasets in the prepared caption-json layout, and a
LightningModule base that trains with teacher forcing and tests with beam search
through the coco-caption scorers (``repro.metrics.caption``).

Each paper's ``model.py`` states only its decoder step (its equations); everything here
is the common machinery both papers describe in the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
TEST_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")

# --------------------------------------------------------------------------- vocabulary


class Vocab:
    """Word <-> id, with <pad>=0, <bos>=1, <eos>=2, <unk>=3 before the words."""

    def __init__(self, words: Sequence[str], max_words: int | None = None) -> None:
        words = [w for w in words if w not in SPECIALS]
        if max_words is not None:
            words = words[:max_words]
        self.itos = list(SPECIALS) + list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def from_file(cls, path: Path, max_words: int | None = None) -> "Vocab":
        return cls(json.loads(Path(path).read_text())["words"], max_words)

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        """<bos> w1 .. wn <eos>, the words truncated to ``max_len``."""
        return [BOS] + [self.stoi.get(t, UNK) for t in tokens[:max_len]] + [EOS]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i])
        return " ".join(out)


# --------------------------------------------------------------------------- attention


class AdditiveAttention(nn.Module):
    """Additive attention over a set of region features (Bahdanau-style "MLP" attention):

        e_i = w^T tanh(W_v v_i + W_h h),   alpha = softmax(e),   context = sum_i alpha_i v_i

    This is f_att of Show, Attend and Tell (Section 3.1.2, eq. 4-6) and the top-down
    attention of Up-Down (Section 3.2.1, eq. 3-5). ``project`` computes W_v v once per
    image (it does not depend on the step); ``mask`` (B, L) marks real regions.
    """

    def __init__(self, feat_dim: int, query_dim: int, hidden: int) -> None:
        super().__init__()
        self.feat_proj = nn.Linear(feat_dim, hidden)
        self.query_proj = nn.Linear(query_dim, hidden, bias=False)
        self.score = nn.Linear(hidden, 1)

    def project(self, feats: Tensor) -> Tensor:
        return self.feat_proj(feats)

    def logits(self, proj: Tensor, query: Tensor, mask: Tensor | None = None) -> Tensor:
        e = self.score(torch.tanh(proj + self.query_proj(query).unsqueeze(1))).squeeze(-1)
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))
        return e

    def forward(self, feats: Tensor, proj: Tensor, query: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        alpha = torch.softmax(self.logits(proj, query, mask), dim=-1)
        return torch.bmm(alpha.unsqueeze(1), feats).squeeze(1), alpha


def masked_mean(feats: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over real regions, (B, L, D) -> (B, D)."""
    if mask is None:
        return feats.mean(1)
    m = mask.to(feats.dtype).unsqueeze(-1)
    return (feats * m).sum(1) / m.sum(1).clamp_min(1.0)


# --------------------------------------------------------------------------- beam search

State = dict[str, Tensor]
StepFn = Callable[[Tensor, State], tuple[Tensor, State]]


@dataclass
class BeamResult:
    tokens: Tensor  # (B, T) best sequence per item, without <bos>, PAD after <eos>
    scores: Tensor  # (B,) its total log-probability
    all_tokens: Tensor  # (B, K, T) every beam, best first
    all_scores: Tensor  # (B, K)


def _reorder(state: State, index: Tensor) -> State:
    return {k: v.index_select(0, index) for k, v in state.items()}


def beam_search(step: StepFn, state: State, batch: int, *, beam_size: int, max_len: int,
                length_norm: bool = False) -> BeamResult:
    """Beam search over ``step(tokens (N,), state) -> (log-probs (N, V), state)``.

    ``state`` holds tensors with leading dimension ``batch``; they are repeated for the
    beams and reordered as beams are chosen. A beam that emitted <eos> stays in the
    beam with its score frozen (it can only extend with <eos>, at log-prob 0), so
    finished and unfinished hypotheses compete on total log-probability. With
    ``length_norm`` the final ranking divides by the length (words + <eos>), as
    arctic-captions' ``generate_caps.py --normalize`` does; the search itself does not.
    ``beam_size=1`` is greedy decoding.
    """
    k = beam_size
    dev = next(iter(state.values())).device
    state = {n: v.repeat_interleave(k, 0) for n, v in state.items()}
    tokens = torch.full((batch * k,), BOS, dtype=torch.long, device=dev)
    scores = torch.full((batch, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one live copy
    done = torch.zeros(batch, k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(batch, k, device=dev)
    seqs = torch.empty(batch, k, 0, dtype=torch.long, device=dev)
    base = (torch.arange(batch, device=dev) * k).unsqueeze(1)
    for _ in range(max_len):
        logp, state = step(tokens, state)
        v = logp.shape[-1]
        logp = logp.view(batch, k, v)
        frozen = torch.full_like(logp, float("-inf"))
        frozen[..., EOS] = 0.0
        logp = torch.where(done.unsqueeze(-1), frozen, logp)
        cand = (scores.unsqueeze(-1) + logp).view(batch, k * v)
        scores, idx = cand.topk(k, dim=-1)
        beam, word = idx // v, idx % v
        flat = (base + beam).view(-1)
        state = _reorder(state, flat)
        prev_done = done.gather(1, beam)
        seqs = torch.cat([seqs.gather(1, beam.unsqueeze(-1).expand(-1, -1, seqs.shape[-1])),
                          torch.where(prev_done, torch.full_like(word, PAD), word).unsqueeze(-1)], dim=-1)
        lengths = lengths.gather(1, beam) + (~prev_done).float()
        done = prev_done | (word == EOS)
        tokens = word.view(-1)
        if bool(done.all()):
            break
    rank = scores / lengths.clamp_min(1.0) if length_norm else scores
    order = rank.argsort(dim=-1, descending=True)
    all_tokens = seqs.gather(1, order.unsqueeze(-1).expand(-1, -1, seqs.shape[-1]))
    all_scores = scores.gather(1, order)
    return BeamResult(all_tokens[:, 0], all_scores[:, 0], all_tokens, all_scores)


# --------------------------------------------------------------------------- data


class CaptionSet(Dataset):
    """Items for training (one per image-caption pair) or evaluation (one per image).

    ``visual(i)`` returns image i's input (an image tensor, or region features with a
    mask); ``refs[i]`` its raw reference captions; ``tokens[i]`` their tokenised form.
    ``extra(i)`` may add per-image tensors (e.g. object boxes for attention analysis).
    """

    def __init__(self, visual: Callable[[int], dict[str, Tensor]], refs: list[list[str]],
                 tokens: list[list[list[str]]], vocab: Vocab, max_len: int, per_caption: bool,
                 ids: Sequence[int] | None = None) -> None:
        self.visual, self.refs, self.tokens, self.vocab, self.max_len = visual, refs, tokens, vocab, max_len
        self.ids = list(ids) if ids is not None else list(range(len(refs)))
        self.index = [(i, j) for i in range(len(refs)) for j in range(len(tokens[i]))] if per_caption \
            else [(i, 0) for i in range(len(refs))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, n: int) -> dict[str, Any]:
        i, j = self.index[n]
        ids = self.vocab.encode(self.tokens[i][j], self.max_len)
        item = dict(self.visual(i))
        item.update(caption=torch.tensor(ids, dtype=torch.long), refs=self.refs[i], image_id=self.ids[i], row=i)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if key == "caption":
            out[key] = nn.utils.rnn.pad_sequence(vals, batch_first=True, padding_value=PAD)
        elif isinstance(vals[0], Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], (int, float)):
            out[key] = torch.tensor(vals)
        else:
            out[key] = vals
    return out


def split_indices(images: list[dict], split: str) -> list[int]:
    return [i for i, im in enumerate(images) if im["split"] == split]


class CaptionDataModule(L.LightningDataModule):
    """Train (shuffled by ``SeededRandomSampler``), val and test loaders over three
    ``CaptionSet`` builders: ``make(split, per_caption)``."""

    def __init__(self, make: Callable[[str, bool], CaptionSet], batch_size: int, eval_batch_size: int,
                 seed: int, num_workers: int = 0) -> None:
        super().__init__()
        self.make, self.batch_size, self.eval_batch_size = make, batch_size, eval_batch_size
        self.seed, self.num_workers = seed, num_workers
        self.sets: dict[str, CaptionSet] = {}

    def setup(self, stage: str | None = None) -> None:
        for split, per_caption in (("train", True), ("val", True), ("test", False)):
            if split not in self.sets:
                self.sets[split] = self.make(split, per_caption)

    def train_dataloader(self):
        from repro.training import SeededRandomSampler

        ds = self.sets["train"]
        return DataLoader(ds, batch_size=self.batch_size, sampler=SeededRandomSampler(len(ds), self.seed),
                          collate_fn=collate, num_workers=self.num_workers)

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=self.eval_batch_size, collate_fn=collate,
                          num_workers=self.num_workers)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=self.eval_batch_size, collate_fn=collate,
                          num_workers=self.num_workers)


def load_image(path: Path, size: int) -> Tensor:
    """An RGB image resized to size x size, ImageNet-normalised, (3, size, size)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BICUBIC)
        x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3)
    x = x.permute(2, 0, 1).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------- module


class CaptionModule(L.LightningModule):
    """Teacher-forced cross-entropy training; beam-search testing scored with
    coco-caption. Subclasses define the paper's model:

    * ``encode(batch) -> dict`` of per-image tensors (leading dim B) the decoder reads;
    * ``init_state(enc) -> dict`` of recurrent state tensors;
    * ``step(word (N,), state, enc) -> (logits (N, V), state, alpha (N, L) | None)``.

    ``extra_loss(alphas, batch)`` adds a regulariser (e.g. doubly stochastic attention).
    """

    def __init__(self, vocab: Vocab, lr: float, beam_size: int, max_len: int, meteor: bool = True,
                 spice: bool = False, weight_decay: float = 0.0, torch_threads: int = 0) -> None:
        super().__init__()
        self.vocab = vocab
        self.torch_threads = torch_threads
        self._saved_threads: int | None = None
        self.lr, self.beam_size, self.max_len = lr, beam_size, max_len
        self.meteor, self.spice, self.weight_decay = meteor, spice, weight_decay
        self._hyps: dict[Any, str] = {}
        self._refs: dict[Any, list[str]] = {}

    # -- to implement
    def encode(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError

    def init_state(self, enc: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def step(self, word: Tensor, state: dict[str, Tensor], enc: dict[str, Tensor]):
        raise NotImplementedError

    def extra_loss(self, alphas: Tensor | None, batch: dict[str, Any], out: dict[str, Any]) -> Tensor | None:
        return None

    # -- threads: small recurrent models run faster (and far more steadily on a loaded
    # 2-core machine) on one intra-op thread; restored when the stage ends
    def setup(self, stage: str) -> None:
        if self.torch_threads > 0 and self._saved_threads is None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.torch_threads)

    def teardown(self, stage: str) -> None:
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    # -- shared
    def teacher_forced(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Logits for every target word given the previous ground-truth words."""
        enc = self.encode(batch)
        state = self.init_state(enc)
        cap = batch["caption"]
        logits, alphas = [], []
        for t in range(cap.shape[1] - 1):
            lo, state, alpha = self.step(cap[:, t], state, enc)
            logits.append(lo)
            if alpha is not None:
                alphas.append(alpha)
        return {"logits": torch.stack(logits, 1), "alphas": torch.stack(alphas, 1) if alphas else None,
                "targets": cap[:, 1:], "enc": enc}

    def nll(self, out: dict[str, Any]) -> Tensor:
        """Cross-entropy of the target words, summed over the caption, mean over the batch."""
        lo, tg = out["logits"], out["targets"]
        per_tok = F.cross_entropy(lo.reshape(-1, lo.shape[-1]), tg.reshape(-1), ignore_index=PAD, reduction="none")
        return per_tok.view(tg.shape).sum(1).mean()

    def training_step(self, batch, batch_idx):
        out = self.teacher_forced(batch)
        loss = self.nll(out)
        extra = self.extra_loss(out["alphas"], batch, out)
        if extra is not None:
            self.log("train/reg", extra.detach(), batch_size=len(batch["refs"]))
            loss = loss + extra
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["refs"]))
        return loss

    def validation_step(self, batch, batch_idx):
        out = self.teacher_forced(batch)
        self.log("val/loss", self.nll(out), batch_size=len(batch["refs"]))

    def decode(self, batch: dict[str, Any], beam_size: int | None = None) -> BeamResult:
        enc = self.encode(batch)
        state = {**{f"s.{k}": v for k, v in self.init_state(enc).items()}, **{f"e.{k}": v for k, v in enc.items()}}

        def fn(word: Tensor, st: State):
            e = {k[2:]: v for k, v in st.items() if k.startswith("e.")}
            s = {k[2:]: v for k, v in st.items() if k.startswith("s.")}
            lo, s, _ = self.step(word, s, e)
            return torch.log_softmax(lo.float(), -1), {**{f"s.{k}": v for k, v in s.items()},
                                                       **{f"e.{k}": v for k, v in e.items()}}

        return beam_search(fn, state, len(batch["refs"]), beam_size=beam_size or self.beam_size,
                           max_len=self.max_len + 1)

    def on_test_epoch_start(self) -> None:
        self._hyps, self._refs = {}, {}

    def test_step(self, batch, batch_idx):
        res = self.decode(batch)
        for img, toks, refs in zip(batch["image_id"].tolist(), res.tokens.tolist(), batch["refs"]):
            self._hyps[img] = self.vocab.decode(toks)
            self._refs[img] = list(refs)

    def score(self, hyps: dict, refs: dict) -> dict[str, float]:
        from repro.metrics.caption import score_captions

        return score_captions(refs, hyps, meteor=self.meteor, spice=self.spice)

    def on_test_epoch_end(self) -> None:
        if not self._hyps:
            return
        for k, v in self.score(self._hyps, self._refs).items():
            self.log(f"test/{k}", v)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
