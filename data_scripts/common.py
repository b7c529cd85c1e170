"""Shared helpers of the dataset scripts: resumable download with SHA-256 checks,
safe archive extraction, the ``$REPRO_DATA`` root, readiness markers, manual steps.

A dataset module ``data_scripts/<name>.py`` defines ``INFO`` (a :class:`DatasetInfo`)
and four functions taking the dataset folder:

* ``download(root)``: fetch the raw files (resumable, checksummed); gated data raises
  :class:`~repro.errors.ManualStepRequired` with the exact manual step;
* ``verify(root)``: check the raw files (checksums where the publisher gives them,
  otherwise sizes/line counts); raise :class:`~repro.errors.ChecksumError` or
  :class:`~repro.errors.DataMissing`;
* ``prepare(root)``: turn verified raw files into the layout the recipes read;
* ``make_fixture(root)``: write a tiny synthetic stand-in in the *same* layout.

The engine marks a folder ready (``.repro-ready.json``, with the size of every
prepared file) only after ``prepare`` succeeded, and checks those sizes before a run,
so a truncated or half-prepared dataset is reported with the command that fixes it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from repro.errors import ChecksumError, DataMissing, ManualStepRequired, ReproError, UnsafeArchive
from repro.paths import data_root, dataset_dir

READY_FILE = ".repro-ready.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    sha256: str | None = None  # None where the publisher gives no checksum
    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    homepage: str
    licence: str
    size: str  # human-readable download size
    files: tuple[RemoteFile, ...] = ()
    gated: bool = False  # behind a licence form: download() prints the manual step
    manual_step: str = ""  # for gated data: what the user must do, where to put the files
    layout: tuple[str, ...] = ()  # files (relative paths) a prepared dataset holds; fixtures must match
    used_by: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- hashing


def file_hash(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, remote: RemoteFile) -> None:
    if not path.exists():
        raise DataMissing(f"{path} is missing")
    if remote.size is not None and path.stat().st_size != remote.size:
        raise ChecksumError(
            f"{path}: size {path.stat().st_size} != expected {remote.size} (truncated or corrupt)"
        )
    for algo in ("sha256", "md5"):
        want = getattr(remote, algo)
        if want:
            got = file_hash(path, algo)
            if got != want:
                raise ChecksumError(f"{path}: {algo} {got} != published {want} (corrupt download)")


# --------------------------------------------------------------------------- download


def download(
    remote: RemoteFile,
    dest_dir: Path,
    *,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download ``remote`` into ``dest_dir`` and check it; resume a partial ``.part``.

    The file appears under its final name only after its checksum matched, so an
    interrupted download is never mistaken for a complete one.
    """
    final = dest_dir / remote.filename  # ``filename`` may name a subfolder ("CIPIC/subject_003.sofa")
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        check_file(final, remote)
        return final
    part = final.with_name(final.name + ".part")
    attempt = 0
    while True:
        try:
            _fetch(remote.url, part, expected=remote.size, progress=progress, timeout=timeout)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise ReproError(
                    f"download of {remote.url} failed after {retries} retries: {exc}",
                    hint="run the same `repro data download` command again: it resumes where it stopped",
                ) from None
            time.sleep(min(2**attempt, 10))
    try:
        check_file(part, remote)
    except ChecksumError:
        part.unlink(missing_ok=True)  # a corrupt partial must not be resumed
        raise
    os.replace(part, final)
    return final


