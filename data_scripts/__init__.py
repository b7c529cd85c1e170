"""Dataset scripts: one module per dataset (see ``common.py`` for the contract).

Module names are listed without importing them; a module is imported when a
dataset is used. ``ensure`` is what a run calls: it never downloads, it builds
fixtures (local, deterministic) and reports missing real data with the exact
``repro data`` command.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from repro.errors import DataMissing, UsageError

_NOT_DATASETS = {"common"}


def names() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith(("_", "test_")) and m.name not in _NOT_DATASETS
    )


def load(name: str) -> ModuleType:
    if name not in names():
        close = difflib.get_close_matches(name, names(), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown dataset {name!r}.{hint} (`repro data list` shows them)")
    return importlib.import_module(f"data_scripts.{name}")


def root_of(name: str, fixture: bool = False) -> Path:
    from repro.paths import dataset_dir

    return dataset_dir(name, fixture=fixture)


def build_fixture(name: str, force: bool = False) -> Path:
    from .common import build_into, check_ready, mark_ready

    mod = load(name)
    root = root_of(name, fixture=True)
    if not force and check_ready(root)[0]:
        return root

    def builder(tmp: Path) -> None:
        mod.make_fixture(tmp)
        mod.verify(tmp)
        mod.prepare(tmp)
        mark_ready(tmp, [p for p in tmp.rglob("*") if p.is_file()], {"fixture": True})

    return build_into(root, builder)


def prepare(name: str) -> Path:
    from .common import mark_ready

    mod = load(name)
    root = root_of(name)
    mod.verify(root)
    mod.prepare(root)
    mark_ready(root, [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".part")])
    return root


def download(name: str) -> Path:
    mod = load(name)
    root = root_of(name)
    mod.download(root)
    return prepare(name)


def status(name: str) -> dict:
    from .common import check_ready

    real_ok, real_why = check_ready(root_of(name))
    fix_ok, _ = check_ready(root_of(name, fixture=True))
    return {"ready": real_ok, "problem": real_why, "fixture": fix_ok, "root": str(root_of(name))}


def ensure(name: str, fixture: bool = False) -> Path:
    """The folder a run reads; builds a missing fixture, never downloads real data."""
    from .common import check_ready

    if fixture:
        return build_fixture(name)
    mod = load(name)
    root = root_of(name)
    ok, why = check_ready(root)
    if ok:
        return root
    if getattr(mod.INFO, "gated", False):
        hint = f"{mod.INFO.manual_step.strip()}\nThen run: repro data prepare {name}"
        raise DataMissing(f"dataset {name} is not ready ({why}); it is licence-gated", hint=hint)
    raise DataMissing(f"dataset {name} is not ready ({why}) under {root}", hint=f"repro data download {name}")
