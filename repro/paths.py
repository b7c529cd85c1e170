"""Where things live. Data under ``$REPRO_DATA`` (default: the user cache dir, e.g.
``~/.cache/repro``); runs under ``$REPRO_RUNS`` (default: ``./runs``)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_ROOT.parent  # the checkout (papers/ and data_scripts/ sit beside repro/)


def data_root() -> Path:
    env = os.environ.get("REPRO_DATA")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("repro"))


def dataset_dir(name: str, fixture: bool = False) -> Path:
    return data_root() / "fixtures" / name if fixture else data_root() / name


def runs_root() -> Path:
    return Path(os.environ.get("REPRO_RUNS", "runs")).expanduser()
