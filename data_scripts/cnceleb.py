"""CN-Celeb 1 + 2 (OpenSLR 82): multi-genre Chinese celebrity speech, the corpus of the
attention back-end paper's multi-enrollment experiment.

Raw layout (the v2 FLAC release, as extracted from the two public archives)::

    CN-Celeb_flac/data/<spk>/<genre>-<session>-<utt>.flac     # CN-Celeb1, 1000 speakers
    CN-Celeb_flac/dev/dev.lst                                 # the 800 training speakers
    CN-Celeb_flac/eval/enroll/<spk>-enroll.flac               # enrollment, concatenated
    CN-Celeb_flac/eval/test/<spk>-<genre>-<session>-<utt>.flac
    CN-Celeb_flac/eval/lists/enroll.lst    "<model> enroll/<spk>-enroll.flac"
    CN-Celeb_flac/eval/lists/enroll.map    "<model> <spk>/<utt>.flac <spk>/<utt>.flac ..."  (paths under data/)
    CN-Celeb_flac/eval/lists/trials.lst    "<model> test/<utt>.flac <1|0>"
    CN-Celeb2_flac/data/<spk>/<utt>.flac, CN-Celeb2_flac/spk.lst

``enroll.map`` keeps the *separate* enrollment utterances of each enrolled speaker:
that is the multi-enrollment protocol (the paper's back-end sees the set; cosine
scoring averages it, as WeSpeaker's "CNC-Eval-Avg" trials do).

``prepare`` writes the lists the recipes read (paths relative to the dataset root)::

    prepared/train.lst   "<path> <spk>"                       CN-Celeb1 dev + CN-Celeb2
    prepared/enroll.lst  "<model> <path> [<path> ...]"        from enroll.map
    prepared/trials.lst  "<model> <path> <1|0>"               from trials.lst

The fixture (``make_fixture``) writes the same raw layout from synthetic espeak-ng
speakers (``_speaker_synth``) in seconds; ``make_corpus`` builds larger synthetic
corpora in this layout for CPU analogues.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from repro.errors import ChecksumError, DataMissing

from .common import DatasetInfo, RemoteFile, check_file, download as _download, safe_extract

CN1 = "CN-Celeb_flac"
CN2 = "CN-Celeb2_flac"
CN2_MD5 = "55c47cf0b6d0bf793e88bf79d5dfc660"  # md5 of the concatenated cn-celeb2_v2.tar.gz
PREPARED = ("prepared/train.lst", "prepared/enroll.lst", "prepared/trials.lst")

INFO = DatasetInfo(
    name="cnceleb",
    description="CN-Celeb 1+2 (v2 FLAC): ~3,000 speakers, 11 genres; multi-enrollment eval lists",
    homepage="https://www.openslr.org/82/",
    licence="CC BY-SA 4.0 (OpenSLR 82)",
    size="tens of GB (two tar.gz archives; CN-Celeb2 in three parts)",
    files=(
        # md5 as checked by the WeSpeaker cnceleb/v2 recipe (local/download_data.sh); OpenSLR
        # publishes no per-part checksum for CN-Celeb2, whose concatenation is checked instead.
        RemoteFile("https://www.openslr.org/resources/82/cn-celeb_v2.tar.gz", "cn-celeb_v2.tar.gz",
                   md5="7ab1b214028a7439e26608b2d5a0336c"),
        RemoteFile("https://www.openslr.org/resources/82/cn-celeb2_v2.tar.gzaa", "cn-celeb2_v2.tar.gzaa"),
        RemoteFile("https://www.openslr.org/resources/82/cn-celeb2_v2.tar.gzab", "cn-celeb2_v2.tar.gzab"),
        RemoteFile("https://www.openslr.org/resources/82/cn-celeb2_v2.tar.gzac", "cn-celeb2_v2.tar.gzac"),
    ),
    layout=(
        f"{CN1}/dev/dev.lst", f"{CN1}/eval/lists/enroll.lst", f"{CN1}/eval/lists/enroll.map",
        f"{CN1}/eval/lists/trials.lst", f"{CN2}/spk.lst", *PREPARED,
    ),
    used_by=("attention_backend_asv",),
)


# ----------------------------------------------------------------------------- download


def _md5_of(paths: list[Path]) -> str:
    h = hashlib.md5()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def download(root: Path, progress: bool = True) -> None:
    """Download both archives (resumable, checksummed), then extract them under ``root``."""
    arch = root / "archives"
    have1, have2 = (root / CN1 / "eval").is_dir(), (root / CN2 / "data").is_dir()
    if have1 and have2:
        return  # extracted earlier (the archives may have been deleted to save space)
    cn1 = None if have1 else _download(INFO.files[0], arch, progress=progress)
    cn2 = arch / "cn-celeb2_v2.tar.gz"
    if not have2 and not cn2.exists():
        parts = [_download(f, arch, progress=progress) for f in INFO.files[1:]]
        md5 = _md5_of(parts)
        if md5 != CN2_MD5:
            for p in parts:
                p.unlink(missing_ok=True)  # a corrupt part cannot be told apart: fetch all again
            raise ChecksumError(f"cn-celeb2_v2.tar.gz parts: md5 {md5} != published {CN2_MD5}",
                                hint="run `repro data download cnceleb` again")
        tmp = cn2.with_name(cn2.name + ".part")
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
        os.replace(tmp, cn2)
        for p in parts:
            p.unlink()
    if cn1 is not None:
        safe_extract(cn1, root)
    if not have2:
        safe_extract(cn2, root)


def verify(root: Path) -> None:
    """Archives (when still present) against their md5; the extracted lists and every
    enrollment/test file they name must exist."""
    arch = root / "archives"
    if (arch / INFO.files[0].filename).exists():
        check_file(arch / INFO.files[0].filename, INFO.files[0])
    if (arch / "cn-celeb2_v2.tar.gz").exists():
        md5 = _md5_of([arch / "cn-celeb2_v2.tar.gz"])
        if md5 != CN2_MD5:
            raise ChecksumError(f"cn-celeb2_v2.tar.gz: md5 {md5} != published {CN2_MD5}")
    for rel in INFO.layout:
        if rel.startswith("prepared/"):
            continue
        if not (root / rel).is_file():
            raise DataMissing(f"{root / rel} is missing", hint="repro data download cnceleb")
    lists = root / CN1 / "eval" / "lists"
    needed = set()
    for model, utts in read_enroll_map(lists / "enroll.map").items():
        needed.update(f"{CN1}/data/{u}" for u in utts)
    for _model, test, _label in read_trials(lists / "trials.lst"):
        needed.add(f"{CN1}/eval/{test}")
    missing = sorted(p for p in needed if not (root / p).is_file())
    if missing:
        raise DataMissing(f"{len(missing)} files named by the eval lists are missing, e.g. {missing[0]}",
                          hint="repro data download cnceleb")


# ----------------------------------------------------------------------------- list formats


def read_enroll_map(path: Path) -> dict[str, list[str]]:
    """``<model> <utt> [<utt> ...]`` -> {model: [utt, ...]} (utts relative to ``data/``)."""
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{path}:{n}: a model without enrollment utterances: {line!r}")
        if parts[0] in out:
            raise ValueError(f"{path}:{n}: model {parts[0]} listed twice")
        out[parts[0]] = parts[1:]
    return out


def read_trials(path: Path) -> list[tuple[str, str, int]]:
    """``<model> <test> <1|0>`` (also ``target``/``nontarget``) -> [(model, test, label)]."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"{path}:{n}: expected '<model> <test> <label>', got {line!r}")
        lab = {"1": 1, "0": 0, "target": 1, "nontarget": 0}.get(parts[2])
        if lab is None:
            raise ValueError(f"{path}:{n}: label must be 1/0 or target/nontarget, got {parts[2]!r}")
        out.append((parts[0], parts[1], lab))
    return out


