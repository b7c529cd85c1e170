"""The result ledger: one ``runs/<paper>/<run-id>/result.json`` per run, written
atomically, plus an append-only ``runs/ledger.jsonl`` index with one line per run.

A crash or Ctrl-C can never leave a half-written result: files are written to a
temporary name, fsynced, then renamed. Appends to the index are single ``write`` calls
under an exclusive lock; a truncated last line (power loss) is skipped with a warning
when the ledger is read.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any, Iterator

from .paths import runs_root

SCHEMA_VERSION = 1
REQUIRED_KEYS = (
    "schema_version", "run_id", "paper", "profile", "status", "config", "config_hash",
    "seeds", "metrics", "per_seed", "claims", "environment", "wall_time_s",
)


def new_run_id() -> str:
    """Time-sortable and unique: 20261129T081530Z-3fa9c1."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def run_dir(paper: str, run_id: str, root: Path | None = None) -> Path:
    return (root or runs_root()) / paper / run_id


def validate_result(obj: dict[str, Any]) -> list[str]:
    """Problems with a result.json object ([] when it follows the schema)."""
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in obj]
    if obj.get("schema_version") not in (None, SCHEMA_VERSION):
        problems.append(f"unknown schema_version {obj.get('schema_version')!r}")
    for c in obj.get("claims", []):
        for k in ("id", "metric", "reported", "measured", "per_seed", "verdict"):
            if k not in c:
                problems.append(f"claim without {k!r}")
    return problems


def write_result(result: dict[str, Any], root: Path | None = None) -> Path:
    result.setdefault("schema_version", SCHEMA_VERSION)
    problems = validate_result(result)
    if problems:
        raise ValueError("refusing to write an invalid result: " + "; ".join(problems))
    path = run_dir(result["paper"], result["run_id"], root) / "result.json"
    atomic_write_json(path, result)
    return path


def append_index(entry: dict[str, Any], root: Path | None = None) -> None:
    root = root or runs_root()
    root.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True, default=_json_default) + "\n"
    fd = os.open(root / "ledger.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A previous writer killed mid-line leaves no newline: start ours on a fresh line.
        size = os.fstat(fd).st_size
        if size:
            with open(root / "ledger.jsonl", "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    line = "\n" + line
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def index_entry(result: dict[str, Any]) -> dict[str, Any]:
    from .verdict import counts

    return {
        "run_id": result["run_id"],
        "paper": result["paper"],
        "profile": result["profile"],
        "status": result["status"],
        "verdicts": counts(c["verdict"] for c in result["claims"]),
        "commit": result["environment"].get("git", {}).get("commit"),
        "dirty": result["environment"].get("git", {}).get("dirty"),
        "wall_time_s": result["wall_time_s"],
        "cpu_time_s": result.get("cpu_time_s"),
        "path": f"{result['paper']}/{result['run_id']}/result.json",
    }


def read_index(root: Path | None = None) -> list[dict[str, Any]]:
    """Index lines; corrupt or truncated lines are skipped with a warning."""
    path = (root or runs_root()) / "ledger.jsonl"
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict) or "run_id" not in obj:
                    raise ValueError("not a ledger entry")
            except ValueError:
                warnings.warn(f"{path}:{n}: skipping a corrupt or truncated ledger line", stacklevel=2)
                continue
            out.append(obj)
    return out


def load_result(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def iter_results(root: Path | None = None, paper: str | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every readable result.json under the runs root (sorted by run id)."""
    root = root or runs_root()
    pattern = f"{paper}/*/result.json" if paper else "*/*/result.json"
    for path in sorted(root.glob(pattern), key=lambda p: p.parent.name):
        try:
            yield path, load_result(path)
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path}: unreadable result ({exc}); skipped", stacklevel=2)


def latest_results(root: Path | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest completed result per (paper, profile)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for _, res in iter_results(root):
        if res.get("status") != "completed":
            continue
        key = (res["paper"], res["profile"])
        if key not in latest or res["run_id"] > latest[key]["run_id"]:
            latest[key] = res
    return latest
