"""WMT16 Romanian-English news translation (http://www.statmt.org/wmt16/translation-task.html):
the constrained parallel training data for the pair, Europarl v8 (ro-en) and SETimes2
(en-ro, from OPUS), the development set newsdev2016 and the test set newstest2016
(1999 sentences each). Used by ``rela_sparse_attention`` (the authors' README reports
SacreBLEU on "WMT16 Ro-En") and ``headmask_nmt`` (WMT16 Ro-En BLEU).

Prepared layout: ``train.{ro,en}`` (Europarl v8 then SETimes2, one sentence per line,
untokenized), ``newsdev2016.{ro,en}``, ``newstest2016.{ro,en}`` (the segments of the
official SGML files, text between ``<seg>`` tags as sacreBLEU reads them, no entity
unescaping) and ``meta.json``. The papers' further preprocessing (Moses tokenization, BPE,
and for Ro-En the common Romanian normalisation / diacritic removal) is the recipes'
business: the files here are the raw text.

The publishers give no checksums, so ``verify`` checks what is known: both dev/test sets
have 1999 lines on each side, the training sides have equal line counts within
600k-625k pairs (Europarl v8 ro-en ~400k + SETimes2 ~213k; "about 610K" pairs), and each
archive is readable. ``make_fixture`` writes the same file names with real English /
Romanian name pairs from ``pycountry``'s gettext catalogues inside a small template
grammar.
"""

from __future__ import annotations

import json
import random
import re
import tarfile
import zipfile
from pathlib import Path

from data_scripts.common import DatasetInfo, RemoteFile, download as fetch
from repro.errors import ChecksumError, DataMissing

LANGS = ("ro", "en")
SPLITS = ("train", "newsdev2016", "newstest2016")
FILES = tuple(f"{s}.{lang}" for s in SPLITS for lang in LANGS)
META = "meta.json"
FIXTURE_MARK = ".fixture"
EVAL_LINES = {"newsdev2016": 1999, "newstest2016": 1999}
TRAIN_RANGE = (600_000, 625_000)

ARCHIVES = (
    RemoteFile("https://data.statmt.org/wmt16/translation-task/training-parallel-ep-v8.tgz",
               "training-parallel-ep-v8.tgz"),
    RemoteFile("https://object.pouta.csc.fi/OPUS-SETIMES/v2/moses/en-ro.txt.zip", "setimes2-en-ro.txt.zip"),
    RemoteFile("https://data.statmt.org/wmt16/translation-task/dev-romanian-updated.tgz",
               "dev-romanian-updated.tgz"),
    RemoteFile("https://data.statmt.org/wmt16/translation-task/test.tgz", "test.tgz"),
)

# (layout file, archive, member-name suffix); SGML members are parsed, text members copied
SOURCES = (
    ("europarl.ro", "training-parallel-ep-v8.tgz", "europarl-v8.ro-en.ro"),
    ("europarl.en", "training-parallel-ep-v8.tgz", "europarl-v8.ro-en.en"),
    ("setimes.ro", "setimes2-en-ro.txt.zip", ".en-ro.ro"),
    ("setimes.en", "setimes2-en-ro.txt.zip", ".en-ro.en"),
    ("newsdev2016.ro", "dev-romanian-updated.tgz", "newsdev2016-roen-src.ro.sgm"),
    ("newsdev2016.en", "dev-romanian-updated.tgz", "newsdev2016-roen-ref.en.sgm"),
    ("newstest2016.ro", "test.tgz", "newstest2016-roen-src.ro.sgm"),
    ("newstest2016.en", "test.tgz", "newstest2016-roen-ref.en.sgm"),
)

INFO = DatasetInfo(
    name="wmt16_ro_en",
    description="WMT16 Romanian-English: Europarl v8 + SETimes2 training (~610k pairs), newsdev2016, "
                "newstest2016 (raw text)",
    homepage="http://www.statmt.org/wmt16/translation-task.html",
    licence="WMT16 shared-task data: Europarl (free use, European Parliament terms), SETimes2 (OPUS, CC-BY-SA), "
            "news dev/test sets for research use",
    size="~230 MB",
    files=ARCHIVES,
    layout=FILES + (META,),
    used_by=("rela_sparse_attention", "headmask_nmt"),
)


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def is_fixture(root: Path) -> bool:
    return (Path(root) / FIXTURE_MARK).exists()


# --------------------------------------------------------------------------- contract
def download(root: Path) -> None:
    """Fetch the four archives into ``root`` (resumable; no published checksums)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for remote in ARCHIVES:
        fetch(remote, root)


_SEG = re.compile(r"<seg[^>]*>(.*)</seg>", re.IGNORECASE)


def sgm_segments(text: str) -> list[str]:
    """The text of every ``<seg ...>...</seg>`` line, stripped (as sacreBLEU reads SGML)."""
    return [m.group(1).strip() for m in (_SEG.search(ln) for ln in text.splitlines()) if m]


def _member(archive: Path, suffix: str) -> bytes:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix)]
            if len(names) != 1:
                raise ChecksumError(f"wmt16_ro_en: {archive.name} has {len(names)} members ending in {suffix!r}")
            return zf.read(names[0])
    try:
        with tarfile.open(archive) as tf:
            names = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(suffix)]
            if len(names) != 1:
                raise ChecksumError(f"wmt16_ro_en: {archive.name} has {len(names)} members ending in {suffix!r}")
            fh = tf.extractfile(names[0])
            return fh.read() if fh else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ChecksumError(f"wmt16_ro_en: {archive.name} is not a readable archive ({exc}); delete it and run "
                            f"`repro data download wmt16_ro_en`") from None


def _readable_archive(path: Path) -> bool:
    """A complete zip, or a tar(.gz) that can be read to its end (a truncated gzip stream
    fails here, not halfway through ``prepare``)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return zf.testzip() is None
        with tarfile.open(path) as tf:
            tf.getmembers()
        return True
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile):
        return False


