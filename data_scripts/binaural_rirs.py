"""Binaural responses Look Once to Hear renders its scenes with (official
``src/datasets/multi_ch_simulator.py``, ``MultiChSimulator``): four sets, drawn per scene
with the official weights CIPIC 35 : RRBRIR 5 : ASH 45 : CATT 15.

* **CIPIC** HRIRs (anechoic, 45 subjects, SOFA, 44.1 kHz) from sofacoustics.org; the
  official train/val/test subject lists (31/5/9, ``data/MixLibriSpeech/CIPIC/*_hrtf.txt``)
  are copied below as data;
* **RRBRIR** (University of Surrey real-room BRIRs, IoSR-Surrey/RealRoomBRIRs, SOFA,
  16 kHz): rooms D, B train / C val / A test (official ``data/RRBRIR/*_hrtf.txt``);
* **ASH Listening Set 8.0** BRIRs (WAV, ``BRIRs/R<room>/BRIR_R<room>_C<cfg>_E<el>_A<az>.wav``),
  official room split (train 23 rooms, val 6, test 6);
* **CATT** binaural RIRs (IoSR ``CATT_RIRs.zip``, ``Binaural/16k/<rt60>/CATT_<rt60>_<az>.wav``,
  azimuth -90..90 in 5-degree steps), official split by RT60 room.

No publisher gives checksums for these files, so ``verify`` checks presence and counts.
SOFA files are netCDF-4 (HDF5): reading them needs ``h5py``. ``prepare`` converts every
set into one format the scene simulator reads without h5py::

    prepared/index.tsv                      set, split, group, npz path, sample rate, responses
    prepared/<set>/<group>.npz              ir (M, 2, T) float32 at the native rate,
                                            azimuth_deg (M,), elevation_deg (M,)

Azimuths are degrees from the front (SOFA convention: counter-clockwise positive; the
simulator uses only their distance from the front). The fixture writes small synthetic
responses (a spherical-head delay and level difference plus, for the room sets, an
exponentially decaying tail) in the same raw layouts.
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

from repro.errors import ChecksumError, DataMissing

from .common import DatasetInfo, RemoteFile, download as _download, safe_extract

CIPIC_SPLITS = {
    "train": ("015 017 162 008 003 127 028 050 044 152 011 048 153 051 126 163 154 009 058 124 137 012 033 061 "
              "148 020 155 134 059 131 060"),
    "val": "135 021 147 027 065",
    "test": "040 119 158 010 019 165 018 133 156",
}
CIPIC_SPLITS = {k: tuple(f"subject_{s}.sofa" for s in v.split()) for k, v in CIPIC_SPLITS.items()}
RRBRIR_SPLITS = {"train": ("Room_D", "Room_B"), "val": ("Room_C",), "test": ("Room_A",)}
ASH_SPLITS = {
    "train": ("05A", "05B", "06", "07", "09", "12", "13", "17", "18", "19", "20", "21", "22", "23", "24", "25",
              "26", "27", "28", "31", "32", "33", "34"),
    "val": ("03", "04", "08", "10", "11", "30"),
    "test": ("01", "02", "14", "15", "16", "29"),
}
CATT_SPLITS = {"train": ("0_0s", "0_1s", "0_2s", "0_5s", "0_6s", "0_7s", "1_0s"), "val": ("0_3s", "0_9s"),
               "test": ("0_4s", "0_8s")}
SET_WEIGHTS = {"cipic": 35, "rrbrir": 5, "ash": 45, "catt": 15}  # official MultiChSimulator sampling counts
# official face-to-face indices of the SOFA sets (CIPIC 1250 directions, RRBRIR 37 azimuths)
SOFA_FRONTAL = {"cipic": (1250, 608), "rrbrir": (37, 18)}

CIPIC_URL = "https://sofacoustics.org/data/database/cipic/"
RRBRIR_URL = "https://github.com/IoSR-Surrey/RealRoomBRIRs/raw/master/"
ASH_ZIP = RemoteFile("https://github.com/ShanonPearce/ASH-Listening-Set/releases/download/v8.0/"
                     "ASH-Listening-Set-8.0.zip", "ASH-Listening-Set-8.0.zip")
CATT_ZIP = RemoteFile("https://iosr.uk/software/downloads/CATT_RIRs.zip", "CATT_RIRs.zip")
CIPIC_FILES = tuple(RemoteFile(CIPIC_URL + f, f"CIPIC/{f}") for s in CIPIC_SPLITS.values() for f in s)
RRBRIR_FILES = tuple(RemoteFile(RRBRIR_URL + f"UniS_{r}_BRIR_16k.sofa", f"RRBRIR/UniS_{r}_BRIR_16k.sofa")
                     for s in RRBRIR_SPLITS.values() for r in s)
ASH_DIR = "ASH-Listening-Set-8.0/BRIRs"
CATT_DIR = "CATT_RIRs/Binaural/16k"
ASH_NAME = re.compile(r"BRIR_R(?P<room>[^_]+)_C(?P<cfg>[^_]+)_E(?P<el>-?\d+)_A(?P<az>-?\d+)\.wav$")
CATT_NAME = re.compile(r"CATT_(?P<room>\d_\d+s)_(?P<az>-?\d+)\.wav$")
NO_SOFA_MARKER = "FIXTURE_WITHOUT_SOFA"

INFO = DatasetInfo(
    name="binaural_rirs",
    description="HRIR/BRIR sets of Look Once to Hear's scene simulation: CIPIC (SOFA), Surrey RRBRIR (SOFA), "
                "ASH Listening Set 8.0 BRIRs, CATT binaural RIRs (official splits)",
    homepage="https://github.com/vb000/LookOnceToHear/blob/main/data/README.md",
    licence="per set: CIPIC (UC Davis, free with attribution), RRBRIR (IoSR Surrey, see its repository), "
            "ASH Listening Set (see its repository), CATT RIRs (IoSR, see iosr.uk/software)",
    size="about 430 MB (CIPIC 82 MB, RRBRIR 4 files of the 5 (~40 MB), ASH zip 230 MB, CATT zip 71 MB)",
    files=CIPIC_FILES + RRBRIR_FILES + (ASH_ZIP, CATT_ZIP),
    layout=(ASH_DIR, CATT_DIR, "prepared/index.tsv"),
    used_by=("look_once_to_hear",),
)


def download(root: Path, progress: bool = True) -> None:
    for f in INFO.files:
        _download(f, root, progress=progress)


def _sofa_sets(root: Path) -> bool:
    """False only in a fixture built without h5py (it holds the WAV sets only)."""
    return not (root / NO_SOFA_MARKER).exists()


def verify(root: Path) -> None:
    """Every file present (no published checksums); the zips readable or already extracted."""
    if _sofa_sets(root):
        missing = [f.filename for f in CIPIC_FILES + RRBRIR_FILES if not (root / f.filename).is_file()]
        if missing:
            raise DataMissing(f"{len(missing)} SOFA files missing under {root}, e.g. {missing[0]}",
                              hint="repro data download binaural_rirs")
    for z, d in ((ASH_ZIP, ASH_DIR), (CATT_ZIP, CATT_DIR)):
        if not (root / d).is_dir() and not (root / z.filename).is_file():
            raise DataMissing(f"{root / z.filename} is missing", hint="repro data download binaural_rirs")


# ----------------------------------------------------------------------------- reading


def read_sofa(path: Path):
    """(ir (M, 2, T) float32, sample rate, azimuth_deg (M,), elevation_deg (M,)) of a SOFA
    file (netCDF-4/HDF5, read with h5py). Directions come from SourcePosition (spherical or
    cartesian); when the source is fixed and the listener turns (ListenerView per
    measurement), the relative azimuth is minus the listener's."""
    import numpy as np

    try:
        import h5py
    except ImportError:
        raise DataMissing(f"reading {path} (SOFA = netCDF-4/HDF5) needs the Python package h5py",
                          hint="uv pip install h5py, then: repro data prepare binaural_rirs") from None
    with h5py.File(path, "r") as f:
        ir = np.asarray(f["Data.IR"][:], dtype=np.float32)
        sr = float(np.asarray(f["Data.SamplingRate"][:]).reshape(-1)[0])
        pos = np.asarray(f["SourcePosition"][:], dtype=np.float64)
        ptype = _attr(f["SourcePosition"], "Type", "spherical")
        if pos.shape[0] != ir.shape[0] and "ListenerView" in f and f["ListenerView"].shape[0] == ir.shape[0]:
            view = np.asarray(f["ListenerView"][:], dtype=np.float64)
            vtype = _attr(f["ListenerView"], "Type", "cartesian")
            az, el = _angles(view, vtype)
            az, el = -az, el * 0
        else:
            if pos.shape[0] != ir.shape[0]:
                pos = np.repeat(pos[:1], ir.shape[0], axis=0)
            az, el = _angles(pos, ptype)
    if ir.ndim != 3 or ir.shape[1] != 2:
        raise ChecksumError(f"{path}: Data.IR has shape {ir.shape}, expected (M, 2, N)")
    return ir, sr, az.astype(np.float32), el.astype(np.float32)


