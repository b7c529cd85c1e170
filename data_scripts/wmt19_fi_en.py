"""WMT19 Finnish-English news translation data (constrained parallel corpora, newstest2018
as the development set and newstest2019 as the test set), the setting of the University
of Sydney's WMT19 submission (Ding & Tao 2019, ``papers/sydney_wmt19``).

Raw files (statmt.org, the WMT19 translation-task page):

* ``europarl-v9.fi-en.tsv.gz`` (Europarl v9; tab-separated Finnish, English),
* ``wikititles-v1.fi-en.tsv.gz`` (Wiki titles v1; tab-separated),
* ``en-fi.bicleaner07.tmx.gz`` (ParaCrawl v3, the bicleaner >= 0.7 release; TMX),
* ``dev.tgz`` (WMT19 development sets; ``dev/newstest2018-fien-{src.fi,ref.en}.sgm``),
* ``test.tgz`` (WMT19 test sets; ``sgm/newstest2019-fien-{src.fi,ref.en}.sgm``).

Checksums: the two test/dev archives carry the MD5 sums that sacreBLEU publishes for them
(``sacrebleu.dataset``: wmt19 ``84de7162d158e28403103b01aeefc39a``, wmt19/dev
``f2ec7af5947c19e0cacb3882eb208002``); the corpora have no published checksum, so
``verify`` checks that each opens and parses, and ``prepare`` checks that Finnish and
English sides pair up. The WMT19 "Rapid" and the other optional corpora are not included.

Prepared layout: ``train.{fi,en}`` (untokenised, all corpora concatenated in the order
above, empty or tab-broken lines dropped), ``newstest2018.{fi,en}``,
``newstest2019.{fi,en}`` (the segments of the SGML files, in order; 3,000 and 1,996
segments in the official sets, checked) and ``meta.json``. ``make_fixture`` writes tiny
raw files in the same five formats (real Finnish/English country and language names
from ``pycountry``'s gettext catalogues in template sentences) and the builder runs the
real ``prepare`` on them.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import tarfile
from pathlib import Path

from data_scripts.common import DatasetInfo, RemoteFile, download as fetch
from repro.errors import ChecksumError, DataMissing

EUROPARL = "europarl-v9.fi-en.tsv.gz"
WIKITITLES = "wikititles-v1.fi-en.tsv.gz"
PARACRAWL = "en-fi.bicleaner07.tmx.gz"
DEV = "dev.tgz"
TEST = "test.tgz"
DEV_FILES = ("dev/newstest2018-fien-src.fi.sgm", "dev/newstest2018-fien-ref.en.sgm")
TEST_FILES = ("sgm/newstest2019-fien-src.fi.sgm", "sgm/newstest2019-fien-ref.en.sgm")
EXPECTED_SEGMENTS = {"newstest2018": 3000, "newstest2019": 1996}
SPLITS = ("train", "newstest2018", "newstest2019")
PREPARED = tuple(f"{s}.{lang}" for s in SPLITS for lang in ("fi", "en"))
META = "meta.json"
FIXTURE_MARK = ".fixture"

INFO = DatasetInfo(
    name="wmt19_fi_en",
    description="WMT19 Finnish-English: Europarl v9, Wiki titles v1, ParaCrawl v3 (bicleaner 0.7) parallel text; "
                "newstest2018 (dev) and newstest2019 (test)",
    homepage="https://www.statmt.org/wmt19/translation-task.html",
    licence="WMT19 shared-task data: research use under each corpus's terms (Europarl, ParaCrawl, Wikipedia "
            "titles; newstest sets by the WMT organisers)",
    size="~1.4 GB",
    files=(
        RemoteFile("https://www.statmt.org/europarl/v9/training/" + EUROPARL, EUROPARL),
        RemoteFile("https://data.statmt.org/wikititles/v1/" + WIKITITLES, WIKITITLES),
        RemoteFile("https://s3.amazonaws.com/web-language-models/paracrawl/release3/" + PARACRAWL, PARACRAWL),
        RemoteFile("https://data.statmt.org/wmt19/translation-task/dev.tgz", DEV,
                   md5="f2ec7af5947c19e0cacb3882eb208002"),
        RemoteFile("https://data.statmt.org/wmt19/translation-task/test.tgz", TEST,
                   md5="84de7162d158e28403103b01aeefc39a"),
    ),
    layout=PREPARED + (META,),
    used_by=("sydney_wmt19",),
)


def is_fixture(root: Path) -> bool:
    return (Path(root) / FIXTURE_MARK).exists()


# --------------------------------------------------------------------------- readers

_SEG = re.compile(r"<seg[^>]*>(.*?)</seg>", re.DOTALL)


def read_tsv(path: Path):
    """(fi, en) pairs of a gzipped two-column TSV; malformed or half-empty lines skipped."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2 and parts[0].strip() and parts[1].strip():
                yield parts[0].strip(), parts[1].strip()


