"""wmt14_en_de: the fixture has the real layout, verify catches truncated files and
wrong counts, and download fetches (and resumes) every file from a loopback server
with all other network access blocked."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from data_scripts import wmt14_en_de as W
from data_scripts.common import RemoteFile
from repro.errors import ChecksumError, DataMissing

pytestmark = pytest.mark.unit


@pytest.fixture
def fixture_dir(tmp_path) -> Path:
    root = tmp_path / "fixture"
    W.make_fixture(root)
    return root


def test_fixture_layout_equals_the_real_layout(fixture_dir):
    W.prepare(fixture_dir)
    names = {p.name for p in fixture_dir.iterdir()} - {W.FIXTURE_MARK}
    assert names == set(W.INFO.layout)
    assert set(W.FILES) == {f.filename for f in W.INFO.files}  # what download() fetches
    assert {f.url.rsplit("/", 1)[1] for f in W.INFO.files} == set(W.FILES)


def test_fixture_is_deterministic_and_holds_real_phrase_pairs(tmp_path, fixture_dir):
    other = tmp_path / "again"
    W.make_fixture(other)
    for f in W.FILES:
        assert (fixture_dir / f).read_bytes() == (other / f).read_bytes()
    en = (fixture_dir / "train.en").read_text().splitlines()
    de = (fixture_dir / "train.de").read_text().splitlines()
    assert ("Germany", "Deutschland") in set(zip(en, de))


def test_verify_catches_a_truncated_file(fixture_dir):
    W.verify(fixture_dir)
    p = fixture_dir / "newstest2014.de"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ChecksumError, match="newstest2014"):
        W.verify(fixture_dir)


def test_verify_checks_the_papers_counts_on_real_data(fixture_dir, monkeypatch):
    (fixture_dir / W.FIXTURE_MARK).unlink()
    with pytest.raises(ChecksumError):  # 24 lines, not the paper's 3000
        W.verify(fixture_dir)
    n_train = W.count_lines(fixture_dir / "train.en")
    n_vocab = W.count_lines(fixture_dir / "vocab.50K.en"), W.count_lines(fixture_dir / "vocab.50K.de")
    monkeypatch.setattr(W, "EXPECTED_LINES", {s: 24 for s in ("newstest2013", "newstest2014", "newstest2015")})
    monkeypatch.setattr(W, "TRAIN_RANGE", (n_train, n_train))
    monkeypatch.setattr(W, "VOCAB_RANGE", (min(n_vocab), max(n_vocab)))
    W.verify(fixture_dir)
    for lang in W.LANGS:  # the same truncation on both sides: only the count can tell
        p = fixture_dir / f"newstest2014.{lang}"
        p.write_text("".join(p.read_text().splitlines(keepends=True)[:20]))
    with pytest.raises(ChecksumError, match="2737|24"):
        W.verify(fixture_dir)


def test_verify_names_missing_files(fixture_dir):
    (fixture_dir / "dict.en-de").unlink()
    with pytest.raises(DataMissing, match="dict.en-de"):
        W.verify(fixture_dir)


# --------------------------------------------------------------------------- download over loopback


def _handler(root: Path, log: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            body = (root / self.path.lstrip("/")).read_bytes()
            rng = self.headers.get("Range")
            log.append((self.path, rng))
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture
def loopback(fixture_dir, monkeypatch):
    log: list = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fixture_dir, log))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    real_connect = socket.socket.connect

    def guarded(self, address):  # nothing but the loopback server may be reached
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost"):
            raise OSError(f"network blocked in tests: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    files = tuple(RemoteFile(base + f.filename, f.filename) for f in W.INFO.files)
    monkeypatch.setattr(W, "INFO", W.INFO.__class__(**{**W.INFO.__dict__, "files": files}))
    yield log
    httpd.shutdown()


def test_download_fetches_every_file_and_resumes_a_partial_one(tmp_path, fixture_dir, loopback):
    dest = tmp_path / "real"
    dest.mkdir()
    whole = (fixture_dir / "train.de").read_bytes()
    (dest / "train.de.part").write_bytes(whole[:1000])  # an interrupted earlier download
    W.download(dest)
    for f in W.FILES:
        assert (dest / f).read_bytes() == (fixture_dir / f).read_bytes()
    assert not list(dest.glob("*.part"))
    assert ("/train.de", "bytes=1000-") in loopback
    shutil.copy(fixture_dir / W.FIXTURE_MARK, dest / W.FIXTURE_MARK)
    W.prepare(dest)  # verifies, then writes meta.json
    assert (dest / W.META).exists()
    n_requests = len(loopback)
    W.download(dest)  # complete files are not fetched again
    assert len(loopback) == n_requests
