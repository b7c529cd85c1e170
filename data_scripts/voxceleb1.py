"""VoxCeleb1 (licence-gated): the attention back-end paper's single-enrollment experiment.

The audio sits behind the VoxCeleb licence form, so ``download`` prints the manual
step; once the user placed the archives, it verifies their md5 (the values the
VoxCeleb site publishes, as listed by clovaai/voxceleb_trainer ``lists/fileparts.txt``),
extracts them and fetches the public Vox1-O (cleaned) trial list. Layout::

    wav/<spk>/<youtube id>/<nnnnn>.wav     both archives extract into wav/
    veri_test2.txt                         "<1|0> <spk>/<yt>/<n>.wav <spk>/<yt>/<n>.wav"
    prepared/train.lst   "<path> <spk>"    every speaker not in the trial list (Vox1 dev)
    prepared/enroll.lst  "<model> <path>"  one enrollment utterance per model (single enrollment)
    prepared/trials.lst  "<model> <path> <1|0>"

VoxCeleb2 (AAC in .m4a) would need FFmpeg/torchcodec to decode; it is not scripted here.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
from pathlib import Path

from repro.errors import ChecksumError, DataMissing, ReproError

from .common import DatasetInfo, RemoteFile, check_file, download as _download, manual_step, safe_extract

TRIALS = "veri_test2.txt"
TRIALS_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/veri_test2.txt"
DEV_PARTS = (
    RemoteFile("", "vox1_dev_wav_partaa", md5="e395d020928bc15670b570a21695ed96"),
    RemoteFile("", "vox1_dev_wav_partab", md5="bbfaaccefab65d82b21903e81a8a8020"),
    RemoteFile("", "vox1_dev_wav_partac", md5="017d579a2a96a077f40042ec33e51512"),
    RemoteFile("", "vox1_dev_wav_partad", md5="7bb1e9f70fddc7a678fa998ea8b3ba19"),
)
DEV_ZIP = RemoteFile("", "vox1_dev_wav.zip", md5="ae63e55b951748cc486645f532ba230b")
TEST_ZIP = RemoteFile("", "vox1_test_wav.zip", md5="185fdc63c3c739954633d50379a3d102")
PREPARED = ("prepared/train.lst", "prepared/enroll.lst", "prepared/trials.lst")

INFO = DatasetInfo(
    name="voxceleb1",
    description="VoxCeleb1: 1,251 celebrities; Vox1-O (cleaned) trials for single-enrollment verification",
    homepage="https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html",
    licence="CC BY 4.0 (audio behind the VoxCeleb request form)",
    size="about 35 GB (dev in four parts + test zip)",
    files=(*DEV_PARTS, DEV_ZIP, TEST_ZIP),
    gated=True,
    manual_step="""
Request access at https://www.robots.ox.ac.uk/~vgg/data/voxceleb/ (VoxCeleb1), download
vox1_dev_wav_partaa..partad (or the joined vox1_dev_wav.zip) and vox1_test_wav.zip, and
put them in the dataset folder. If this machine cannot reach the web, also place the
Vox1-O cleaned trial list veri_test2.txt there. Then run `repro data download voxceleb1`
(verifies md5, extracts, prepares).""",
    layout=(TRIALS, *PREPARED),
    used_by=("attention_backend_asv",),
)


def _placed(root: Path, f: RemoteFile) -> Path | None:
    p = root / f.filename
    return p if p.exists() else None


def _archives_placed(root: Path) -> bool:
    have_dev = _placed(root, DEV_ZIP) or all(_placed(root, p) for p in DEV_PARTS)
    return bool(have_dev and _placed(root, TEST_ZIP))


def _check_archives(root: Path) -> None:
    """md5 of the placed archives (the joined dev zip, or each of its parts)."""
    if (root / DEV_ZIP.filename).exists():
        check_file(root / DEV_ZIP.filename, DEV_ZIP)
    else:
        for p in DEV_PARTS:
            check_file(root / p.filename, p)
    check_file(root / TEST_ZIP.filename, TEST_ZIP)


def _unpack(root: Path) -> None:
    dev_zip = root / DEV_ZIP.filename
    if not dev_zip.exists():
        tmp = dev_zip.with_name(dev_zip.name + ".part")
        with open(tmp, "wb") as out:
            for p in DEV_PARTS:
                with open(root / p.filename, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
        os.replace(tmp, dev_zip)
        check_file(dev_zip, DEV_ZIP)
    safe_extract(dev_zip, root)
    safe_extract(root / TEST_ZIP.filename, root)


def download(root: Path, progress: bool = True) -> None:
    """Gated: nothing to download until the user placed the archives (then verify and
    prepare unpack them); fetches the public Vox1-O trial list when it is missing."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "wav").is_dir() and not _archives_placed(root):
        raise manual_step(INFO, root)
    if not (root / TRIALS).exists():
        try:  # public, unversioned: no published checksum; verify() checks its format
            _download(RemoteFile(TRIALS_URL, TRIALS), root, progress=progress)
        except (ReproError, urllib.error.URLError, OSError) as exc:
            raise DataMissing(f"could not fetch {TRIALS_URL}: {exc}",
                              hint=f"place veri_test2.txt (Vox1-O cleaned) in {root}") from None