def read_tmx(path: Path):
    """(fi, en) pairs of a gzipped TMX file (one ``<tu>`` per pair)."""
    import xml.etree.ElementTree as ET

    lang_key = "{http://www.w3.org/XML/1998/namespace}lang"
    with gzip.open(path, "rb") as fh:
        for _, elem in ET.iterparse(fh, events=("end",)):
            if elem.tag != "tu":
                continue
            segs = {}
            for tuv in elem.iter("tuv"):
                lang = (tuv.get(lang_key) or tuv.get("lang") or "").lower()[:2]
                seg = tuv.find("seg")
                if seg is not None and seg.text:
                    segs[lang] = " ".join(seg.text.split())
            if segs.get("fi") and segs.get("en"):
                yield segs["fi"], segs["en"]
            elem.clear()


def sgm_segments(text: str) -> list[str]:
    import html

    return [html.unescape(m.group(1)).strip() for m in _SEG.finditer(text)]


def read_sgm_pair(archive: Path, names: tuple[str, str]) -> tuple[list[str], list[str]]:
    """Source and reference segments of one test set inside a WMT tarball."""
    with tarfile.open(archive) as tf:
        out = []
        for name in names:
            try:
                member = tf.extractfile(name)
            except KeyError:
                member = None
            if member is None:
                raise DataMissing(f"wmt19_fi_en: {archive.name} lacks {name}",
                                  hint="delete it and run `repro data download wmt19_fi_en`")
            out.append(sgm_segments(member.read().decode("utf-8")))
    return out[0], out[1]


# --------------------------------------------------------------------------- contract


def download(root: Path) -> None:
    """Fetch the five files (resumable; MD5-checked where sacreBLEU publishes a sum)."""
    for remote in INFO.files:
        fetch(remote, Path(root))


def verify(root: Path) -> dict[str, int]:
    """Every raw file present and readable; test/dev sets pair up (and have the official
    segment counts on real data). Returns the test-set segment counts."""
    root = Path(root)
    missing = [f.filename for f in INFO.files if not (root / f.filename).is_file()]
    if missing:
        raise DataMissing(f"wmt19_fi_en: {', '.join(missing)} missing under {root}",
                          hint="repro data download wmt19_fi_en")
    for name in (EUROPARL, WIKITITLES, PARACRAWL):
        try:
            with gzip.open(root / name, "rb") as fh:
                fh.read(1 << 16)
        except (OSError, EOFError) as exc:
            raise ChecksumError(f"wmt19_fi_en: {name} is not a readable gzip file ({exc}); delete it and run "
                                "`repro data download wmt19_fi_en`") from None
    counts = {}
    for split, archive, names in (("newstest2018", DEV, DEV_FILES), ("newstest2019", TEST, TEST_FILES)):
        src, ref = read_sgm_pair(root / archive, names)
        if not src or len(src) != len(ref):
            raise ChecksumError(f"wmt19_fi_en: {split} has {len(src)} Finnish but {len(ref)} English segments")
        if not is_fixture(root) and len(src) != EXPECTED_SEGMENTS[split]:
            raise ChecksumError(f"wmt19_fi_en: {split} has {len(src)} segments, the official set "
                                f"{EXPECTED_SEGMENTS[split]}")
        counts[split] = len(src)
    return counts


