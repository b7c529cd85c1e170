"""wmt19_fi_en: the fixture (raw files in the five real formats) verifies and prepares
into the real layout with the real readers; verify catches unpaired test sets, bad gzip
files and (on real data) non-official segment counts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from data_scripts import wmt19_fi_en as W
from repro.errors import ChecksumError, DataMissing

pytestmark = pytest.mark.unit


@pytest.fixture
def raw(tmp_path) -> Path:
    root = tmp_path / "fx"
    W.make_fixture(root)
    return root


def test_fixture_prepares_into_the_layout_with_all_three_corpora(raw):
    W.prepare(raw)
    for rel in W.INFO.layout:
        assert (raw / rel).is_file(), rel
    meta = json.loads((raw / W.META).read_text())
    assert all(n > 100 for n in meta["train_pairs"].values())  # tsv, tsv and tmx all read
    fi = (raw / "train.fi").read_text().splitlines()
    en = (raw / "train.en").read_text().splitlines()
    assert len(fi) == len(en) == sum(meta["train_pairs"].values())
    assert "broken line without tab" not in "".join(fi + en)
    assert ("Suomi on maa .", "Finland is a country .") in set(zip(fi, en)) | set(zip(
        (raw / "newstest2019.fi").read_text().splitlines(), (raw / "newstest2019.en").read_text().splitlines())) | set(
        zip((raw / "newstest2018.fi").read_text().splitlines(), (raw / "newstest2018.en").read_text().splitlines()))
    assert len((raw / "newstest2019.fi").read_text().splitlines()) == 24


def test_fixture_is_deterministic(tmp_path, raw):
    other = tmp_path / "again"
    W.make_fixture(other)
    for f in W.INFO.files:
        assert (raw / f.filename).read_bytes() == (other / f.filename).read_bytes(), f.filename


def test_sgm_and_tmx_readers_unescape(tmp_path):
    assert W.sgm_segments('<seg id="1">A &amp; B</seg>\n<seg id="2"> x </seg>') == ["A & B", "x"]
    p = tmp_path / "t.tmx.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b'<tmx><body><tu><tuv xml:lang="fi"><seg>Kissa &amp; koira</seg></tuv>'
                 b'<tuv xml:lang="en"><seg>Cat &amp; dog</seg></tuv></tu>'
                 b'<tu><tuv xml:lang="fi"><seg>Vain</seg></tuv></tu></body></tmx>')
    assert list(W.read_tmx(p)) == [("Kissa & koira", "Cat & dog")]


def test_verify_catches_problems(raw):
    W.verify(raw)
    (raw / W.FIXTURE_MARK).unlink()
    with pytest.raises(ChecksumError, match="official"):
        W.verify(raw)  # 24 segments, not 1996
    (raw / W.PARACRAWL).write_bytes(b"not gzip")
    with pytest.raises(ChecksumError, match="gzip"):
        W.verify(raw)
    (raw / W.TEST).unlink()
    with pytest.raises(DataMissing):
        W.verify(raw)


def test_archives_have_the_sacrebleu_checksums():
    md5 = {f.filename: f.md5 for f in W.INFO.files}
    assert md5[W.TEST] == "84de7162d158e28403103b01aeefc39a"
    assert md5[W.DEV] == "f2ec7af5947c19e0cacb3882eb208002"
