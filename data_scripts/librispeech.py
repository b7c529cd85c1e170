"""LibriSpeech (OpenSLR 12): the clean read speech Look Once to Hear mixes its training,
validation and test scenes from (official config: train-clean-360, dev-clean, test-clean).

Public download, no licence form. SHA-256 of each archive as listed in torchaudio's
``torchaudio/datasets/librispeech.py`` (``_CHECKSUMS``). Layout::

    LibriSpeech/SPEAKERS.TXT
    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac   16 kHz mono FLAC
    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    prepared/<split>.tsv   "<utt id>\\t<speaker>\\t<relative path>\\t<samples>" (sorted by utt id)

The fixture (and the ``cpu`` analogue's corpus, :func:`make_corpus`) writes espeak-ng
synthetic speakers (``_speaker_synth``) into the same layout.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from repro.errors import DataMissing

from .common import DatasetInfo, RemoteFile, check_file, download as _download, safe_extract

SPLITS = ("train-clean-360", "dev-clean", "test-clean")
BASE = "https://www.openslr.org/resources/12/"
FILES = (
    RemoteFile(BASE + "train-clean-360.tar.gz", "train-clean-360.tar.gz",
               sha256="146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf"),
    RemoteFile(BASE + "dev-clean.tar.gz", "dev-clean.tar.gz",
               sha256="76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3"),
    RemoteFile(BASE + "test-clean.tar.gz", "test-clean.tar.gz",
               sha256="39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23"),
)
SAMPLE_RATE = 16000

INFO = DatasetInfo(
    name="librispeech",
    description="LibriSpeech train-clean-360 / dev-clean / test-clean (16 kHz read English speech)",
    homepage="https://www.openslr.org/12",
    licence="CC BY 4.0",
    size="about 24 GB (train-clean-360 23 GB, dev-clean 337 MB, test-clean 346 MB)",
    files=FILES,
    layout=("LibriSpeech/SPEAKERS.TXT", *(f"prepared/{s}.tsv" for s in SPLITS)),
    used_by=("look_once_to_hear",),
)


def download(root: Path, progress: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        _download(f, root, progress=progress)


def verify(root: Path) -> None:
    """Archives against their SHA-256 (while present); extracted splits must hold FLAC files."""
    lib = root / "LibriSpeech"
    for f, split in zip(FILES, SPLITS):
        if (lib / split).is_dir():
            if not any((lib / split).glob("*/*/*.flac")):
                raise DataMissing(f"{lib / split} holds no FLAC files", hint="repro data prepare librispeech")
            continue
        if not (root / f.filename).exists():
            raise DataMissing(f"{root / f.filename} is missing", hint="repro data download librispeech")
        check_file(root / f.filename, f)


def prepare(root: Path, splits: tuple[str, ...] = SPLITS) -> None:
    """Extract missing splits, then write prepared/<split>.tsv manifests (``splits``: a
    subset, for synthetic corpora that hold only some splits)."""
    import soundfile as sf

    lib = root / "LibriSpeech"
    for f, split in zip(FILES, SPLITS):
        if split in splits and not (lib / split).is_dir():
            safe_extract(root / f.filename, root)
    if not (lib / "SPEAKERS.TXT").exists():
        raise DataMissing(f"{lib / 'SPEAKERS.TXT'} is missing (incomplete extraction)",
                          hint="repro data download librispeech")
    out = root / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    for split in splits:
        rows = []
        for p in sorted((lib / split).glob("*/*/*.flac")):
            info = sf.info(str(p))
            if info.samplerate != SAMPLE_RATE:
                raise DataMissing(f"{p}: {info.samplerate} Hz, expected {SAMPLE_RATE}")
            rows.append(f"{p.stem}\t{p.parent.parent.name}\t{p.relative_to(root).as_posix()}\t{info.frames}")
        if not rows:
            raise DataMissing(f"no utterances under {lib / split}", hint="repro data prepare librispeech")
        (out / f"{split}.tsv").write_text("\n".join(rows) + "\n")


def read_manifest(root: Path, split: str) -> list[tuple[str, str, Path, int]]:
    """[(utt id, speaker, absolute path, samples)] of one prepared split."""
    path = root / "prepared" / f"{split}.tsv"
    if not path.exists():
        raise DataMissing(f"{path} is missing", hint="repro data prepare librispeech")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            utt, spk, rel, n = line.split("\t")
            rows.append((utt, spk, root / rel, int(n)))
    return rows


# ----------------------------------------------------------------------------- synthetic corpus


def make_corpus(root: Path, speakers: dict[str, tuple[int, int]], seed: int = 0,
                n_words: tuple[int, int] = (5, 8), workers: int | None = None) -> None:
    """espeak-ng speakers in LibriSpeech's raw layout (then run :func:`prepare`):
    ``speakers[split] = (n speakers, utterances per speaker)``; every split gets distinct
    voices (unseen speakers at test time). Deterministic in the arguments."""
    import numpy as np

    from . import _speaker_synth as S

    S.require_tools()
    total = sum(n for n, _ in speakers.values())
    voices = iter(S.make_voices(total, seed))
    lib = root / "LibriSpeech"
    jobs = []
    spk_lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    spk_id = 100
    for split, (n_spk, n_utt) in speakers.items():
        for _ in range(n_spk):
            voice = next(voices)
            spk_id += 1
            chapter = 1000 + spk_id
            d = lib / split / str(spk_id) / str(chapter)
            d.mkdir(parents=True, exist_ok=True)
            lines = []
            for k in range(n_utt):
                utt = f"{spk_id}-{chapter}-{k:04d}"
                spec = S.UttSpec(voice, "speech", f"ls{seed}/{utt}", n_words)
                rng = np.random.default_rng(S.stable_seed("utt", spec.name))
                lines.append(f"{utt} {S.sentence(rng, n_words).upper()}")  # the text synthesize() speaks
                jobs.append((spec, d / f"{utt}.flac"))
            (d / f"{spk_id}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
            sex = "F" if voice.variant.startswith("f") or zlib.crc32(voice.variant.encode()) % 2 else "M"
            spk_lines.append(f"{spk_id:<5}| {sex} | {split:<16} | 0.00 | espeak-ng {voice.espeak_voice} p{voice.pitch}")
    (lib / "SPEAKERS.TXT").write_text("\n".join(spk_lines) + "\n")
    S.render(jobs, workers=workers)


def make_fixture(root: Path) -> None:
    """Tiny synthetic stand-in: 4 / 2 / 3 espeak-ng speakers with 3 short utterances each."""
    make_corpus(root, {"train-clean-360": (4, 3), "dev-clean": (2, 2), "test-clean": (3, 3)}, seed=0,
                n_words=(3, 5))
