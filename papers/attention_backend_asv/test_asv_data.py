"""The data side of the attention back-end recipe: CN-Celeb/VoxCeleb list formats, the
CN-Celeb download (progress, resume, checksums) against a local HTTP server on
loopback, the VoxCeleb1 manual step, the synthetic speakers and fixtures."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from data_scripts import cnceleb, voxceleb1
from repro.errors import ChecksumError, DataMissing, ManualStepRequired

from .data import load_corpus

pytestmark = pytest.mark.unit

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="synthetic speakers need the espeak-ng binary (apt-get install espeak-ng)")


def _soundfile_ok() -> bool:
    try:
        import soundfile  # noqa: F401
    except OSError:
        return False
    return True


needs_audio = pytest.mark.skipif(not _soundfile_ok(), reason="soundfile needs libsndfile (apt-get install libsndfile1)")


# ----------------------------------------------------------------------------- list formats


def test_cnceleb_list_formats(tmp_path):
    (tmp_path / "enroll.map").write_text(
        "id00800-enroll id00800/singing-01-001.flac id00800/speech-02-003.flac\n\nid00801-enroll id00801/vlog-01-001.flac\n")
    assert cnceleb.read_enroll_map(tmp_path / "enroll.map") == {
        "id00800-enroll": ["id00800/singing-01-001.flac", "id00800/speech-02-003.flac"],
        "id00801-enroll": ["id00801/vlog-01-001.flac"]}
    (tmp_path / "trials.lst").write_text(
        "id00800-enroll test/id00800-singing-01-005.flac 1\nid00800-enroll test/id00801-vlog-01-002.flac 0\n"
        "id00801-enroll test/id00801-vlog-01-002.flac target\n")
    assert cnceleb.read_trials(tmp_path / "trials.lst") == [
        ("id00800-enroll", "test/id00800-singing-01-005.flac", 1),
        ("id00800-enroll", "test/id00801-vlog-01-002.flac", 0),
        ("id00801-enroll", "test/id00801-vlog-01-002.flac", 1)]
    for bad in ("id00800-enroll test/x.flac 2\n", "id00800-enroll test/x.flac\n"):
        (tmp_path / "bad.lst").write_text(bad)
        with pytest.raises(ValueError):
            cnceleb.read_trials(tmp_path / "bad.lst")
    (tmp_path / "bad.map").write_text("id00800-enroll\n")
    with pytest.raises(ValueError):
        cnceleb.read_enroll_map(tmp_path / "bad.map")


def test_voxceleb_trial_format(tmp_path):
    (tmp_path / "veri_test2.txt").write_text(
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n")
    assert voxceleb1.read_trials(tmp_path / "veri_test2.txt") == [
        (1, "id10270/x6uYqmx31kE/00001.wav", "id10270/8jEAjG6SegY/00008.wav"),
        (0, "id10270/x6uYqmx31kE/00001.wav", "id10300/ize_eiCFEg0/00003.wav")]
    (tmp_path / "bad.txt").write_text("yes a b\n")
    with pytest.raises(ChecksumError):
        voxceleb1.read_trials(tmp_path / "bad.txt")


def _cnceleb_tree(root: Path) -> None:
    """A text-only CN-Celeb raw tree (empty audio files): enough for verify/prepare."""
    c1, c2 = root / cnceleb.CN1, root / cnceleb.CN2
    for rel in ("data/id00000/speech-01-001.flac", "data/id00000/vlog-01-002.flac", "data/id00800/singing-01-001.flac",
                "data/id00800/drama-01-002.flac", "eval/test/id00800-speech-01-003.flac",
                "eval/test/id00801-vlog-01-001.flac", "eval/enroll/id00800-enroll.flac"):
        (c1 / rel).parent.mkdir(parents=True, exist_ok=True)
        (c1 / rel).write_bytes(b"")
    (c1 / "dev").mkdir(parents=True)
    (c1 / "dev" / "dev.lst").write_text("id00000\n")
    lists = c1 / "eval" / "lists"
    lists.mkdir(parents=True)
    (lists / "enroll.lst").write_text("id00800-enroll enroll/id00800-enroll.flac\n")
    (lists / "enroll.map").write_text("id00800-enroll id00800/singing-01-001.flac id00800/drama-01-002.flac\n")
    (lists / "trials.lst").write_text("id00800-enroll test/id00800-speech-01-003.flac 1\n"
                                      "id00800-enroll test/id00801-vlog-01-001.flac 0\n")
    (c2 / "data" / "id10001").mkdir(parents=True)
    (c2 / "data" / "id10001" / "interview-01-001.flac").write_bytes(b"")
    (c2 / "spk.lst").write_text("id10001\n")


def test_cnceleb_prepare_writes_the_recipe_lists(tmp_path):
    _cnceleb_tree(tmp_path)
    cnceleb.verify(tmp_path)
    cnceleb.prepare(tmp_path)
    corpus = load_corpus(tmp_path)
    assert corpus.train == [("CN-Celeb_flac/data/id00000/speech-01-001.flac", "id00000"),
                            ("CN-Celeb_flac/data/id00000/vlog-01-002.flac", "id00000"),
                            ("CN-Celeb2_flac/data/id10001/interview-01-001.flac", "id10001")]
    assert corpus.enroll == {"id00800-enroll": ["CN-Celeb_flac/data/id00800/singing-01-001.flac",
                                                "CN-Celeb_flac/data/id00800/drama-01-002.flac"]}
    assert corpus.trials[0] == ("id00800-enroll", "CN-Celeb_flac/eval/test/id00800-speech-01-003.flac", 1)
    (tmp_path / cnceleb.CN1 / "eval" / "test" / "id00801-vlog-01-001.flac").unlink()
    with pytest.raises(DataMissing):
        cnceleb.verify(tmp_path)


# ----------------------------------------------------------------------------- download over loopback


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` support (206), recording the ranges asked."""

    ranges: list = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self):  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over a folder holding CN-Celeb-shaped archives."""
    src = tmp_path / "src"
    _cnceleb_tree(src)
    www = tmp_path / "www"
    www.mkdir()
    with tarfile.open(www / "cn-celeb_v2.tar.gz", "w:gz") as tf:
        tf.add(src / cnceleb.CN1, arcname=cnceleb.CN1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src / cnceleb.CN2, arcname=cnceleb.CN2)
    blob = buf.getvalue()
    cut = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    for i, part in enumerate(("aa", "ab", "ac")):
        (www / f"cn-celeb2_v2.tar.gz{part}").write_bytes(blob[cut[i]:cut[i + 1]])
    handler = type("H", (_RangeHandler,), {"ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    md5 = hashlib.md5((www / "cn-celeb_v2.tar.gz").read_bytes()).hexdigest()
    files = (dataclasses.replace(cnceleb.INFO.files[0], url=f"{base}/cn-celeb_v2.tar.gz", md5=md5),
             *(dataclasses.replace(f, url=f"{base}/{f.filename}") for f in cnceleb.INFO.files[1:]))
    yield dict(www=www, files=files, cn2_md5=hashlib.md5(blob).hexdigest(), handler=handler)
    server.shutdown()


def test_cnceleb_download_resumes_and_checks_md5(served, tmp_path, monkeypatch):
    monkeypatch.setattr(cnceleb, "INFO", dataclasses.replace(cnceleb.INFO, files=served["files"]))
    monkeypatch.setattr(cnceleb, "CN2_MD5", served["cn2_md5"])
    root = tmp_path / "data"
    arch = root / "archives"
    arch.mkdir(parents=True)
    full = (served["www"] / "cn-celeb_v2.tar.gz").read_bytes()
    (arch / "cn-celeb_v2.tar.gz.part").write_bytes(full[: len(full) // 2])  # an interrupted download
    cnceleb.download(root, progress=True)
    assert f"bytes={len(full) // 2}-" in served["handler"].ranges  # resumed, not restarted
    assert (arch / "cn-celeb_v2.tar.gz").read_bytes() == full
    assert (arch / "cn-celeb2_v2.tar.gz").exists() and not (arch / "cn-celeb2_v2.tar.gzaa").exists()
    cnceleb.verify(root)
    cnceleb.prepare(root)
    assert load_corpus(root).trials[1][2] == 0
    cnceleb.download(root, progress=False)  # extracted already: nothing to fetch again


def test_cnceleb_download_rejects_a_corrupt_archive(served, tmp_path, monkeypatch):
    bad = (dataclasses.replace(served["files"][0], md5="0" * 32), *served["files"][1:])
    monkeypatch.setattr(cnceleb, "INFO", dataclasses.replace(cnceleb.INFO, files=bad))
    root = tmp_path / "data"
    with pytest.raises(ChecksumError):
        cnceleb.download(root, progress=False)
    assert not (root / "archives" / "cn-celeb_v2.tar.gz").exists()
    assert not (root / "archives" / "cn-celeb_v2.tar.gz.part").exists()  # never resumed from corrupt bytes
    good = served["files"]
    monkeypatch.setattr(cnceleb, "INFO", dataclasses.replace(cnceleb.INFO, files=good))
    monkeypatch.setattr(cnceleb, "CN2_MD5", "f" * 32)  # wrong published md5 of the joined CN-Celeb2 parts
    with pytest.raises(ChecksumError):
        cnceleb.download(root, progress=False)


# ----------------------------------------------------------------------------- VoxCeleb1 (gated)


def test_voxceleb1_download_is_a_manual_step_until_files_are_placed(tmp_path, monkeypatch):
    root = tmp_path / "vox"
    with pytest.raises(ManualStepRequired) as exc:
        voxceleb1.download(root, progress=False)
    assert "vox1_test_wav.zip" in exc.value.hint
    # the user places (here: tiny) archives; md5s are the published ones, so patch them for the test
    wav = {"id10001/yt1/00001.wav": b"RIFF", "id10270/yt2/00001.wav": b"RIFF", "id10270/yt3/00001.wav": b"RIFF"}
    for name, keys in (("vox1_dev_wav.zip", ["id10001/yt1/00001.wav"]),
                       ("vox1_test_wav.zip", ["id10270/yt2/00001.wav", "id10270/yt3/00001.wav"])):
        with zipfile.ZipFile(root / name, "w") as zf:
            for k in keys:
                zf.writestr(f"wav/{k}", wav[k])
    md5 = {n: hashlib.md5((root / n).read_bytes()).hexdigest() for n in ("vox1_dev_wav.zip", "vox1_test_wav.zip")}
    monkeypatch.setattr(voxceleb1, "DEV_ZIP", dataclasses.replace(voxceleb1.DEV_ZIP, md5=md5["vox1_dev_wav.zip"]))
    monkeypatch.setattr(voxceleb1, "TEST_ZIP", dataclasses.replace(voxceleb1.TEST_ZIP, md5=md5["vox1_test_wav.zip"]))
    (root / "veri_test2.txt").write_text("1 id10270/yt2/00001.wav id10270/yt3/00001.wav\n")
    voxceleb1.download(root, progress=False)
    voxceleb1.verify(root)
    voxceleb1.prepare(root)
    corpus = load_corpus(root)
    assert corpus.train == [("wav/id10001/yt1/00001.wav", "id10001")]
    assert corpus.enroll == {"id10270/yt2/00001.wav": ["wav/id10270/yt2/00001.wav"]}
    assert corpus.trials == [("id10270/yt2/00001.wav", "wav/id10270/yt3/00001.wav", 1)]
    monkeypatch.setattr(voxceleb1, "TEST_ZIP", dataclasses.replace(voxceleb1.TEST_ZIP, md5="0" * 32))
    with pytest.raises(ChecksumError):
        voxceleb1.verify(root)


# ----------------------------------------------------------------------------- synthetic speakers, fixtures


@needs_espeak
@needs_audio
def test_synthetic_speech_is_deterministic_and_genres_differ():
    import numpy as np

    from data_scripts import _speaker_synth as S

    voice = S.make_voices(3, seed=5)[1]
    assert S.make_voices(3, seed=5)[1] == voice and len(set(S.make_voices(50, seed=5))) == 50
    a = S.synthesize(S.UttSpec(voice, "speech", "x/1", (3, 4)))
    b = S.synthesize(S.UttSpec(voice, "speech", "x/1", (3, 4)))
    assert a.dtype == np.float32 and np.array_equal(a, b) and 0.1 < np.abs(a).max() <= 0.9
    noisy = S.synthesize(S.UttSpec(voice, "interview", "x/1", (3, 4)))
    assert noisy.shape == a.shape and not np.allclose(noisy, a)


@needs_espeak
@needs_audio
@pytest.mark.parametrize("name", ["cnceleb", "voxceleb1"])
def test_fixture_round_trips_through_prepare(name, tmp_path):
    mod = {"cnceleb": cnceleb, "voxceleb1": voxceleb1}[name]
    mod.make_fixture(tmp_path)
    mod.verify(tmp_path)
    mod.prepare(tmp_path)
    corpus = load_corpus(tmp_path)
    labels = [lab for _, _, lab in corpus.trials]
    assert 0 < sum(labels) < len(labels)
    assert all((tmp_path / p).is_file() for p in corpus.utterances())
    if name == "cnceleb":
        assert min(len(v) for v in corpus.enroll.values()) > 1  # multi-enrollment
    else:
        assert max(len(v) for v in corpus.enroll.values()) == 1  # single enrollment
