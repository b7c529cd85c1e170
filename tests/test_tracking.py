"""W&B: offline by default, online only with a key, and never hanging without network."""

from __future__ import annotations

import time

import pytest

from repro.tracking import Tracker, resolve_mode

pytestmark = pytest.mark.unit


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"


def test_disabled_writes_nothing(tmp_path):
    tr = Tracker("disabled", tmp_path, "n", "g", {}, [])
    tr.log({"a": 1.0})
    tr.finish({}, [])
    assert tr.info()["mode"] == "disabled" and not list(tmp_path.iterdir())


def test_offline_run_and_online_fallback_without_network(monkeypatch, tmp_path):
    off = Tracker("offline", tmp_path / "off", "n", "g", {"a": 1}, ["cpu"])
    off.log({"x": 1.0})
    off.finish({"done": 1}, [{"id": "c", "metric": "m", "reported": 1, "measured": 1, "delta": 0,
                              "verdict": "reproduced"}])
    assert off.run_id and list((tmp_path / "off").glob("wandb/offline-run-*/run-*.wandb"))
    # a key but no reachable server (a closed loopback port): falls back to offline, quickly
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("REPRO_WANDB_INIT_TIMEOUT", "3")
    t0 = time.perf_counter()
    on = Tracker("online", tmp_path / "on", "n", "g", {}, [])
    assert on.info()["mode"] == "offline" and "online init failed" in on.info()["note"]
    assert time.perf_counter() - t0 < 60
    on.finish({}, [])
