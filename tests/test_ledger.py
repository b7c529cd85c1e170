"""The ledger: atomic results, append-only index, robust reading."""

from __future__ import annotations

import json
import os
import warnings

import pytest

from repro import ledger

pytestmark = pytest.mark.unit


def _result(run_id="20260101T000000Z-aaaaaa", paper="toy", profile="cpu", status="completed", verdict="reproduced"):
    return {
        "run_id": run_id, "paper": paper, "profile": profile, "status": status, "config": {}, "config_hash": "x",
        "seeds": [0], "metrics": {"m": 1.0}, "per_seed": {"m": [1.0]},
        "claims": [{"id": "c", "metric": "m", "reported": 1.0, "measured": 1.0, "per_seed": [1.0],
                    "verdict": verdict}],
        "environment": {"git": {"commit": "abc", "dirty": False}}, "wall_time_s": 1.0,
    }


def test_write_result_is_atomic_and_validated(tmp_path):
    path = ledger.write_result(_result(), tmp_path)
    assert json.loads(path.read_text())["schema_version"] == ledger.SCHEMA_VERSION
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    bad = _result()
    del bad["metrics"]
    with pytest.raises(ValueError, match="metrics"):
        ledger.write_result(bad, tmp_path)


def test_index_append_and_truncated_line_skipped(tmp_path):
    for i in range(3):
        ledger.append_index(ledger.index_entry(_result(run_id=f"2026010{i}T000000Z-aaaaaa")), tmp_path)
    # simulate a writer killed mid-line
    with open(tmp_path / "ledger.jsonl", "a") as fh:
        fh.write('{"run_id": "20260109T0000')
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        entries = ledger.read_index(tmp_path)
    assert [e["run_id"][:9] for e in entries] == ["20260100T", "20260101T", "20260102T"]
    # the next append starts on a fresh line, so it is not lost
    ledger.append_index(ledger.index_entry(_result(run_id="20260110T000000Z-bbbbbb")), tmp_path)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        entries = ledger.read_index(tmp_path)
    assert entries[-1]["run_id"] == "20260110T000000Z-bbbbbb" and len(entries) == 4


def test_latest_results_prefers_newest_completed(tmp_path):
    ledger.write_result(_result(run_id="20260101T000000Z-aaaaaa", verdict="not-reproduced"), tmp_path)
    ledger.write_result(_result(run_id="20260102T000000Z-aaaaaa"), tmp_path)
    ledger.write_result(_result(run_id="20260103T000000Z-aaaaaa", status="interrupted"), tmp_path)
    latest = ledger.latest_results(tmp_path)
    assert latest[("toy", "cpu")]["run_id"] == "20260102T000000Z-aaaaaa"


def test_run_ids_sort_by_time_and_are_unique():
    ids = {ledger.new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == len("20260101T000000Z-aaaaaa") for i in ids)


def test_atomic_write_never_leaves_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    ledger.atomic_write_json(target, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ledger.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
