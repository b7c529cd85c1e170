"""Profile configs are plain dataclasses; ``--set key=value`` overrides them.

Keys are field names (dotted for nested dataclasses); values are parsed by the field's
type annotation, so ``--set lr=abc`` fails with a message naming the expected type and
``--set lrr=0.1`` lists the valid keys with the closest match first.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from .errors import UsageError


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fields_table(cfg: Any, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, type name, current value) for every leaf field of a config."""
    rows: list[tuple[str, str, Any]] = []
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows.extend(fields_table(value, key + "."))
        else:
            rows.append((key, type_name(hints[f.name]), value))
    return rows


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        return f"tuple[{type_name(args[0])}, ...]" if args else "tuple"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def parse_value(raw: str, tp: Any, key: str) -> Any:
    """Parse a command-line string into a value of annotation ``tp``."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and raw.strip().lower() in ("none", "null", ""):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(raw, arg, key)
            except UsageError as exc:
                errors.append(exc.message)
        raise UsageError(f"--set {key}={raw}: expected {type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if str(choice) == raw:
                return choice
        raise UsageError(f"--set {key}={raw}: expected one of {', '.join(map(str, choices))}")
    if origin is tuple:
        (item_tp, *_rest) = get_args(tp) or (str,)
        parts = [p.strip() for p in raw.strip("()[] ").split(",") if p.strip()]
        return tuple(parse_value(p, item_tp, key) for p in parts)
    if tp is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"--set {key}={raw}: expected a boolean (true/false)")
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"--set {key}={raw}: expected an integer") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise UsageError(f"--set {key}={raw}: expected a number") from None
    if tp is str:
        return raw
    raise UsageError(f"--set {key}: fields of type {type_name(tp)} cannot be set from the command line")


def _split(assignment: str) -> tuple[str, str]:
    if "=" not in assignment:
        raise UsageError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    if not key:
        raise UsageError(f"--set expects key=value, got {assignment!r}")
    return key, raw


def apply_overrides(cfg: Any, assignments: list[str] | tuple[str, ...]) -> Any:
    """Return a copy of ``cfg`` with ``key=value`` assignments applied and type-checked."""
    pairs = [_split(a) for a in assignments]
    valid = [k for k, _, _ in fields_table(cfg)]
    for key, raw in pairs:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            listing = "\n".join(f"  {k} ({t}) = {v!r}" for k, t, v in fields_table(cfg))
            raise UsageError(f"unknown --set key {key!r}.{hint}\nValid keys:\n{listing}")
        cfg = _set(cfg, key.split("."), raw, key)
    return cfg


def replace_fields(cfg: Any, values: dict[str, Any]) -> Any:
    """Apply already-typed values (profile arms) with dotted keys."""
    for key, value in values.items():
        cfg = _set_typed(cfg, key.split("."), value)
    return cfg


def _set(cfg: Any, path: list[str], raw: str, key: str) -> Any:
    name = path[0]
    if len(path) == 1:
        tp = _hints(type(cfg))[name]
        return dataclasses.replace(cfg, **{name: parse_value(raw, tp, key)})
    return dataclasses.replace(cfg, **{name: _set(getattr(cfg, name), path[1:], raw, key)})


def _set_typed(cfg: Any, path: list[str], value: Any) -> Any:
    name = path[0]
    if not any(f.name == name for f in dataclasses.fields(cfg)):
        raise KeyError(f"{type(cfg).__name__} has no field {name!r}")
    if len(path) == 1:
        return dataclasses.replace(cfg, **{name: value})
    return dataclasses.replace(cfg, **{name: _set_typed(getattr(cfg, name), path[1:], value)})


def to_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_hash(cfg: Any) -> str:
    blob = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
