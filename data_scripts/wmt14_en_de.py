"""WMT'14 English-German as preprocessed by the Stanford NLP group for Luong, Pham &
Manning (EMNLP 2015), from https://nlp.stanford.edu/projects/nmt/ ("WMT'14
English-German data [Medium]").

The files are already tokenized (one sentence per line, tokens separated by spaces):

* ``train.en`` / ``train.de``: the WMT'14 training data, 4.5M sentence pairs (paper,
  Section 4.1: "4.5M sentences pairs (116M English words, 110M German words)");
* ``newstest2012-2015.{en,de}``: newstest2013 is the paper's development set (3000
  sentences), newstest2014 (2737 sentences: the Stanford copy, not the 3003-sentence
  official set) and newstest2015 (2169 sentences) its test sets (Section 4);
* ``vocab.50K.{en,de}``: the top 50K most frequent words of each language;
* ``dict.en-de``: a word dictionary extracted from alignments (used by unk replacement).

The publisher gives no checksums and no file sizes, so ``verify`` checks what the
paper states: the three test-set line counts above, 4.4-4.6M training pairs, matching
English/German line counts for every pair of files (a truncated download breaks this),
vocabularies of about 50K lines and a readable dictionary. It says so when it fails.

Prepared layout (the recipe reads it): the downloaded files under their own names in the
dataset folder, plus ``meta.json`` (line counts, fixture flag). Nothing is copied: the
raw files *are* the layout. ``make_fixture`` writes the same 14 file names with tiny
real English-German phrase pairs from ``pycountry``'s gettext catalogues (country,
currency and language names) and a small template grammar around them.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

from data_scripts.common import DatasetInfo, RemoteFile, download as fetch
from repro.errors import ChecksumError, DataMissing

BASE_URL = "https://nlp.stanford.edu/projects/nmt/data/wmt14.en-de/"
SPLITS = ("train", "newstest2012", "newstest2013", "newstest2014", "newstest2015")
LANGS = ("en", "de")
VOCABS = ("vocab.50K.en", "vocab.50K.de")
DICT = "dict.en-de"
FILES = tuple(f"{s}.{lang}" for s in SPLITS for lang in LANGS) + VOCABS + (DICT,)
META = "meta.json"
FIXTURE_MARK = ".fixture"  # a synthetic stand-in: the real line counts are not checked

# Line counts stated by the paper (Section 4). newstest2012's Stanford copy has no
# published count (only en/de equality is checked for it).
EXPECTED_LINES = {"newstest2013": 3000, "newstest2014": 2737, "newstest2015": 2169}
TRAIN_RANGE = (4_400_000, 4_600_000)  # "4.5M sentence pairs" (a third-party script uses 4,468,840)
VOCAB_RANGE = (49_990, 50_010)  # "top 50K most frequent words"; exact count incl. specials not published

INFO = DatasetInfo(
    name="wmt14_en_de",
    description="WMT'14 English-German, Stanford preprocessed (tokenized) text: 4.5M train pairs, "
                "newstest2012-2015, 50K vocabularies, alignment dictionary",
    homepage="https://nlp.stanford.edu/projects/nmt/",
    licence="WMT'14 shared-task data (Europarl, Common Crawl, News Commentary): research use under the "
            "original corpora's terms; preprocessing by the Stanford NLP group",
    size="~1.4 GB",
    files=tuple(RemoteFile(BASE_URL + name, name) for name in FILES),
    layout=FILES + (META,),
    used_by=("luong_attention_nmt",),
)


# --------------------------------------------------------------------------- contract


def download(root: Path) -> None:
    """Fetch the 14 files into ``root`` (resumable ``.part`` files; no checksums exist)."""
    for remote in INFO.files:
        fetch(remote, root)


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def is_fixture(root: Path) -> bool:
    return (Path(root) / FIXTURE_MARK).exists()


def verify(root: Path) -> dict[str, int]:
    """Check presence, paired line counts and the paper's counts; returns the counts.

    No checksums are published for these files, so this is the strongest check
    available: a truncated or partial file shows up as an English/German mismatch or
    as a count that differs from the paper's."""
    root = Path(root)
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        raise DataMissing(f"wmt14_en_de: {', '.join(missing)} missing under {root}",
                          hint="repro data download wmt14_en_de")
    counts = {f: count_lines(root / f) for f in FILES}
    fixture = is_fixture(root)
    why = " (the publisher gives no checksums; line counts are the check)"
    for split in SPLITS:
        en, de = counts[f"{split}.en"], counts[f"{split}.de"]
        if en == 0 or en != de:
            raise ChecksumError(f"wmt14_en_de: {split}.en has {en} lines but {split}.de has {de}: truncated or "
                                f"corrupt download{why}; delete the file and run `repro data download wmt14_en_de`")
        if fixture:
            continue
        want = EXPECTED_LINES.get(split)
        if want is not None and en != want:
            raise ChecksumError(f"wmt14_en_de: {split} has {en} lines, the paper states {want}{why}")
        if split == "train" and not TRAIN_RANGE[0] <= en <= TRAIN_RANGE[1]:
            raise ChecksumError(f"wmt14_en_de: train has {en} lines, expected about 4.5M{why}")
    for v in VOCABS:
        lo, hi = (1, 10**9) if fixture else VOCAB_RANGE
        if not lo <= counts[v] <= hi:
            raise ChecksumError(f"wmt14_en_de: {v} has {counts[v]} lines, expected about 50,000{why}")
    with open(root / DICT, encoding="utf-8", errors="replace") as fh:
        head = [ln for _, ln in zip(range(1000), fh) if ln.strip()]
    if not head or any(len(ln.split()) < 2 for ln in head):
        raise ChecksumError(f"wmt14_en_de: {DICT} is empty or not 'source target' pairs{why}")
    return counts


