"""Test hygiene for tests/, papers/ and data_scripts/ (anchors.md D.9): no network,
no W&B, no writes outside temporary folders."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tests"))  # toy_recipe


class NetworkBlocked(RuntimeError):
    pass


_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family == socket.AF_UNIX or host in ("127.0.0.1", "::1", "localhost"):
        return _real_connect(self, address)
    raise NetworkBlocked(f"tests must not touch the network (tried {address!r})")


@pytest.fixture(autouse=True)
def _hygiene(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def fixture_data_root(tmp_path_factory):
    """One REPRO_DATA for the session, so dataset fixtures are built once."""
    return tmp_path_factory.mktemp("repro_data")


@pytest.fixture(autouse=True)
def _data_root(monkeypatch, fixture_data_root):
    monkeypatch.setenv("REPRO_DATA", str(fixture_data_root))


@pytest.fixture
def one_torch_thread():
    """For tests of tiny tensors: one intra-op thread is fastest and avoids OpenMP contention
    on a busy 2-core machine. Use with ``pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