def _attr(ds, name: str, default: str) -> str:
    v = ds.attrs.get(name, default)
    return (v.decode() if isinstance(v, bytes) else str(v)).lower()


def _angles(p, kind: str):
    import numpy as np

    if kind.startswith("cart"):
        az = np.degrees(np.arctan2(p[:, 1], p[:, 0]))
        el = np.degrees(np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1])))
    else:
        az, el = p[:, 0], p[:, 1]
    az = (az + 180.0) % 360.0 - 180.0
    return az, el


def angle_from_front(az, el):
    """Great-circle angle (degrees) between each direction and straight ahead."""
    import numpy as np

    a, e = np.radians(az), np.radians(el)
    return np.degrees(np.arccos(np.clip(np.cos(a) * np.cos(e), -1.0, 1.0)))


# ----------------------------------------------------------------------------- prepare


def prepare(root: Path) -> None:
    """Extract the zips, convert every set to ``prepared/<set>/<group>.npz`` and write
    ``prepared/index.tsv``."""
    import numpy as np
    import soundfile as sf


    for z, d, top in ((ASH_ZIP, ASH_DIR, "ASH-Listening-Set-8.0"), (CATT_ZIP, CATT_DIR, "CATT_RIRs")):
        if not (root / d).is_dir():
            tmp = root / (top + ".extract")
            tmp.mkdir(exist_ok=True)
            safe_extract(root / z.filename, tmp)
            src = next((p for p in [tmp / top, *tmp.glob(f"*/{top}")] if p.is_dir()), None)
            if src is None:
                raise ChecksumError(f"{root / z.filename} holds no {top}/ folder")
            src.rename(root / top)
            import shutil

            shutil.rmtree(tmp)
    out = root / "prepared"
    rows: list[str] = []

    def save(set_name: str, split: str, group: str, ir, sr: float, az, el) -> None:
        rel = f"prepared/{set_name}/{group}.npz"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez(root / rel, ir=np.asarray(ir, np.float32), sample_rate=np.float64(sr),
                 azimuth_deg=np.asarray(az, np.float32), elevation_deg=np.asarray(el, np.float32))
        rows.append(f"{set_name}\t{split}\t{group}\t{rel}\t{int(round(sr))}\t{len(az)}")

    if _sofa_sets(root):
        for set_name, splits in (("cipic", CIPIC_SPLITS), ("rrbrir", RRBRIR_SPLITS)):
            for split, names in splits.items():
                for name in names:
                    path = root / ("CIPIC/" + name if set_name == "cipic" else f"RRBRIR/UniS_{name}_BRIR_16k.sofa")
                    ir, sr, az, el = read_sofa(path)
                    m, front = SOFA_FRONTAL[set_name]
                    got = int(np.argmin(angle_from_front(az, el)))
                    if len(az) == m and got != front:
                        raise ChecksumError(f"{path}: frontal direction at index {got}, the official simulator "
                                            f"uses {front} (direction convention mismatch?)")
                    save(set_name, split, Path(name).stem, ir, sr, az, el)
    for set_name, base, pattern, splits in (("ash", ASH_DIR, ASH_NAME, ASH_SPLITS),
                                            ("catt", CATT_DIR, CATT_NAME, CATT_SPLITS)):
        groups: dict[tuple[str, str], list[tuple[float, float, Path]]] = {}
        for p in sorted((root / base).rglob("*.wav")):
            m = pattern.search(p.name)
            if not m:
                continue
            room = m["room"]
            group = f"R{room}_C{m['cfg']}" if set_name == "ash" else room
            el = float(m["el"]) if set_name == "ash" else 0.0
            groups.setdefault((room, group), []).append((float(m["az"]), el, p))
        if not groups:
            raise DataMissing(f"no BRIR wav files under {root / base}", hint="repro data prepare binaural_rirs")
        for (room, group), items in sorted(groups.items()):
            split = next((s for s, rooms in splits.items() if room in rooms), None)
            if split is None:
                continue  # a room the official split does not use
            irs, srs = [], set()
            for _, _, p in items:
                x, sr = sf.read(str(p), dtype="float32", always_2d=True)
                if x.shape[1] != 2:
                    raise ChecksumError(f"{p}: {x.shape[1]} channels, expected 2 (binaural)")
                irs.append(x.T)
                srs.add(sr)
            if len(srs) != 1:
                raise ChecksumError(f"{set_name} {group}: mixed sample rates {sorted(srs)}")
            t = max(a.shape[1] for a in irs)
            ir = np.stack([np.pad(a, ((0, 0), (0, t - a.shape[1]))) for a in irs])
            save(set_name, split, group, ir, srs.pop(), [a for a, _, _ in items], [e for _, e, _ in items])
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.tsv").write_text("set\tsplit\tgroup\tpath\tsample_rate\tresponses\n" + "\n".join(rows) + "\n")