def _fetch(url: str, part: Path, *, expected: int | None, progress: bool, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    if expected is not None and have == expected:
        return
    req = urllib.request.Request(url, headers={"User-Agent": "repro-data/0.1"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        status = getattr(resp, "status", 200)
        if have and status != 206:  # server ignored the range: start over
            have = 0
        length = resp.headers.get("Content-Length")
        total = (have + int(length)) if length is not None else expected
        mode = "ab" if have else "wb"
        with open(part, mode) as out, _progress(part.name, total, have, progress) as advance:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                advance(len(block))
    if expected is not None and part.stat().st_size < expected:
        raise ConnectionError(f"connection closed at {part.stat().st_size} of {expected} bytes")


class _progress:
    def __init__(self, name: str, total: int | None, done: int, enabled: bool) -> None:
        self.name, self.total, self.done, self.enabled = name, total, done, enabled
        self._bar = None

    def __enter__(self) -> Callable[[int], None]:
        if self.enabled:
            from rich.progress import (
                BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn,
            )

            self._bar = Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), transient=False,
            )
            self._bar.start()
            task = self._bar.add_task(self.name, total=self.total, completed=self.done)
            return lambda n: self._bar.advance(task, n)
        return lambda n: None

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- archives


def _is_within(base: Path, target: Path) -> bool:
    base = base.resolve()
    try:
        target.resolve().relative_to(base)
        return True
    except ValueError:
        return False


def _check_member_name(name: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path: refused")
    if ".." in p.parts:
        raise UnsafeArchive(f"archive member {name!r} climbs out of the target with '..': refused")


# what a truncated or corrupt archive raises while it is read (a damaged download), as opposed
# to an unsafe one (UnsafeArchive) or a failing disk (other OSErrors)
_CORRUPT_ARCHIVE = (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError)


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract a tar/zip archive into ``target``, refusing absolute paths, ``..``
    components and links that point outside ``target``. Nothing is written unless
    every member passed the checks. A truncated or corrupt archive is a ChecksumError."""
    try:
        return _safe_extract(archive, target)
    except _CORRUPT_ARCHIVE as exc:
        raise ChecksumError(f"{archive}: not a readable archive ({type(exc).__name__}: {exc}); "
                            "download it again") from None


def _safe_extract(archive: Path, target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member_name(info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchive(f"archive member {info.filename!r} is a symbolic link: refused")
            for info in infos:
                zf.extract(info, target)
                out.append(target / info.filename)
        return out
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            _check_member_name(m.name)
            if m.issym() or m.islnk():
                link = m.linkname
                if PurePosixPath(link).is_absolute():
                    raise UnsafeArchive(f"archive link {m.name!r} -> {link!r} is absolute: refused")
                base = (target / m.name).parent if m.issym() else target
                if not _is_within(target, base / link):
                    raise UnsafeArchive(f"archive link {m.name!r} -> {link!r} points outside: refused")
            elif not (m.isfile() or m.isdir()):
                raise UnsafeArchive(f"archive member {m.name!r} is a device or fifo: refused")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(target, members=members, **kwargs)
        out = [target / m.name for m in members]
    return out


def archive_names(archive: Path) -> list[str]:
    """Member names of a tar/zip archive; an unreadable one is a ChecksumError."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return zf.namelist()
        with tarfile.open(archive) as tf:
            return tf.getnames()
    except (*_CORRUPT_ARCHIVE, OSError) as exc:
        raise ChecksumError(f"{archive}: not a readable archive ({exc}); download it again") from None


def extract_folder(archive: Path, folder: str, dest: Path) -> None:
    """Replace ``dest`` with the top-level ``folder`` of ``archive`` (safely extracted into a
    temporary directory beside ``dest``, so an interrupted extraction leaves no half folder)."""
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        safe_extract(archive, Path(tmp))
        shutil.move(str(Path(tmp) / folder), str(dest))


# --------------------------------------------------------------------------- readiness


def mark_ready(root: Path, files: Iterable[Path], info: dict | None = None) -> None:
    from repro.ledger import atomic_write_json

    manifest = {str(p.relative_to(root)): p.stat().st_size for p in sorted(files) if p.is_file()}
    atomic_write_json(root / READY_FILE, {"files": manifest, **(info or {})})


def check_ready(root: Path) -> tuple[bool, str]:
    """(ready, problem). Cheap: compares sizes recorded at prepare time."""
    marker = root / READY_FILE
    if not marker.exists():
        return False, "not prepared"
    try:
        manifest = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False, "readiness marker is unreadable"
    for rel, size in manifest.items():
        p = root / rel
        if not p.exists():
            return False, f"{rel} is missing"
        if p.stat().st_size != size:
            return False, f"{rel} changed size since it was prepared (corrupt?)"
    return True, ""


def build_into(final: Path, builder: Callable[[Path], None]) -> Path:
    """Run ``builder(tmp)`` in a sibling temporary folder and move it into place, so a
    crash never leaves a half-built dataset under the final name."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        builder(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def manual_step(info: DatasetInfo, root: Path) -> ManualStepRequired:
    return ManualStepRequired(
        f"{info.name} is licence-gated and cannot be downloaded automatically.",
        hint=f"{info.manual_step.strip()}\nPlace the files under {root}, then run: repro data prepare {info.name}",
    )


__all__ = [
    "DatasetInfo", "RemoteFile", "download", "safe_extract", "check_file", "file_hash", "mark_ready",
    "check_ready", "build_into", "manual_step", "data_root", "dataset_dir", "READY_FILE",
]