def prepare(root: Path) -> None:
    root = Path(root)
    counts = verify(root)
    per_corpus = {}
    with open(root / "train.fi.tmp", "w", encoding="utf-8") as ffi, \
            open(root / "train.en.tmp", "w", encoding="utf-8") as fen:
        for name, reader in ((EUROPARL, read_tsv), (WIKITITLES, read_tsv), (PARACRAWL, read_tmx)):
            n = 0
            for fi, en in reader(root / name):
                fi, en = " ".join(fi.split()), " ".join(en.split())
                ffi.write(fi + "\n")
                fen.write(en + "\n")
                n += 1
            per_corpus[name] = n
    for lang in ("fi", "en"):
        (root / f"train.{lang}.tmp").replace(root / f"train.{lang}")
    for split, archive, names in (("newstest2018", DEV, DEV_FILES), ("newstest2019", TEST, TEST_FILES)):
        src, ref = read_sgm_pair(root / archive, names)
        (root / f"{split}.fi").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        (root / f"{split}.en").write_text("".join(s + "\n" for s in ref), encoding="utf-8")
    meta = {"dataset": "wmt19_fi_en", "fixture": is_fixture(root), "train_pairs": per_corpus,
            "segments": counts, "tokenized": False}
    tmp = root / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(root / META)


# --------------------------------------------------------------------------- fixture

_TEMPLATES = {
    "country": [("Asun maassa {} .", "I live in {} ."), ("{} on maa .", "{} is a country .")],
    "language": [("Hän puhuu kieltä {} .", "She speaks {} ."), ("{} on kieli .", "{} is a language .")],
}


def fixture_pairs(seed: int = 19) -> list[tuple[str, str]]:
    """(Finnish, English) sentence pairs from pycountry's Finnish catalogues."""
    import gettext

    import pycountry

    out = []
    for domain, db, kind in (("iso3166-1", pycountry.countries, "country"),
                             ("iso639-3", pycountry.languages, "language")):
        tr = gettext.translation(domain, pycountry.LOCALES_DIR, languages=["fi"], fallback=True)
        for rec in sorted(db, key=lambda r: r.alpha_3):
            en = rec.name
            fi = tr.gettext(en)
            if fi != en or kind == "country":
                out.append((kind, fi, en))
    rng = random.Random(seed)
    langs = [p for p in out if p[0] == "language"]
    out = [p for p in out if p[0] == "country"] + rng.sample(langs, min(200, len(langs)))
    rng.shuffle(out)
    pairs = []
    for kind, fi, en in out:
        t_fi, t_en = rng.choice(_TEMPLATES[kind])
        pairs.append((t_fi.format(fi), t_en.format(en)))
    return pairs


def _sgm(setid: str, lang: str, segs: list[str]) -> bytes:
    import html

    body = [f'<srcset setid="{setid}" srclang="any">', '<doc sysid="ref" docid="fixture" origlang="fi">']
    body += [f'<p><seg id="{i + 1}">{html.escape(s, quote=False)}</seg></p>' for i, s in enumerate(segs)]
    body += ["</doc>", "</srcset>"]
    return ("\n".join(body) + "\n").encode("utf-8")


def make_fixture(root: Path) -> None:
    """Tiny raw files in the five real formats (~400 training pairs split over the three
    corpora, 24-segment dev and test sets), marked as a fixture."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pairs = fixture_pairs()
    dev, test, train = pairs[:24], pairs[24:48], pairs[48:]
    third = len(train) // 3
    for name, chunk in ((EUROPARL, train[:third]), (WIKITITLES, train[third:2 * third])):
        with gzip.GzipFile(root / name, "wb", mtime=0) as fh:
            fh.write("".join(f"{fi}\t{en}\n" for fi, en in chunk).encode("utf-8") + b"broken line without tab\n")
    import html

    tus = "".join(f'<tu><tuv xml:lang="en"><seg>{html.escape(en, quote=False)}</seg></tuv>'
                  f'<tuv xml:lang="fi"><seg>{html.escape(fi, quote=False)}</seg></tuv></tu>\n'
                  for fi, en in train[2 * third:])
    with gzip.GzipFile(root / PARACRAWL, "wb", mtime=0) as fh:
        fh.write(f'<?xml version="1.0"?>\n<tmx version="1.4"><header/><body>\n{tus}</body></tmx>\n'.encode("utf-8"))
    for archive, names, segs, setid in ((DEV, DEV_FILES, dev, "newstest2018"), (TEST, TEST_FILES, test, "newstest2019")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, lang in zip(names, ("fi", "en")):
                data = _sgm(setid, lang, [p[0] if lang == "fi" else p[1] for p in segs])
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 0
                tf.addfile(info, io.BytesIO(data))
        with gzip.GzipFile(root / archive, "wb", mtime=0) as fh:  # fixed header time: deterministic bytes
            fh.write(buf.getvalue())
    (root / FIXTURE_MARK).write_text("synthetic stand-in built by data_scripts/wmt19_fi_en.py\n")
