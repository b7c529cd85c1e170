r"""The motivating toy task of "Multi-Token Attention" (Golovneva et al., 2025; the
first experiment of the paper; official generator: facebookresearch/RAM,
projects/mta/toy_task/generate_data.py, read for facts only; this is an independent,
vectorised implementation).

One example::

    <bos> d k l s r . g p a m x . r m z t y . ... . b q c e h # a g  g p a m x <eos>
          \____________ n_blocks blocks of N letters _________/  \_/  \_______/
                                                                 query  answer

* every block holds ``N`` distinct letters drawn from the first ``n_letters`` letters
  of the alphabet (26 in the paper); blocks are separated by ``.``;
* the query holds ``L`` distinct letters of one block (the target), in random order;
  no other block contains all ``L`` query letters, so the answer is unique, and all
  blocks of one example are distinct;
* after ``#`` and the query the model must write the whole target block ("query=All"
  in the official README) followed by the end-of-sequence token.

What is predicted and scored (official ``data.py``/``eval.py``: ``src_tgt_format`` with
``no_loss_prompt``): the loss covers only the answer tokens (the ``N`` letters and the
end token); an example counts as an error if the greedy (argmax) prediction of any of
those tokens is wrong under teacher forcing, which is the same as greedy decoding not
reproducing the block exactly.

Official size: N=5, L=2 and 319 characters per example (``pad_len``), i.e. 52 blocks;
with <bos>/<eos> that is the config's ``seq_len: 321``. Contexts are unique over the
whole data set (the official script keys its examples by the context string), so no
test context is seen in training; the first examples go to the test split, as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOS, EOS, SEP, QSEP = 0, 1, 2, 3  # <bos>, <eos>, "." between blocks, "#" before the query
N_SPECIAL = 4
_CHUNK = 2048


def vocab_size(n_letters: int) -> int:
    return N_SPECIAL + n_letters


def seq_len(n_blocks: int, block_len: int, query_len: int) -> int:
    """Tokens per example: <bos>, the blocks and their separators, '#', query, answer, <eos>."""
    return n_blocks * (block_len + 1) + query_len + block_len + 2


def blocks_for_length(chars: int, block_len: int, query_len: int) -> int:
    """Blocks the official generator puts in an example of ``chars`` characters
    (``pad_len``; 319 in the paper): ceil((chars - N - L - 1) / (N + 1))."""
    return math.ceil((chars - block_len - query_len - 1) / (block_len + 1))


@dataclass(frozen=True)
class TaskSpec:
    n_blocks: int = 52
    block_len: int = 5  # N
    query_len: int = 2  # L
    n_letters: int = 26

    def __post_init__(self) -> None:
        if not 1 <= self.query_len <= self.block_len <= self.n_letters:
            raise ValueError("need 1 <= query_len <= block_len <= n_letters")
        if self.n_blocks < 1:
            raise ValueError("need at least one block")
        if N_SPECIAL + self.n_letters > 255:
            raise ValueError("tokens are stored as uint8")

    @property
    def length(self) -> int:
        return seq_len(self.n_blocks, self.block_len, self.query_len)

    @property
    def vocab(self) -> int:
        return vocab_size(self.n_letters)


def _distinct_letters(rng: np.random.Generator, shape: tuple[int, ...], k: int, n: int) -> np.ndarray:
    """``k`` distinct letters out of ``n`` for every index of ``shape`` (random order)."""
    return np.argsort(rng.random((*shape, n)), axis=-1)[..., :k]


def _block_codes(blocks: np.ndarray, n_letters: int) -> np.ndarray:
    """An integer per (ordered) block, so that equal blocks have equal codes."""
    weights = n_letters ** np.arange(blocks.shape[-1], dtype=np.int64)
    return (blocks.astype(np.int64) * weights).sum(-1)


def _bad_blocks(blocks: np.ndarray, target: np.ndarray, query: np.ndarray, n_letters: int) -> np.ndarray:
    """(S, B) True where a block breaks the task's rules: a non-target block containing
    every query letter, or a repeat of an earlier block of the same example."""
    s, b, _ = blocks.shape
    has = (blocks[:, :, :, None] == query[:, None, None, :]).any(axis=2).all(axis=-1)  # (S, B)
    has[np.arange(s), target] = False
    codes = _block_codes(blocks, n_letters)
    order = np.argsort(codes, axis=1, kind="stable")
    sorted_codes = np.take_along_axis(codes, order, axis=1)
    dup_sorted = np.zeros_like(sorted_codes, dtype=bool)
    dup_sorted[:, 1:] = sorted_codes[:, 1:] == sorted_codes[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    # never resample the target: if it equals another block, resample the other one
    tgt_code = codes[np.arange(s), target]
    dup = dup | ((codes == tgt_code[:, None]) & (np.arange(b)[None, :] != target[:, None]))
    dup[np.arange(s), target] = False
    return has | dup


def sample_examples(spec: TaskSpec, n: int, rng: np.random.Generator):
    """``n`` examples as arrays: blocks (n, B, N) letter ids, target block index (n,),
    query letters (n, L)."""
    blocks = _distinct_letters(rng, (n, spec.n_blocks), spec.block_len, spec.n_letters)
    target = rng.integers(0, spec.n_blocks, size=n)
    pos = _distinct_letters(rng, (n,), spec.query_len, spec.block_len)  # which letters of the target
    query = np.take_along_axis(blocks[np.arange(n), target], pos, axis=1)
    rows = np.arange(n)
    while len(rows):  # rejection sampling, as the official generator does block by block
        bad = _bad_blocks(blocks[rows], target[rows], query[rows], spec.n_letters)
        rows = rows[bad.any(axis=1)]  # only rows with a bad block can still be bad
        bad = bad[bad.any(axis=1)]
        if len(rows):
            r, b = np.nonzero(bad)
            blocks[rows[r], b] = _distinct_letters(rng, (len(r),), spec.block_len, spec.n_letters)
    return blocks, target, query


def encode(spec: TaskSpec, blocks: np.ndarray, target: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Token rows (n, spec.length), uint8."""
    n, nb, bl = blocks.shape
    ctx = np.full((n, nb, bl + 1), SEP, dtype=np.uint8)
    ctx[:, :, :bl] = blocks + N_SPECIAL
    ctx = ctx.reshape(n, nb * (bl + 1))[:, :-1]  # no separator after the last block
    answer = blocks[np.arange(n), target] + N_SPECIAL
    cols = [np.full((n, 1), BOS), ctx, np.full((n, 1), QSEP), query + N_SPECIAL, answer, np.full((n, 1), EOS)]
    out = np.concatenate([c.astype(np.uint8) for c in cols], axis=1)
    assert out.shape[1] == spec.length
    return out