def _layout_present(root: Path) -> bool:
    return all((root / f).is_file() for f in FILES)


def verify(root: Path) -> dict[str, int]:
    """Check the prepared files (line counts) or, before ``prepare``, the archives."""
    root = Path(root)
    if not _layout_present(root):
        missing = [r.filename for r in ARCHIVES if not (root / r.filename).is_file()]
        if missing:
            raise DataMissing(f"wmt16_ro_en: {', '.join(missing)} missing under {root}",
                              hint="repro data download wmt16_ro_en")
        for r in ARCHIVES:
            if not _readable_archive(root / r.filename):
                raise ChecksumError(f"wmt16_ro_en: {r.filename} is not a readable archive (truncated download?); "
                                    f"delete it and run `repro data download wmt16_ro_en`")
        return {}
    counts = {f: count_lines(root / f) for f in FILES}
    fixture = is_fixture(root)
    why = " (the publishers give no checksums; line counts are the check)"
    for split in SPLITS:
        ro, en = counts[f"{split}.ro"], counts[f"{split}.en"]
        if ro == 0 or ro != en:
            raise ChecksumError(f"wmt16_ro_en: {split}.ro has {ro} lines but {split}.en has {en}{why}")
        if fixture:
            continue
        if split in EVAL_LINES and ro != EVAL_LINES[split]:
            raise ChecksumError(f"wmt16_ro_en: {split} has {ro} lines, expected {EVAL_LINES[split]}{why}")
        if split == "train" and not TRAIN_RANGE[0] <= ro <= TRAIN_RANGE[1]:
            raise ChecksumError(f"wmt16_ro_en: train has {ro} pairs, expected about 610k{why}")
    return counts


def prepare(root: Path) -> None:
    """Extract the layout from the archives (if not there yet), check it, write meta.json."""
    root = Path(root)
    if not _layout_present(root):
        texts: dict[str, list[str]] = {}
        for name, archive, suffix in SOURCES:
            raw = _member(root / archive, suffix).decode("utf-8", errors="replace")
            texts[name] = sgm_segments(raw) if suffix.endswith(".sgm") else raw.rstrip("\n").split("\n")
        for lang in LANGS:
            _write_lines(root / f"train.{lang}", texts[f"europarl.{lang}"] + texts[f"setimes.{lang}"])
            for split in SPLITS[1:]:
                _write_lines(root / f"{split}.{lang}", texts[f"{split}.{lang}"])
    counts = verify(root)
    meta = {"dataset": "wmt16_ro_en", "fixture": is_fixture(root), "lines": counts,
            "source": INFO.homepage, "tokenized": False}
    tmp = root / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(root / META)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(ln.replace("\n", " ") + "\n" for ln in lines), encoding="utf-8")


# --------------------------------------------------------------------------- fixture
def pycountry_pairs() -> list[tuple[str, str, str]]:
    """(kind, English, Romanian) name pairs from pycountry's Romanian gettext catalogues:
    countries (ISO 3166-1) and currencies (ISO 4217), in a fixed order; only pairs whose
    Romanian name exists (differs from the English one or is a country)."""
    import gettext

    import pycountry

    out: list[tuple[str, str, str]] = []
    for domain, db, kind in (("iso3166-1", pycountry.countries, "country"),
                             ("iso4217", pycountry.currencies, "currency")):
        tr = gettext.translation(domain, pycountry.LOCALES_DIR, languages=["ro"], fallback=True)
        for rec in sorted(db, key=lambda r: r.alpha_3 if hasattr(r, "alpha_3") else r.name):
            en = rec.name
            ro = tr.gettext(en)
            if kind == "currency" and ro == en:
                continue
            out.append((kind, en, ro))
    return out


_TEMPLATES = {
    "country": [("I live in {}.", "Locuiesc în {}."), ("{} is a country.", "{} este o țară."),
                ("We travel to {} tomorrow.", "Mâine călătorim în {}.")],
    "currency": [("They pay in {}.", "Ei plătesc în {}."), ("The {} is a currency.", "{} este o monedă.")],
}


def _fixture_corpus(seed: int = 16) -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    pairs = pycountry_pairs()
    rng.shuffle(pairs)

    def sentence(p):
        en_t, ro_t = rng.choice(_TEMPLATES[p[0]])
        return ro_t.format(p[2]), en_t.format(p[1])

    held = pairs[:60]  # names the dev/test sentences use; half of them never occur in training
    train = [(ro, en) for _, en, ro in pairs[30:]] + [sentence(p) for p in pairs[30:] for _ in range(2)]
    rng.shuffle(train)
    out = {"train": train}
    for i, split in enumerate(SPLITS[1:]):
        out[split] = [sentence(held[(i * 13 + j * 7) % len(held)]) for j in range(24)]
    return out


def make_fixture(root: Path) -> None:
    """A deterministic stand-in in the real layout: ~700 training pairs of real
    Romanian/English names and template sentences, 24 sentences per dev/test file."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, pairs in _fixture_corpus().items():
        _write_lines(root / f"{split}.ro", [ro for ro, _ in pairs])
        _write_lines(root / f"{split}.en", [en for _, en in pairs])
    (root / FIXTURE_MARK).write_text("synthetic stand-in built by data_scripts/wmt16_ro_en.py\n")
