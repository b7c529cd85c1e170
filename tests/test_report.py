"""Blessing: only a profile's own, current run becomes the committed result."""

from __future__ import annotations

import copy
import json

import pytest

from repro import ledger, report

pytestmark = pytest.mark.unit


def _accepted(paper: str = "attention_sdm") -> dict:
    return json.loads((report.RESULTS_DIR / paper / "cpu.json").read_text())


def test_not_canonical_names_the_reason():
    res = _accepted()
    assert report.not_canonical(res) == ""
    assert "--set" in report.not_canonical(dict(res, overrides=["steps=10"]))
    assert "seed" in report.not_canonical(dict(res, seeds=[0]))
    assert "config changed" in report.not_canonical(dict(res, config_hash="0" * 12))
    arms = _accepted("luong_attention_nmt")
    assert "arms" in report.not_canonical(dict(arms, arms=arms["arms"][:1]))


def test_bless_passes_over_calibration_runs(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    good = _accepted()
    calib = copy.deepcopy(good)
    calib.update(run_id="29991231T000000Z-ffffff", overrides=["steps=10"])  # newer, but a --set run
    for res in (good, calib):
        ledger.atomic_write_json(runs / res["paper"] / res["run_id"] / "result.json", res)
    skipped: list[str] = []
    changed = report.bless(runs, results, skipped=skipped)
    assert changed == [f"attention_sdm/cpu: {good['run_id']}"]
    assert json.loads((results / "attention_sdm" / "cpu.json").read_text())["run_id"] == good["run_id"]
    assert len(skipped) == 1 and "29991231T000000Z-ffffff" in skipped[0] and "--set" in skipped[0]
