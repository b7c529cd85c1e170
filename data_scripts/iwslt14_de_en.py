"""IWSLT'14 German-English (TED talks), prepared the way fairseq's
``examples/translation/prepare-iwslt14.sh`` prepares it, the setting of most IWSLT'14
De-En results (Michel et al. 2019, the Transformer baselines of many attention papers).

Raw data: the WIT3 release ``de-en.tgz`` (2014-01 texts), mirrored by fairseq at
``https://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz`` (the WIT3 original is
no longer served). The publisher gives no checksum, so ``INFO.files`` carries none and
``verify``/``prepare`` check what is known instead (below).

Preparation (our own Python; the steps of the fairseq script):

1. training text ``train.tags.de-en.{de,en}``: drop the metadata lines holding
   ``<url>``, ``<talkid>`` or ``<keywords>``; strip the ``<title>``/``<description>``
   tags but keep their text; Moses-tokenise each side (``tokenizer.perl -l <lang>``,
   default escaping; here ``sacremoses``, the Python port);
2. clean the pairs as ``clean-corpus-n.perl -ratio 1.5 ... 1 175``: keep a pair when
   both sides have 1-175 tokens and neither side is more than 1.5 times longer than the
   other (in tokens); then lowercase both sides;
3. dev/test XML files ``IWSLT14.TED*.de-en.{de,en}.xml``: take the text of every
   ``<seg id=...>`` element, replace the right single quotation mark with ``'``,
   tokenise and lowercase;
4. splits: ``valid`` = every 23rd line of the cleaned training text (lines 23, 46, ...),
   ``train`` = the other lines; ``test`` = the concatenation of dev2010, TEDX dev2012,
   tst2010, tst2011 and tst2012 (in that order).

fairseq's script gives 160,239 / 7,283 / 6,750 sentence pairs for train / valid / test.
Confirmed from two independent ``fairseq-preprocess`` logs of its output that agree
exactly, sentences and tokens (train.de 160,239 sents / 4,035,591 tokens, train.en
160,239 / 3,949,114; valid 7,283; test 6,750): a Korean fairseq IWSLT'14 tutorial notebook
and a preprocessing script of an NLP exercise collection (found by exact-string search of
public GitHub files; the search does not name the repositories); several further
``fairseq-generate`` logs agree on valid 7,283 and test 6,750. ``prepare`` compares real
data with these counts and records a difference in ``meta.json`` with a warning (our
tokeniser is sacremoses, not Moses' Perl script, so a small difference in the length
filter is possible and is reported, not fatal). BPE is *not* part of this layout: recipes
learn it with ``repro.bpe`` (fairseq: a joint 10K BPE on train.de + train.en) and cache
the model beside the prepared files (``<root>/bpe/``).

Prepared layout: ``{train,valid,test}.{de,en}`` (tokenised, lowercased, one sentence per
line) and ``meta.json``. ``make_fixture`` writes a tiny raw tree in the real archive's
layout (real German/English country and language names from ``pycountry``'s gettext
catalogues in template sentences, plus metadata lines that step 1 must remove) and
runs the same ``prepare`` on it, so the smoke profile exercises the real pipeline.
"""

from __future__ import annotations

import warnings

import json
import random
import re
from pathlib import Path

from data_scripts.common import DatasetInfo, RemoteFile, download as fetch, safe_extract
from repro.errors import ChecksumError, DataMissing, ReproError

URL = "https://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
ARCHIVE = "de-en.tgz"
RAW = "de-en"  # the folder inside the archive
LANGS = ("de", "en")
SPLITS = ("train", "valid", "test")
PREPARED = tuple(f"{s}.{lang}" for s in SPLITS for lang in LANGS)
META = "meta.json"
FIXTURE_MARK = ".fixture"
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")
EXPECTED = {"train": 160_239, "valid": 7_283, "test": 6_750}  # fairseq-preprocess logs (module docstring)
MAX_LEN, MIN_LEN, RATIO = 175, 1, 1.5  # clean-corpus-n.perl -ratio 1.5 ... 1 175
VALID_EVERY = 23

INFO = DatasetInfo(
    name="iwslt14_de_en",
    description="IWSLT'14 German-English TED talks, fairseq prepare-iwslt14.sh preprocessing (Moses tokenised, "
                "cleaned 1-175 tokens / ratio 1.5, lowercased): ~160K train, 7.3K valid, 6.75K test pairs",
    homepage="https://wit3.fbk.eu/2014-01",
    licence="TED talks transcripts and translations: CC BY-NC-ND 4.0 (WIT3 / IWSLT 2014 evaluation campaign)",
    size="~19 MB",
    files=(RemoteFile(URL, ARCHIVE),),
    layout=PREPARED + (META,),
    used_by=("confidence_through_attention",),  # its smoke profile; the Transformer IWSLT baselines of the family can use it
)


# --------------------------------------------------------------------------- helpers


def is_fixture(root: Path) -> bool:
    return (Path(root) / FIXTURE_MARK).exists()