def read_index(root: Path) -> list[dict]:
    path = root / "prepared" / "index.tsv"
    if not path.exists():
        raise DataMissing(f"{path} is missing", hint="repro data prepare binaural_rirs")
    lines = path.read_text().splitlines()
    keys = lines[0].split("\t")
    return [dict(zip(keys, ln.split("\t"))) for ln in lines[1:] if ln.strip()]


# ----------------------------------------------------------------------------- fixture


def _toy_brir(az: float, el: float, sr: int, length: int, rt60: float, seed: int):
    """A spherical-head response (Woodworth delay + level difference of the far ear) with
    an exponentially decaying noise tail when rt60 > 0. (2, length) float32."""
    import numpy as np

    rng = np.random.default_rng(seed)
    th = math.radians(min(abs(az), 90.0))
    itd = 0.0875 / 343.0 * (th + math.sin(th)) * math.cos(math.radians(el)) * sr
    ir = np.zeros((2, length), np.float32)
    near, far = (1, 0) if az < 0 else (0, 1)  # SOFA: positive azimuth = left
    d0 = 3
    ir[near, d0] = 1.0
    k = d0 + itd
    i = int(k)
    ir[far, i] += (1 - (k - i)) * 10 ** (-8 * abs(math.sin(math.radians(az))) / 20)
    ir[far, i + 1] += (k - i) * 10 ** (-8 * abs(math.sin(math.radians(az))) / 20)
    if rt60 > 0:
        t = np.arange(length) / sr
        tail = rng.standard_normal((2, length)) * np.exp(-6.9 * t / rt60) * 0.05
        tail[:, : d0 + 8] = 0
        ir = ir + tail.astype(np.float32)
    return ir


