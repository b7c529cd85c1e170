"""wmt16_ro_en: the fixture has the real layout and is deterministic; prepare extracts the
layout from archives shaped like the real ones (tgz with SGML dev/test, OPUS zip, Europarl
tgz) and verify rejects wrong line counts, unequal sides and truncated archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from data_scripts import wmt16_ro_en as W
from repro.errors import ChecksumError, DataMissing

pytestmark = pytest.mark.unit


def _sgm(lines: list[str], lang: str) -> str:
    body = "".join(f'<seg id="{i + 1}">{ln}</seg>\n' for i, ln in enumerate(lines))
    return f'<srcset setid="x" srclang="{lang}">\n<doc docid="d" genre="news">\n{body}</doc>\n</srcset>\n'


def _tgz(path: Path, members: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _fake_archives(root: Path, n_train: int = 3, n_eval: int = 2) -> None:
    root.mkdir(parents=True, exist_ok=True)
    ep_ro = "".join(f"Propoziția {i}.\n" for i in range(n_train))
    ep_en = "".join(f"Sentence {i}.\n" for i in range(n_train))
    _tgz(root / "training-parallel-ep-v8.tgz", {"training-parallel-ep-v8/europarl-v8.ro-en.ro": ep_ro,
                                                 "training-parallel-ep-v8/europarl-v8.ro-en.en": ep_en})
    with zipfile.ZipFile(root / "setimes2-en-ro.txt.zip", "w") as zf:
        zf.writestr("SETIMES.en-ro.ro", "Bună ziua.\n")
        zf.writestr("SETIMES.en-ro.en", "Good day.\n")
        zf.writestr("README", "opus\n")
    ro = [f"Știre {i} &amp; ceva" for i in range(n_eval)]
    en = [f"News {i} &amp; more" for i in range(n_eval)]
    _tgz(root / "dev-romanian-updated.tgz", {"dev/newsdev2016-roen-src.ro.sgm": _sgm(ro, "ro"),
                                              "dev/newsdev2016-roen-ref.en.sgm": _sgm(en, "en"),
                                              "dev/newsdev2016-enro-src.en.sgm": _sgm(en, "en")})
    _tgz(root / "test.tgz", {"test/newstest2016-roen-src.ro.sgm": _sgm(ro, "ro"),
                             "test/newstest2016-roen-ref.en.sgm": _sgm(en, "en")})


def test_fixture_layout_and_determinism(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    W.make_fixture(a)
    W.make_fixture(b)
    W.prepare(a)
    assert {p.name for p in a.iterdir()} - {W.FIXTURE_MARK} == set(W.INFO.layout)
    for f in W.FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert "țară" in (a / "train.ro").read_text(encoding="utf-8")  # real Romanian text with diacritics


def test_prepare_extracts_the_layout_from_the_archives(tmp_path, monkeypatch):
    root = tmp_path / "real"
    _fake_archives(root)
    monkeypatch.setattr(W, "EVAL_LINES", {"newsdev2016": 2, "newstest2016": 2})
    monkeypatch.setattr(W, "TRAIN_RANGE", (4, 4))
    W.verify(root)  # before prepare: the archives are checked
    W.prepare(root)
    assert (root / "train.ro").read_text(encoding="utf-8").splitlines() == \
        ["Propoziția 0.", "Propoziția 1.", "Propoziția 2.", "Bună ziua."]
    assert (root / "newstest2016.en").read_text().splitlines() == ["News 0 &amp; more", "News 1 &amp; more"]
    assert W.verify(root)["train.en"] == 4


def test_verify_rejects_wrong_counts_and_truncated_archives(tmp_path, monkeypatch):
    root = tmp_path / "real"
    _fake_archives(root)
    with pytest.raises(ChecksumError, match="610k"):
        W.prepare(root)  # ~610k training pairs in the real data
    monkeypatch.setattr(W, "TRAIN_RANGE", (4, 4))
    with pytest.raises(ChecksumError, match="expected 1999"):
        W.verify(root)  # the real eval sets have 1999 lines
    monkeypatch.setattr(W, "EVAL_LINES", {"newsdev2016": 2, "newstest2016": 2})
    W.verify(root)
    (root / "train.en").write_text("only one\n")
    with pytest.raises(ChecksumError, match="train.ro has 4 lines but train.en has 1"):
        W.verify(root)
    other = tmp_path / "trunc"
    _fake_archives(other)
    (other / "test.tgz").write_bytes((other / "test.tgz").read_bytes()[:20])
    with pytest.raises(ChecksumError):
        W.verify(other)
    with pytest.raises(DataMissing):
        W.verify(tmp_path / "empty")