def raw_files(root: Path) -> list[Path]:
    raw = Path(root) / RAW
    files = [raw / f"train.tags.de-en.{lang}" for lang in LANGS]
    files += [raw / f"{name}.de-en.{lang}.xml" for name in TEST_SETS for lang in LANGS]
    return files


_META_TAGS = ("<url>", "<talkid>", "<keywords>")
_STRIP_TAGS = re.compile(r"</?(title|description)>")
_SEG = re.compile(r'<seg id="?\d+"?>\s*(.*?)\s*</seg>')


def training_lines(path: Path) -> list[str]:
    """Step 1 without tokenisation: metadata lines dropped, title/description tags stripped."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if any(tag in line for tag in _META_TAGS):
                continue
            out.append(_STRIP_TAGS.sub("", line).strip())
    return out


def xml_segments(path: Path) -> list[str]:
    """Step 3 without tokenisation: the text of each ``<seg id=..>`` element."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if "<seg id" not in line:
                continue
            m = _SEG.search(line)
            out.append((m.group(1) if m else "").replace("\u2019", "'"))
    return out


def _whitespace_tokenizer(text: str) -> str:
    return " ".join(text.split())


def tokenizer(lang: str, fixture: bool = False):
    """Moses tokenisation (sacremoses, escaping on as tokenizer.perl's default). Only a
    fixture, whose text is already tokenised and has nothing to escape, may fall back
    to whitespace splitting when sacremoses is absent (tests check both agree on it)."""
    try:
        from sacremoses import MosesTokenizer
    except ImportError:
        if fixture:
            return _whitespace_tokenizer
        raise ReproError("iwslt14_de_en: preparing the real data needs the Moses tokenizer port `sacremoses`",
                         hint="uv pip install sacremoses, then: repro data prepare iwslt14_de_en") from None
    tok = MosesTokenizer(lang=lang)
    return lambda text: tok.tokenize(text, return_str=True, escape=True)


def clean_pairs(src: list[str], tgt: list[str], min_len: int = MIN_LEN, max_len: int = MAX_LEN,
                ratio: float = RATIO) -> list[tuple[str, str]]:
    """clean-corpus-n.perl: keep pairs with min_len..max_len tokens on both sides whose
    length ratio (either way) is at most ``ratio``; whitespace is normalised."""
    if len(src) != len(tgt):
        raise ChecksumError(f"iwslt14_de_en: {len(src)} German vs {len(tgt)} English training lines")
    kept = []
    for s, t in zip(src, tgt):
        s, t = " ".join(s.split()), " ".join(t.split())
        ns, nt = len(s.split()), len(t.split())
        if not (min_len <= ns <= max_len and min_len <= nt <= max_len):
            continue
        if ns / nt > ratio or nt / ns > ratio:
            continue
        kept.append((s, t))
    return kept


def split_valid(pairs: list, every: int = VALID_EVERY) -> tuple[list, list]:
    """(train, valid): valid holds lines every, 2*every, ... (1-based), as awk 'NR%23==0'."""
    train = [p for i, p in enumerate(pairs, 1) if i % every]
    valid = [p for i, p in enumerate(pairs, 1) if not i % every]
    return train, valid


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


# --------------------------------------------------------------------------- contract


def download(root: Path) -> None:
    """Fetch ``de-en.tgz`` (resumable; no published checksum) and extract it safely."""
    root = Path(root)
    safe_extract(fetch(INFO.files[0], root), root)


def verify(root: Path) -> dict[str, int]:
    """Every raw file present, and each German file paired with an English file of the
    same number of lines (training text) or segments (XML): the strongest check without
    a published checksum. Returns the counts."""
    root = Path(root)
    missing = [str(p.relative_to(root)) for p in raw_files(root) if not p.is_file()]
    if missing:
        raise DataMissing(f"iwslt14_de_en: {', '.join(missing)} missing under {root}",
                          hint="repro data download iwslt14_de_en")
    counts: dict[str, int] = {}
    for lang in LANGS:
        counts[f"train.tags.{lang}"] = count_lines(root / RAW / f"train.tags.de-en.{lang}")
    for name in TEST_SETS:
        for lang in LANGS:
            counts[f"{name}.{lang}"] = len(xml_segments(root / RAW / f"{name}.de-en.{lang}.xml"))
    why = " (no checksum is published; paired counts are the check): delete it and run " \
          "`repro data download iwslt14_de_en`"
    for key in ["train.tags"] + list(TEST_SETS):
        de, en = counts[f"{key}.de"], counts[f"{key}.en"]
        if de == 0 or de != en:
            raise ChecksumError(f"iwslt14_de_en: {key} has {de} German but {en} English lines{why}")
    return counts