def _speaker_files(data_dir: Path, spk: str) -> list[str]:
    d = data_dir / spk
    if not d.is_dir():
        return []
    return sorted(f"{spk}/{e.name}" for e in os.scandir(d) if e.name.endswith((".flac", ".wav")))


def prepare(root: Path) -> None:
    """Write ``prepared/{train,enroll,trials}.lst`` (paths relative to ``root``)."""
    out = root / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    train_lines = []
    for base, spk_list in ((CN1, root / CN1 / "dev" / "dev.lst"), (CN2, root / CN2 / "spk.lst")):
        for spk in spk_list.read_text().split():
            train_lines += [f"{base}/data/{u} {spk}" for u in _speaker_files(root / base / "data", spk)]
    if not train_lines:
        raise DataMissing(f"no training utterances under {root}", hint="repro data download cnceleb")
    lists = root / CN1 / "eval" / "lists"
    enroll = read_enroll_map(lists / "enroll.map")
    trials = read_trials(lists / "trials.lst")
    unknown = {m for m, _, _ in trials} - set(enroll)
    if unknown:
        raise ValueError(f"trials name models without enrollment: {sorted(unknown)[:3]}")
    (out / "train.lst").write_text("\n".join(train_lines) + "\n")
    (out / "enroll.lst").write_text(
        "".join(f"{m} {' '.join(f'{CN1}/data/{u}' for u in utts)}\n" for m, utts in enroll.items()))
    (out / "trials.lst").write_text("".join(f"{m} {CN1}/eval/{t} {lab}\n" for m, t, lab in trials))


