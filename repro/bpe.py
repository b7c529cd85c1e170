"""Subword segmentation with a sentencepiece BPE model, trained once and cached.

NMT papers segment words into subword units with byte-pair encoding (Sennrich et al.
2016, "Neural Machine Translation of Rare Words with Subword Units"): a *joint* model
learned on the concatenation of source and target training text (one vocabulary, the
prerequisite for shared embeddings), or one model per language (*separate*). We train
them with sentencepiece (``model_type="bpe"``), the maintained C++ implementation.

A trained model is cached next to the prepared data under a name derived from
(i) every setting that changes the model and (ii) the SHA-256 of the corpus files, so
changing the vocabulary size or the training text never reuses a stale model, and
re-running a recipe never retrains one. Writes are atomic (temporary name, then
rename), so a crash cannot leave a half-written model under the final name.

Ids: ``pad=0, unk=1, bos=2, eos=3`` by default, the convention of
``repro.blocks.seq2seq`` (``pad_id=0``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

SETTINGS_VERSION = 1  # bump when the meaning of a setting changes (invalidates caches)

# The family's special ids, defined here once: ``BPESettings`` defaults to them, and
# ``repro.nmt`` and the NMT recipes import them instead of writing their own copies.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass(frozen=True)
class BPESettings:
    """Everything that changes the trained model (and therefore the cache key).

    ``vocab_size`` is an upper bound when ``hard_vocab_limit`` is False (sentencepiece
    then stops early on a corpus too small for it, as a tiny fixture is)."""

    vocab_size: int = 10_000
    model_type: str = "bpe"  # "bpe" | "unigram" | "char" | "word"
    character_coverage: float = 1.0  # 1.0 keeps every character (European languages)
    hard_vocab_limit: bool = False
    split_digits: bool = False
    byte_fallback: bool = False
    max_sentence_length: int = 4192  # bytes; longer lines are skipped by the trainer
    input_sentence_size: int = 0  # 0: train on every line; N: a random sample of N lines
    seed_sentencepiece_size: int = 1_000_000
    pad_id: int = PAD_ID
    unk_id: int = UNK_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    normalization_rule_name: str = "identity"  # keep the (already tokenised) text as it is

    def __post_init__(self) -> None:
        if self.model_type not in ("bpe", "unigram", "char", "word"):
            raise ValueError(f"unknown sentencepiece model_type {self.model_type!r}")
        if self.vocab_size < 8:
            raise ValueError("vocab_size must be >= 8 (4 special ids plus some pieces)")
        ids = [self.pad_id, self.unk_id, self.bos_id, self.eos_id]
        if len(set(ids)) != 4:
            raise ValueError(f"special ids must differ, got {ids}")

    def trainer_kwargs(self) -> dict:
        return dict(
            vocab_size=self.vocab_size, model_type=self.model_type, character_coverage=self.character_coverage,
            hard_vocab_limit=self.hard_vocab_limit, split_digits=self.split_digits,
            byte_fallback=self.byte_fallback, max_sentence_length=self.max_sentence_length,
            input_sentence_size=self.input_sentence_size, shuffle_input_sentence=True,
            seed_sentencepiece_size=self.seed_sentencepiece_size, pad_id=self.pad_id, unk_id=self.unk_id,
            bos_id=self.bos_id, eos_id=self.eos_id, normalization_rule_name=self.normalization_rule_name,
            num_threads=1,  # one thread: the trained model does not depend on the machine
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(corpus: Sequence[Path | str], settings: BPESettings) -> str:
    """A short hex key of the settings and the corpus contents (file order matters:
    sentencepiece samples lines by position)."""
    payload = {"version": SETTINGS_VERSION, "settings": dataclasses.asdict(settings),
               "corpus": [_sha256(Path(p)) for p in corpus]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class BPEModel:
    """A trained sentencepiece model: ``encode`` text to ids or pieces, ``decode`` back."""

    def __init__(self, model_file: Path | str) -> None:
        import sentencepiece as spm

        self.path = Path(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.path))

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self.sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    def encode(self, text: str | list[str], *, add_bos: bool = False, add_eos: bool = False):
        """Ids of one string (or a list of strings)."""
        return self.sp.encode(text, out_type=int, add_bos=add_bos, add_eos=add_eos)

    def pieces(self, text: str | list[str]):
        return self.sp.encode(text, out_type=str)

    def decode(self, ids: Sequence[int] | list[list[int]]) -> str | list[str]:
        """Text of ids; special ids (pad/bos/eos) are dropped."""
        special = {self.pad_id, self.bos_id, self.eos_id}
        if ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(x) for x in ids]  # type: ignore[arg-type]
        return self.sp.decode([int(i) for i in ids if int(i) not in special])


def train_bpe(corpus: Sequence[Path | str], model_prefix: Path | str, settings: BPESettings = BPESettings()) -> Path:
    """Train a model on the lines of ``corpus`` (several files = their concatenation,
    i.e. a joint model for ``[train.src, train.tgt]``); returns ``<prefix>.model``.
    Written atomically: a temporary prefix, then renamed."""
    import sentencepiece as spm

    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    files = [str(Path(p)) for p in corpus]
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"BPE corpus file {f} does not exist")
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.", dir=prefix.parent))
    try:
        tmp_prefix = tmpdir / "spm"
        spm.SentencePieceTrainer.train(input=",".join(files), model_prefix=str(tmp_prefix), minloglevel=2,
                                       **settings.trainer_kwargs())
        for ext in (".model", ".vocab"):
            os.replace(str(tmp_prefix) + ext, str(prefix) + ext)
    finally:
        for p in tmpdir.glob("*"):
            p.unlink()
        tmpdir.rmdir()
    return Path(str(prefix) + ".model")


def load_or_train(corpus: Sequence[Path | str], cache_dir: Path | str, settings: BPESettings = BPESettings(),
                  name: str = "bpe") -> BPEModel:
    """The cached model for (corpus, settings) under ``cache_dir``, trained on first use.

    The file is ``<cache_dir>/<name>-<key>.model`` with ``key = cache_key(corpus,
    settings)``; a ``.json`` beside it records the settings and corpus files."""
    cache_dir = Path(cache_dir)
    key = cache_key(corpus, settings)
    prefix = cache_dir / f"{name}-{key}"
    model = Path(str(prefix) + ".model")
    if not model.is_file():
        train_bpe(corpus, prefix, settings)
        meta = {"settings": dataclasses.asdict(settings), "corpus": [str(p) for p in corpus], "key": key,
                "version": SETTINGS_VERSION}
        tmp = Path(f"{prefix}.json.tmp{os.getpid()}")  # per process: parallel units may train the same model
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.replace(tmp, str(prefix) + ".json")
    return BPEModel(model)


def joint_bpe(src_file: Path | str, tgt_file: Path | str, cache_dir: Path | str,
              settings: BPESettings = BPESettings()) -> BPEModel:
    """One model learned on source and target training text together (shared vocabulary)."""
    return load_or_train([src_file, tgt_file], cache_dir, settings, name="bpe-joint")


def separate_bpe(src_file: Path | str, tgt_file: Path | str, cache_dir: Path | str,
                 settings: BPESettings = BPESettings()) -> tuple[BPEModel, BPEModel]:
    """One model per language (separate vocabularies)."""
    return (load_or_train([src_file], cache_dir, settings, name="bpe-src"),
            load_or_train([tgt_file], cache_dir, settings, name="bpe-tgt"))


def encode_file(model: BPEModel, lines: Iterable[str], *, add_eos: bool = True) -> list[list[int]]:
    return [model.encode(ln.rstrip("\n"), add_eos=add_eos) for ln in lines]


__all__ = ["PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "BPESettings", "BPEModel", "train_bpe", "load_or_train", "joint_bpe", "separate_bpe", "cache_key",
           "encode_file"]
