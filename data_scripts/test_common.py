"""Download (resume, checksums) against a loopback HTTP server; safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from data_scripts.common import (
    RemoteFile, build_into, check_ready, download, mark_ready, safe_extract,
)
from repro.errors import ChecksumError, ReproError, UnsafeArchive

pytestmark = pytest.mark.unit

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    drop_after: int | None = None  # close the connection after this many body bytes (once)
    requests: list = []

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.headers.get("Range"))
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        limit = type(self).drop_after
        if limit is not None:
            type(self).drop_after = None
            self.wfile.write(body[:limit])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    httpd.shutdown()


def test_download_checks_sha256(server, tmp_path):
    remote = RemoteFile(server, "file.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    path = download(remote, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_download_into_a_subfolder_named_by_the_filename(server, tmp_path):
    remote = RemoteFile(server, "CIPIC/file.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    path = download(remote, tmp_path, progress=False)
    assert path == tmp_path / "CIPIC" / "file.bin" and path.read_bytes() == PAYLOAD


def test_download_resumes_after_interruption(server, tmp_path):
    remote = RemoteFile(server, "file.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    _Handler.drop_after = 300_000
    path = download(remote, tmp_path, progress=False, retries=2)
    assert path.read_bytes() == PAYLOAD
    assert _Handler.requests[0] is None and _Handler.requests[1] == "bytes=300000-"


def test_partial_file_is_resumed_across_invocations(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:12345])
    remote = RemoteFile(server, "file.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    download(remote, tmp_path, progress=False)
    assert _Handler.requests == ["bytes=12345-"]


def test_corrupt_download_is_rejected_and_not_kept(server, tmp_path):
    remote = RemoteFile(server, "file.bin", sha256="0" * 64, size=len(PAYLOAD))
    with pytest.raises(ChecksumError, match="sha256"):
        download(remote, tmp_path, progress=False)
    assert not (tmp_path / "file.bin").exists() and not (tmp_path / "file.bin.part").exists()


def test_unreachable_host_gives_a_clear_error(tmp_path):
    remote = RemoteFile("http://127.0.0.1:9/nothing", "x.bin")
    with pytest.raises(ReproError, match="failed after 0 retries") as exc:
        download(remote, tmp_path, progress=False, retries=0)
    assert "resumes" in exc.value.hint


def _tar(path: Path, members: list[tuple[str, bytes | None, str | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_safe_extract_accepts_normal_archives(tmp_path):
    arc = _tar(tmp_path / "ok.tgz", [("d/a.txt", b"a", None), ("d/link", None, "a.txt")])
    safe_extract(arc, tmp_path / "out")
    assert (tmp_path / "out/d/a.txt").read_bytes() == b"a"


@pytest.mark.parametrize("members,msg", [
    ([("../evil.txt", b"x", None)], "'..'"),
    ([("/abs/evil.txt", b"x", None)], "absolute"),
    ([("d/link", None, "../../etc/passwd")], "outside"),
    ([("d/link", None, "/etc/passwd")], "absolute"),
])
def test_safe_extract_refuses_escapes(tmp_path, members, msg):
    arc = _tar(tmp_path / "bad.tgz", [("d/fine.txt", b"ok", None), *members])
    with pytest.raises(UnsafeArchive, match=msg):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out" / "d" / "fine.txt").exists()  # nothing written before the check


def test_safe_extract_refuses_zip_slip(tmp_path):
    arc = tmp_path / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("../../evil.txt", b"x")
    with pytest.raises(UnsafeArchive):
        safe_extract(arc, tmp_path / "out")


def _truncated_tgz(tmp_path) -> bytes:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(bytes(range(256)) * 400)
    full = tmp_path / "full.tgz"
    with tarfile.open(full, "w:gz") as tf:
        tf.add(tmp_path / "src" / "a.bin", arcname="a.bin")
    data = full.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize("case", ["random-0", "random-1", "random-2", "random-3", "long-extra-field",
                                  "truncated-tgz", "truncated-zip"])
def test_corrupt_archive_is_a_checksum_error(tmp_path, case):
    """A damaged download (whatever the decompressor raises: EOFError, zlib.error,
    BadGzipFile, ReadError, BadZipFile) is a ChecksumError, never a traceback."""
    import random

    if case.startswith("random"):
        data = b"\x1f\x8b" + random.Random(int(case[-1])).randbytes(100)
    elif case == "long-extra-field":  # gzip header announcing a 65535-byte extra field
        data = b"\x1f\x8b\x08\x04" + bytes(6) + b"\xff\xff" + bytes(10)
    elif case == "truncated-tgz":
        data = _truncated_tgz(tmp_path)
    else:
        with zipfile.ZipFile(tmp_path / "full.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("a.bin", os.urandom(50_000))
        raw = (tmp_path / "full.zip").read_bytes()
        data = raw[:40] + bytes(200) + raw[240:]  # member data damaged, directory intact
    arc = tmp_path / ("broken.zip" if case == "truncated-zip" else "broken.tgz")
    arc.write_bytes(data)
    with pytest.raises(ChecksumError):
        safe_extract(arc, tmp_path / "out")


def test_readiness_detects_changed_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    mark_ready(tmp_path, [tmp_path / "a.txt"])
    assert check_ready(tmp_path) == (True, "")
    (tmp_path / "a.txt").write_text("hell")
    ok, why = check_ready(tmp_path)
    assert not ok and "changed size" in why


def test_build_into_leaves_nothing_on_failure(tmp_path):
    def broken(tmp):
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("crash while building")

    with pytest.raises(RuntimeError):
        build_into(tmp_path / "ds", broken)
    assert not (tmp_path / "ds").exists() and list(tmp_path.iterdir()) == []