def prepare(root: Path) -> None:
    """Steps 1-4 of the module docstring; writes the six text files and ``meta.json``."""
    root = Path(root)
    raw_counts = verify(root)
    fixture = is_fixture(root)
    tok = {lang: tokenizer(lang, fixture) for lang in LANGS}
    text = {lang: [tok[lang](ln) for ln in training_lines(root / RAW / f"train.tags.de-en.{lang}")] for lang in LANGS}
    pairs = [(s.lower(), t.lower()) for s, t in clean_pairs(text["de"], text["en"])]
    train, valid = split_valid(pairs)
    test: list[tuple[str, str]] = []
    for name in TEST_SETS:
        segs = {lang: [tok[lang](s).lower() for s in xml_segments(root / RAW / f"{name}.de-en.{lang}.xml")]
                for lang in LANGS}
        test += list(zip(segs["de"], segs["en"]))
    out = {"train": train, "valid": valid, "test": test}
    count_warning = ""
    if not fixture:
        # The expected counts are the output of fairseq's script (module docstring); sacremoses may
        # tokenise a few lines differently from Moses' Perl script, so a difference is shown, not fatal.
        wrong = {s: len(v) for s, v in out.items() if len(v) != EXPECTED[s]}
        if wrong:
            count_warning = (f"prepared {wrong} pairs where fairseq's prepare-iwslt14.sh gives "
                             f"{ {s: EXPECTED[s] for s in wrong} }: check the archive and the sacremoses "
                             "version before comparing BLEU with published numbers")
            warnings.warn(f"iwslt14_de_en: {count_warning}", stacklevel=2)
    for split, ps in out.items():
        for i, lang in enumerate(LANGS):
            tmp = root / f"{split}.{lang}.tmp"
            tmp.write_text("".join(p[i] + "\n" for p in ps), encoding="utf-8")
            tmp.replace(root / f"{split}.{lang}")
    meta = {"dataset": "iwslt14_de_en", "fixture": fixture, "pairs": {s: len(v) for s, v in out.items()},
            "count_warning": count_warning,
            "raw_lines": raw_counts, "source": URL, "tokenized": "moses (sacremoses), lowercased",
            "clean": {"min": MIN_LEN, "max": MAX_LEN, "ratio": RATIO}, "valid_every": VALID_EVERY,
            "test_sets": list(TEST_SETS)}
    tmp = root / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(root / META)


# --------------------------------------------------------------------------- fixture

_TEMPLATES = {
    "country": [("Ich wohne in {} .", "I live in {} ."), ("{} ist ein Land .", "{} is a country ."),
                ("Wir reisen morgen nach {} .", "We travel to {} tomorrow .")],
    "language": [("Sie spricht {} .", "She speaks {} ."), ("{} ist eine Sprache .", "{} is a language .")],
}
_SIMPLE = re.compile(r"^[A-Za-zÄÖÜäöüßÅåÉéÈèÍíÓóÚúÑñÇç\- ]+$")  # nothing Moses would split or escape


def _fixture_pairs(seed: int = 14) -> list[tuple[str, str]]:
    from data_scripts.wmt14_en_de import pycountry_pairs

    rng = random.Random(seed)
    names = [(kind, de, en) for kind, en, de in pycountry_pairs()
             if kind in _TEMPLATES and _SIMPLE.match(en) and _SIMPLE.match(de) and "-" not in en + de]
    langs = [n for n in names if n[0] == "language"]
    names = [n for n in names if n[0] == "country"] + rng.sample(langs, min(150, len(langs)))
    rng.shuffle(names)
    out = []
    for kind, de, en in names:
        out.append((de, en))
        t_de, t_en = rng.choice(_TEMPLATES[kind])
        out.append((t_de.format(de), t_en.format(en)))
    return out


def make_fixture(root: Path) -> None:
    """A tiny raw tree in the archive's layout (~700 training lines with metadata lines
    and title tags, five XML test sets of 12 segments), marked as a fixture; the
    builder then runs ``verify`` and the real ``prepare`` on it."""
    root = Path(root)
    raw = root / RAW
    raw.mkdir(parents=True, exist_ok=True)
    pairs = _fixture_pairs()
    held, train = pairs[:60], pairs[60:]
    for i, lang in enumerate(LANGS):
        lines = []
        for j, p in enumerate(train):
            if j % 50 == 0:  # talk headers: removed (url/talkid/keywords) or untagged (title)
                lines += [f"<url>http://www.ted.com/talks/fixture_{j}.html</url>", f"<talkid>{j}</talkid>",
                          "<keywords>talks, fixture</keywords>", f"<title>{p[i]}</title>"]
            else:
                lines.append(p[i])
        (raw / f"train.tags.de-en.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for k, name in enumerate(TEST_SETS):
            segs = held[k * 12:(k + 1) * 12]
            body = [f'<refset setid="{name}" srclang="de" trglang="en">', f'<doc docid="{k}">']
            body += [f'<seg id="{n + 1}"> {p[i]} </seg>' for n, p in enumerate(segs)]
            body += ["</doc>", "</refset>"]
            (raw / f"{name}.de-en.{lang}.xml").write_text("\n".join(body) + "\n", encoding="utf-8")
    (root / FIXTURE_MARK).write_text("synthetic stand-in built by data_scripts/iwslt14_de_en.py\n")
