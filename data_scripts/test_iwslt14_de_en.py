"""iwslt14_de_en: the fairseq-style preprocessing steps on hand-made inputs, the fixture in
the real layout through the real prepare(), and verify() catching unpaired files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_scripts import iwslt14_de_en as I
from repro.errors import ChecksumError, DataMissing

pytestmark = pytest.mark.unit


@pytest.fixture
def fixture_dir(tmp_path) -> Path:
    root = tmp_path / "fx"
    I.make_fixture(root)
    I.verify(root)
    I.prepare(root)
    return root


def test_fixture_prepares_into_the_real_layout(fixture_dir):
    for rel in I.INFO.layout:
        assert (fixture_dir / rel).is_file(), rel
    meta = json.loads((fixture_dir / I.META).read_text())
    assert meta["fixture"] and meta["pairs"]["test"] == 60
    for split in I.SPLITS:
        de = (fixture_dir / f"{split}.de").read_text().splitlines()
        en = (fixture_dir / f"{split}.en").read_text().splitlines()
        assert len(de) == len(en) == meta["pairs"][split] > 0
        assert all(ln == ln.lower() and ln.strip() for ln in de + en)
    train = set(zip((fixture_dir / "train.de").read_text().splitlines(),
                    (fixture_dir / "train.en").read_text().splitlines()))
    assert ("deutschland", "germany") in train or ("deutschland", "germany") in set(zip(
        (fixture_dir / "valid.de").read_text().splitlines(), (fixture_dir / "valid.en").read_text().splitlines()))
    text = (fixture_dir / "train.en").read_text()
    assert "<url>" not in text and "<title>" not in text and "talkid" not in text


def test_fixture_is_deterministic(tmp_path, fixture_dir):
    other = tmp_path / "again"
    I.make_fixture(other)
    I.prepare(other)
    for f in I.PREPARED:
        assert (fixture_dir / f).read_bytes() == (other / f).read_bytes()


def test_fixture_text_needs_no_moses_rules(tmp_path):
    """The fixture's whitespace fallback equals Moses tokenisation on the fixture text, so
    the fixture is the same with or without sacremoses installed."""
    pytest.importorskip("sacremoses", reason="sacremoses (Moses tokenizer port) not installed")
    for de, en in I._fixture_pairs():
        assert I.tokenizer("de")(de) == I._whitespace_tokenizer(de)
        assert I.tokenizer("en")(en) == I._whitespace_tokenizer(en)


def test_moses_tokenisation_escapes_like_tokenizer_perl():
    pytest.importorskip("sacremoses", reason="sacremoses (Moses tokenizer port) not installed")
    assert I.tokenizer("en")("It's A&B, isn't it?") == "It &apos;s A &amp; B , isn &apos;t it ?"


def test_metadata_lines_and_xml_segments(tmp_path):
    p = tmp_path / "train.tags.de-en.en"
    p.write_text("<url>http://x</url>\n<keywords>a, b</keywords>\n<talkid>1</talkid>\n"
                 "<title>A title</title>\n<description>TED talk: words</description>\nplain line\n", encoding="utf-8")
    assert I.training_lines(p) == ["A title", "TED talk: words", "plain line"]
    x = tmp_path / "t.xml"
    x.write_text('<doc>\n<seg id="1"> It\u2019s here </seg>\n<seg id="2">two</seg>\n</doc>\n', encoding="utf-8")
    assert I.xml_segments(x) == ["It's here", "two"]


def test_clean_pairs_follows_clean_corpus_n():
    src = ["a b c", "a", "", "a b c d", " ".join(["w"] * 176), "x  y"]
    tgt = ["a b", "a b c", "a", "a b c d e f g", "w", "x y"]
    # kept: ratio 1.5 ok; 1 vs 3 tokens -> ratio 3 dropped; empty dropped; 4 vs 7 -> 1.75 dropped;
    # 176 tokens dropped; whitespace normalised
    assert I.clean_pairs(src, tgt) == [("a b c", "a b"), ("x y", "x y")]
    with pytest.raises(ChecksumError):
        I.clean_pairs(["a"], [])


def test_valid_is_every_23rd_line():
    pairs = list(range(1, 101))
    train, valid = I.split_valid(pairs)
    assert valid == [23, 46, 69, 92] and len(train) == 96 and 23 not in train


def test_verify_catches_unpaired_and_missing_files(tmp_path):
    root = tmp_path / "fx"
    I.make_fixture(root)
    p = root / I.RAW / "IWSLT14.TED.tst2011.de-en.en.xml"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(ln for ln in lines if 'seg id="3"' not in ln) + "\n")
    with pytest.raises(ChecksumError, match="tst2011"):
        I.verify(root)
    p.unlink()
    with pytest.raises(DataMissing, match="repro data download iwslt14_de_en|missing"):
        I.verify(root)


def test_real_data_counts_are_compared_and_recorded(fixture_dir):
    (fixture_dir / I.FIXTURE_MARK).unlink()
    pytest.importorskip("sacremoses", reason="sacremoses (Moses tokenizer port) not installed")
    with pytest.warns(UserWarning, match="fairseq"):
        I.prepare(fixture_dir)
    meta = json.loads((fixture_dir / "meta.json").read_text())
    assert "160239" in meta["count_warning"]
