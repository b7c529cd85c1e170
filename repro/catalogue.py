"""The catalogue of all 100 seed papers (``papers/catalogue.toml``) and their status.

Status is derived, never typed: ``implemented`` when ``papers/<slug>/recipe.py``
exists, ``nothing-to-reproduce`` for papers with no experiment (surveys, essays:
``kind != "experiment"``, with the reason), ``planned`` otherwise. Reading the
catalogue imports neither torch nor any paper, so ``repro list`` stays fast.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .paths import SOURCE_ROOT

PAPERS_DIR = SOURCE_ROOT / "papers"
CATALOGUE_FILE = Path(os.environ.get("REPRO_CATALOGUE", PAPERS_DIR / "catalogue.toml"))
INDEX_FILE = PAPERS_DIR / "index.json"

IMPLEMENTED = "implemented"
PLANNED = "planned"
NOTHING = "nothing-to-reproduce"
STATUSES = (IMPLEMENTED, PLANNED, NOTHING)


@dataclass(frozen=True)
class Entry:
    id: int
    slug: str
    title: str
    arxiv: str
    year: int
    authors: tuple[str, ...]
    tier: str
    family: str
    kind: str
    venue: str = ""
    code: str = ""
    reason: str = ""
    verified: bool = False
    note: str = ""
    authors_truncated: bool = False
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def status(self) -> str:
        if (PAPERS_DIR / self.slug / "recipe.py").exists():
            return IMPLEMENTED
        if self.kind != "experiment":
            return NOTHING
        return PLANNED

    @property
    def status_note(self) -> str:
        if self.status == NOTHING:
            return self.reason
        return ""


_FIELDS = {f for f in Entry.__dataclass_fields__ if f != "extra"}


@lru_cache(maxsize=1)
def load() -> tuple[Entry, ...]:
    with open(CATALOGUE_FILE, "rb") as fh:
        raw = tomllib.load(fh)["paper"]
    entries = []
    for row in raw:
        known = {k: v for k, v in row.items() if k in _FIELDS}
        known["authors"] = tuple(known.get("authors", ()))
        entries.append(Entry(**known, extra={k: v for k, v in row.items() if k not in _FIELDS}))
    return tuple(entries)


def by_slug() -> dict[str, Entry]:
    return {e.slug: e for e in load()}


def suggest(name: str, n: int = 3) -> list[str]:
    slugs = [e.slug for e in load()]
    close = difflib.get_close_matches(name, slugs, n=n, cutoff=0.45)
    if not close:  # substring matches ("mta" -> multi_token_attention is not close by ratio)
        close = [s for s in slugs if name.lower() in s][:n]
    return close


def lookup(name: str) -> Entry | None:
    """Slug, catalogue id ("40") or arXiv id."""
    table = by_slug()
    if name in table:
        return table[name]
    for e in load():
        if name == str(e.id) or (e.arxiv and name == e.arxiv):
            return e
    return None


def load_index() -> dict:
    if not INDEX_FILE.exists():
        return {}
    with open(INDEX_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def implemented_slugs() -> list[str]:
    return [e.slug for e in load() if e.status == IMPLEMENTED]


def recipe_dirs() -> list[Path]:
    return sorted(p.parent for p in PAPERS_DIR.glob("*/recipe.py"))