def verify(root: Path) -> None:
    """Placed archives against their published md5; once extracted, every file the
    trial list names must exist."""
    if not (root / "wav").is_dir():
        if not _archives_placed(root):
            raise manual_step(INFO, root)
        _check_archives(root)
        return
    for f in (DEV_ZIP, TEST_ZIP):
        if (root / f.filename).exists():
            check_file(root / f.filename, f)
    if (root / TRIALS).exists():
        trials = read_trials(root / TRIALS)
        utts = {u for _, a, b in trials for u in (a, b)}
        missing = sorted(u for u in utts if not (root / "wav" / u).is_file())
        if missing:
            raise DataMissing(f"{len(missing)} trial files are missing under wav/, e.g. {missing[0]}",
                              hint="re-extract vox1_test_wav.zip: repro data prepare voxceleb1")


def read_trials(path: Path) -> list[tuple[int, str, str]]:
    """VoxCeleb trial list ``<1|0> <enroll> <test>`` -> [(label, enroll, test)]."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ChecksumError(f"{path}:{n}: expected '<1|0> <enroll> <test>', got {line!r}")
        out.append((int(parts[0]), parts[1], parts[2]))
    return out


def prepare(root: Path) -> None:
    """Unpack the verified archives (first time), then write the recipe's lists."""
    if not (root / "wav").is_dir():
        _unpack(root)
    if not (root / TRIALS).exists():
        raise DataMissing(f"{root / TRIALS} is missing",
                          hint=f"repro data download voxceleb1 (fetches it), or place veri_test2.txt in {root}")
    verify(root)
    trials = read_trials(root / TRIALS)
    test_spk = {u.split("/")[0] for _, a, b in trials for u in (a, b)}
    wav = root / "wav"
    train = []
    for spk in sorted(os.listdir(wav)):
        if spk in test_spk:
            continue
        for yt in sorted(os.listdir(wav / spk)):
            train += [f"wav/{spk}/{yt}/{f} {spk}" for f in sorted(os.listdir(wav / spk / yt)) if f.endswith(".wav")]
    if not train:
        raise DataMissing(f"no training speakers under {wav}", hint="repro data download voxceleb1")
    models = sorted({a for _, a, _ in trials})
    out = root / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.lst").write_text("\n".join(train) + "\n")
    (out / "enroll.lst").write_text("".join(f"{m} wav/{m}\n" for m in models))
    (out / "trials.lst").write_text("".join(f"{a} wav/{b} {lab}\n" for lab, a, b in trials))


def make_fixture(root: Path) -> None:
    """Synthetic speakers in VoxCeleb1's layout: 6 dev speakers, 4 test speakers with two
    'YouTube' sessions (different genres) each, and a veri_test2.txt over the test ones."""
    from . import _speaker_synth as S

    voices = S.make_voices(10, seed=1)
    dev = [f"id{10001 + i}" for i in range(6)]
    test = [f"id{10270 + i}" for i in range(4)]
    jobs, test_utts = [], []
    for spk, voice in zip(dev + test, voices):
        genres = S.speaker_genres(f"vox-{spk}", 2)
        for s, genre in enumerate(genres):
            yt = f"yt{S.stable_seed(spk, s) % 10**8:08d}"
            for u in range(2):
                rel = f"{spk}/{yt}/{u + 1:05d}.wav"
                jobs.append((S.UttSpec(voice, genre, f"vox/{rel}", (3, 5)), root / "wav" / rel))
                if spk in test:
                    test_utts.append(rel)
    S.render(jobs)
    lines = [f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}"
             for i, a in enumerate(test_utts) for b in test_utts[i + 1:]]
    (root / TRIALS).write_text("\n".join(lines) + "\n")