def decode(row) -> str:
    """A token row as text (for tests and debugging)."""
    special = {BOS: "<bos>", EOS: "<eos>", SEP: ".", QSEP: "#"}
    return "".join(special.get(int(t), chr(ord("a") + int(t) - N_SPECIAL)) for t in row)


def make_splits(spec: TaskSpec, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Deterministic splits from one seed, contexts unique over all splits. Splits are
    filled in the order of ``sizes`` (test first, as in the official script), so the
    test set does not change when the training set grows."""
    rng = np.random.default_rng(seed)
    total = sum(sizes.values())
    # a 64-bit polynomial hash of the context (the blocks in order); equal contexts hash
    # equally, and a hash collision would only drop a sample, never keep a duplicate
    mult = rng.integers(1, 2**62, size=spec.n_blocks, dtype=np.int64) | 1
    seen: set[int] = set()
    rows: list[np.ndarray] = []
    have = 0
    while have < total:
        # fixed-size chunks: the random stream, hence every split, does not depend on `total`
        blocks, target, query = sample_examples(spec, _CHUNK, rng)
        with np.errstate(over="ignore"):
            keys = (_block_codes(blocks, spec.n_letters) * mult).sum(1)
        keep = []
        for i, key in enumerate(keys.tolist()):
            if key not in seen:
                seen.add(key)
                keep.append(i)
        keep_idx = np.asarray(keep, dtype=np.int64)
        rows.append(encode(spec, blocks[keep_idx], target[keep_idx], query[keep_idx]))
        have += len(keep)
    data = np.concatenate(rows)[:total]
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = data[start:start + size]
        start += size
    return out


def answer_slice(spec: TaskSpec) -> slice:
    """Positions in the *target* sequence (tokens[1:]) that are scored: the answer's N
    letters and <eos>."""
    t = spec.length - 1
    return slice(t - spec.block_len - 1, t)


# --------------------------------------------------------------------------- Lightning


def build_datamodule(cfg):
    """The LightningDataModule for a recipe config (imports Lightning lazily)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from repro.training import SeededRandomSampler

    class FindBlockData(L.LightningDataModule):
        """Train/val/test splits generated from ``cfg.data_seed`` (the same data for
        every run seed, as the paper trains 3 seeds on one generated data set); the
        training order is shuffled with the run's seed."""

        def __init__(self) -> None:
            super().__init__()
            self.cfg = cfg
            self.spec = TaskSpec(cfg.n_blocks, cfg.block_len, cfg.query_len, cfg.n_letters)
            # the runner's seed_everything(seed); reduced so that SeededRandomSampler's
            # seed * 1_000_003 + epoch fits in int64 when torch was never seeded
            self.shuffle_seed = torch.initial_seed() % (2**31)
            self.splits: dict[str, torch.Tensor] | None = None

        def setup(self, stage: str | None = None) -> None:
            if self.splits is None:
                arrays = make_splits(self.spec, {"test": cfg.test_samples, "val": cfg.val_samples,
                                                 "train": cfg.train_samples}, cfg.data_seed)
                self.splits = {k: torch.from_numpy(v) for k, v in arrays.items()}

        def _loader(self, split: str, shuffle: bool) -> DataLoader:
            self.setup()
            ds = TensorDataset(self.splits[split])
            sampler = SeededRandomSampler(len(ds), self.shuffle_seed) if shuffle else None
            bs = cfg.batch_size if shuffle else cfg.eval_batch_size
            return DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=cfg.num_workers)

        def train_dataloader(self):
            return self._loader("train", True)

        def val_dataloader(self):
            return self._loader("val", False)

        def test_dataloader(self):
            return self._loader("test", False)

    return FindBlockData()
