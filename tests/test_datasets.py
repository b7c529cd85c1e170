"""Every dataset script honours the contract: INFO, the four functions, and a fixture
that verifies, prepares and lands in the same on-disk layout as the real data."""

from __future__ import annotations

import pytest

import data_scripts
from data_scripts.common import READY_FILE, DatasetInfo, check_ready
from repro.errors import DataMissing

pytestmark = pytest.mark.unit
NAMES = data_scripts.names()


@pytest.mark.parametrize("name", NAMES)
def test_module_contract(name):
    mod = data_scripts.load(name)
    assert isinstance(mod.INFO, DatasetInfo) and mod.INFO.name == name
    for fn in ("download", "verify", "prepare", "make_fixture"):
        assert callable(getattr(mod, fn, None)), f"data_scripts/{name}.py lacks {fn}()"
    assert mod.INFO.licence and mod.INFO.homepage and mod.INFO.layout
    if mod.INFO.gated:
        assert mod.INFO.manual_step.strip()


@pytest.mark.parametrize("name", NAMES)
def test_fixture_has_the_real_layout(name):
    root = data_scripts.build_fixture(name, force=True)
    assert check_ready(root)[0]
    mod = data_scripts.load(name)
    missing = [rel for rel in mod.INFO.layout if not (root / rel).exists()]
    assert not missing, f"fixture lacks files of the real layout: {missing}"
    assert (root / READY_FILE).exists()


@pytest.mark.parametrize("name", NAMES)
def test_missing_real_data_names_the_command(name, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    with pytest.raises(DataMissing) as exc:
        data_scripts.ensure(name)
    assert f"repro data download {name}" in exc.value.hint or f"repro data prepare {name}" in exc.value.hint