def make_fixture(root: Path) -> None:
    """Small synthetic responses in every raw layout: the 45 CIPIC subjects (14 directions
    each) and the 4 RRBRIR rooms as SOFA (only when h5py is installed: otherwise a marker file says the fixture
    holds the WAV sets only), 3 ASH rooms and 3 CATT rooms as WAV; one of each per split."""
    import numpy as np
    import soundfile as sf

    def seed(*parts) -> int:
        return zlib.crc32("/".join(map(str, parts)).encode())

    try:
        import h5py
    except ImportError:
        h5py = None
    if h5py is None:
        (root / NO_SOFA_MARKER).write_text("h5py was not installed when this fixture was built\n")
    else:
        def write_sofa(path: Path, sr: int, dirs: list[tuple[float, float]], length: int, rt60: float) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            ir = np.stack([_toy_brir(a, e, sr, length, rt60, seed(path.name, a, e)) for a, e in dirs])
            with h5py.File(path, "w") as f:
                f.attrs["Conventions"] = "SOFA"
                f.attrs["SOFAConventions"] = "SimpleFreeFieldHRIR"
                f["Data.IR"] = ir.astype(np.float64)
                f["Data.SamplingRate"] = np.array([float(sr)])
                f["SourcePosition"] = np.array([[a, e, 1.0] for a, e in dirs])
                f["SourcePosition"].attrs["Type"] = "spherical"

        cipic_dirs = [(a, e) for e in (0.0, 45.0) for a in (-80.0, -45.0, -10.0, 0.0, 10.0, 45.0, 80.0)]
        for names in CIPIC_SPLITS.values():
            for name in names:
                write_sofa(root / "CIPIC" / name, 44100, cipic_dirs, 200, 0.0)
        rr_dirs = [(float(a), 0.0) for a in range(-90, 95, 5)]
        for rooms in RRBRIR_SPLITS.values():
            for r in rooms:
                write_sofa(root / "RRBRIR" / f"UniS_{r}_BRIR_16k.sofa", 16000, rr_dirs, 800, 0.05)
    for split, room in (("train", "05A"), ("val", "03"), ("test", "01")):
        for az in (-90, -30, 0, 30, 90, 180):
            p = root / ASH_DIR / f"R{room}" / f"BRIR_R{room}_C1_E0_A{az}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), _toy_brir(az, 0.0, 44100, 1200, 0.1, seed("ash", room, az)).T, 44100, subtype="FLOAT")
    for split, room in (("train", "0_2s"), ("val", "0_3s"), ("test", "0_4s")):
        rt = float(room.replace("_", ".").rstrip("s"))
        for az in range(-90, 95, 5):
            p = root / CATT_DIR / room / f"CATT_{room}_{az}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), _toy_brir(az, 0.0, 16000, 600, rt, seed("catt", room, az)).T, 16000, subtype="FLOAT")