def prepare(root: Path) -> None:
    """The downloaded files are the layout; record their line counts in ``meta.json``."""
    root = Path(root)
    counts = verify(root)
    meta = {"dataset": "wmt14_en_de", "fixture": is_fixture(root), "lines": counts,
            "source": BASE_URL, "tokenized": True}
    tmp = root / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(root / META)


# --------------------------------------------------------------------------- fixture

_TOKEN = re.compile(r"[\w\-]+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Split words from punctuation (a stand-in for tokenizer.perl on short names)."""
    return _TOKEN.findall(text)


def pycountry_pairs() -> list[tuple[str, str, str]]:
    """(kind, English, German) name pairs from pycountry's German gettext catalogues,
    in a fixed order: countries (ISO 3166-1), currencies (ISO 4217) and the languages
    (ISO 639-3) whose German name differs from the English one."""
    import gettext

    import pycountry

    out: list[tuple[str, str, str]] = []
    for domain, db, kind, keep_same in (("iso3166-1", pycountry.countries, "country", True),
                                        ("iso4217", pycountry.currencies, "currency", True),
                                        ("iso639-3", pycountry.languages, "language", False)):
        tr = gettext.translation(domain, pycountry.LOCALES_DIR, languages=["de"], fallback=True)
        for rec in sorted(db, key=lambda r: r.alpha_3 if hasattr(r, "alpha_3") else r.name):
            en = rec.name
            de = tr.gettext(en)
            if de == en and not keep_same:
                continue
            out.append((kind, en, de))
    return out


_TEMPLATES = {
    "country": [("I live in {} .", "Ich wohne in {} ."), ("{} is a country .", "{} ist ein Land ."),
                ("we travel to {} tomorrow .", "wir reisen morgen nach {} .")],
    "currency": [("they pay in {} .", "sie zahlen in {} ."), ("the {} is a currency .", "der {} ist eine Währung .")],
    "language": [("she speaks {} .", "sie spricht {} ."), ("{} is a language .", "{} ist eine Sprache .")],
}


def _fixture_corpus(seed: int = 36) -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    pairs = pycountry_pairs()
    bare = [(" ".join(tokenize(en)), " ".join(tokenize(de)), kind) for kind, en, de in pairs]
    # keep it tiny: every country and currency, a sample of languages
    langs = [p for p in bare if p[2] == "language"]
    keep = [p for p in bare if p[2] != "language"] + rng.sample(langs, min(120, len(langs)))
    rng.shuffle(keep)

    def sentence(p):
        en_t, de_t = rng.choice(_TEMPLATES[p[2]])
        return en_t.format(p[0]), de_t.format(p[1])

    held = keep[:80]  # names that test sentences use; half of them never occur in training
    train = [(en, de) for en, de, _ in keep[40:]] + [sentence(p) for p in keep[40:] if rng.random() < 0.6]
    rng.shuffle(train)
    out = {"train": train}
    for i, split in enumerate(SPLITS[1:]):
        pick = [held[(i * 11 + j * 7) % len(held)] for j in range(24)]
        out[split] = [sentence(p) for p in pick]
    return out


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")


def make_fixture(root: Path) -> None:
    """A deterministic stand-in in the real layout (same 14 file names): ~500 training
    pairs of real English/German names and template sentences, 24 test sentences per
    newstest file, vocabularies of the words seen twice or more in training (so that
    test sentences contain <unk>s), and a dictionary of one-word name pairs."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    corpus = _fixture_corpus()
    for split, pairs in corpus.items():
        _write_lines(root / f"{split}.en", [en for en, _ in pairs])
        _write_lines(root / f"{split}.de", [de for _, de in pairs])
    for lang, idx in (("en", 0), ("de", 1)):
        counts = Counter(w for p in corpus["train"] for w in p[idx].split())
        words = sorted((w for w, c in counts.items() if c >= 2), key=lambda w: (-counts[w], w))
        _write_lines(root / f"vocab.50K.{lang}", ["<unk>", "<s>", "</s>"] + words)
    single = sorted({(en, de) for kind, en, de in pycountry_pairs()
                     if len(tokenize(en)) == 1 and len(tokenize(de)) == 1})
    _write_lines(root / DICT, [f"{en} {de}" for en, de in single])
    (root / FIXTURE_MARK).write_text("synthetic stand-in built by data_scripts/wmt14_en_de.py\n")