# ----------------------------------------------------------------------------- synthetic corpora


def make_corpus(root: Path, *, n_dev: int, n_cn2: int, n_eval: int, utts_per_train: int, n_enroll: int,
                n_test: int, genres_per_speaker: int = 3, n_words: tuple[int, int] = (6, 10),
                seed: int = 0) -> None:
    """A synthetic corpus in CN-Celeb's raw layout: ``n_dev`` CN-Celeb1 training speakers,
    ``n_cn2`` CN-Celeb2 speakers, ``n_eval`` evaluation speakers, each evaluation speaker
    with ``n_enroll`` enrollment utterances (listed in enroll.map and concatenated into
    enroll/<spk>-enroll.flac) and ``n_test`` test utterances; trials = every model
    against every test utterance. Speakers come from espeak-ng voices, genres from
    ``_speaker_synth.GENRES``; the whole corpus is a deterministic function of the args."""
    from . import _speaker_synth as S

    voices = S.make_voices(n_dev + n_cn2 + n_eval, seed)
    ids1 = [f"id{i:05d}" for i in range(n_dev)] + [f"id{800 + i:05d}" for i in range(n_eval)]
    ids2 = [f"id{10001 + i:05d}" for i in range(n_cn2)]
    dev, ev = ids1[:n_dev], ids1[n_dev:]
    voice_of = dict(zip(dev + ids2 + ev, voices))
    jobs: list[tuple[S.UttSpec, Path]] = []
    enroll_map: dict[str, list[str]] = {}
    tests: list[str] = []

    def utts(spk: str, n: int, start: int = 0) -> list[tuple[str, str]]:
        genres = S.speaker_genres(f"{seed}-{spk}", genres_per_speaker)
        return [(genres[(start + k) % len(genres)], f"{genres[(start + k) % len(genres)]}-01-{start + k + 1:03d}")
                for k in range(n)]

    for base, spks in ((CN1, dev), (CN2, ids2)):
        for spk in spks:
            for genre, utt in utts(spk, utts_per_train):
                p = root / base / "data" / spk / f"{utt}.flac"
                jobs.append((S.UttSpec(voice_of[spk], genre, f"{seed}/{spk}/{utt}", n_words), p))
    for spk in ev:
        enroll_map[f"{spk}-enroll"] = []
        for genre, utt in utts(spk, n_enroll):
            enroll_map[f"{spk}-enroll"].append(f"{spk}/{utt}.flac")
            jobs.append((S.UttSpec(voice_of[spk], genre, f"{seed}/{spk}/{utt}", n_words),
                         root / CN1 / "data" / spk / f"{utt}.flac"))
        for genre, utt in utts(spk, n_test, start=n_enroll):
            tests.append(f"test/{spk}-{utt}.flac")
            jobs.append((S.UttSpec(voice_of[spk], genre, f"{seed}/{spk}/{utt}", n_words),
                         root / CN1 / "eval" / "test" / f"{spk}-{utt}.flac"))
    S.render(jobs)
    for model, files in enroll_map.items():
        spk = model[: -len("-enroll")]
        S.concatenate([root / CN1 / "data" / f for f in files], root / CN1 / "eval" / "enroll" / f"{spk}-enroll.flac")
    lists = root / CN1 / "eval" / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    (root / CN1 / "dev").mkdir(parents=True, exist_ok=True)
    (root / CN2).mkdir(parents=True, exist_ok=True)
    (root / CN1 / "dev" / "dev.lst").write_text("".join(f"{s}\n" for s in dev))
    (root / CN2 / "spk.lst").write_text("".join(f"{s}\n" for s in ids2))
    (lists / "enroll.lst").write_text("".join(f"{m} enroll/{m}.flac\n" for m in enroll_map))
    (lists / "enroll.map").write_text("".join(f"{m} {' '.join(fs)}\n" for m, fs in enroll_map.items()))
    (lists / "test.lst").write_text("".join(f"{t}\n" for t in tests))
    (lists / "trials.lst").write_text("".join(
        f"{m} {t} {int(t.split('/')[1].startswith(m[: -len('-enroll')] + '-'))}\n" for m in enroll_map for t in tests))


def make_fixture(root: Path) -> None:
    """A few synthetic speakers in the real raw layout (a few seconds to build)."""
    make_corpus(root, n_dev=6, n_cn2=3, n_eval=4, utts_per_train=4, n_enroll=3, n_test=2,
                n_words=(3, 5), seed=0)
