"""--set overrides, the claim contract and the verdict rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from repro.config import apply_overrides, config_hash, fields_table
from repro.errors import EXIT_ERROR, EXIT_NOT_REPRODUCED, EXIT_OK, UsageError
from repro.recipe import Claim, Profile, Tolerance, TrainConfig
from repro.verdict import BETTER, ERROR, NOT_MEASURED, NOT_REPRODUCED, REPRODUCED, exit_code, judge

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Inner:
    width: int = 4


@dataclass(frozen=True)
class Cfg(TrainConfig):
    attention: Literal["dot", "general", "concat"] = "dot"
    lengths: tuple[int, ...] = (1, 2)
    dropout: float | None = None
    reverse: bool = False
    inner: Inner = field(default_factory=Inner)


def test_overrides_parse_by_type():
    cfg = apply_overrides(Cfg(), ["lr=0.5", "max_epochs=3", "attention=general", "lengths=8,16,32",
                                  "dropout=none", "reverse=true", "inner.width=9", "limit_train_batches=5"])
    assert (cfg.lr, cfg.max_epochs, cfg.attention, cfg.lengths) == (0.5, 3, "general", (8, 16, 32))
    assert cfg.dropout is None and cfg.reverse is True and cfg.inner.width == 9
    assert cfg.limit_train_batches == 5 and isinstance(cfg.limit_train_batches, int)
    assert apply_overrides(Cfg(), ["limit_train_batches=0.25"]).limit_train_batches == 0.25
    assert apply_overrides(Cfg(), ["dropout=0.1"]).dropout == 0.1


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(UsageError) as exc:
        apply_overrides(Cfg(), ["lrr=0.1"])
    assert "Did you mean lr" in exc.value.message
    assert "max_epochs (int)" in exc.value.message and "inner.width (int)" in exc.value.message


@pytest.mark.parametrize("bad,expected", [
    ("lr=abc", "expected a number"), ("max_epochs=1.5", "expected an integer"),
    ("attention=bilinear", "expected one of dot, general, concat"), ("reverse=maybe", "boolean"),
    ("noequals", "key=value"),
])
def test_bad_values_are_usage_errors(bad, expected):
    with pytest.raises(UsageError, match=expected):
        apply_overrides(Cfg(), [bad])


def test_config_hash_is_stable_and_sensitive():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(apply_overrides(Cfg(), ["lr=0.2"]))
    assert ("inner.width", "int", 4) in fields_table(Cfg())


def _claim(**kw):
    base = dict(id="c", metric="m", reported=10.0, better="higher",
                tolerance=Tolerance("abs", 1.0, "assumed", "test"), source="Table 1", protocol="p")
    base.update(kw)
    return Claim(**base)


def test_claim_validation():
    with pytest.raises(ValueError, match="source"):
        _claim(source=" ")
    with pytest.raises(ValueError, match="protocol"):
        _claim(protocol="")
    with pytest.raises(ValueError, match="note"):
        Tolerance("abs", 1.0, "assumed", "")
    with pytest.raises(ValueError, match="basis"):
        Tolerance("abs", 1.0, "vibes", "x")
    with pytest.raises(ValueError, match="sigma"):
        Tolerance("sigma", 2.0, "paper_std", "x")
    with pytest.raises(ValueError, match="direction"):
        _claim(better=None, bound=True)
    with pytest.raises(ValueError, match="smoke"):
        Profile("smoke", Cfg(), "x", claims=(_claim(),))


@pytest.mark.parametrize("values,verdict", [
    ([10.5], REPRODUCED), ([9.0], REPRODUCED), ([11.5], BETTER), ([8.9], NOT_REPRODUCED),
    ([10.0, 12.0, 11.0], REPRODUCED),  # mean 11.0 is within 1.0
])
def test_value_claims(values, verdict):
    assert judge(_claim(), values).verdict == verdict


def test_lower_is_better_and_two_sided():
    c = _claim(better="lower")
    assert judge(c, [8.5]).verdict == BETTER and judge(c, [11.5]).verdict == NOT_REPRODUCED
    c2 = _claim(better=None)
    assert judge(c2, [8.5]).verdict == NOT_REPRODUCED and judge(c2, [10.9]).verdict == REPRODUCED


def test_bounds_never_better():
    hi = _claim(bound=True, tolerance=Tolerance("abs", 0.0, "definition", "t"))
    assert judge(hi, [100.0]).verdict == REPRODUCED and judge(hi, [9.99]).verdict == NOT_REPRODUCED
    lo = _claim(bound=True, better="lower", tolerance=Tolerance("abs", 0.5, "analysis", "t"))
    assert judge(lo, [10.4]).verdict == REPRODUCED and judge(lo, [10.6]).verdict == NOT_REPRODUCED


def test_rel_and_sigma_tolerances():
    assert judge(_claim(tolerance=Tolerance("rel", 0.1, "assumed", "t")), [10.9]).verdict == REPRODUCED
    assert judge(_claim(tolerance=Tolerance("rel", 0.1, "assumed", "t")), [8.9]).verdict == NOT_REPRODUCED
    sig = Tolerance("sigma", 2.0, "paper_std", "t", std=0.3)
    assert judge(_claim(tolerance=sig), [9.45]).verdict == REPRODUCED
    assert judge(_claim(tolerance=sig), [9.3]).verdict == NOT_REPRODUCED


def test_missing_nan_seeds_and_errors():
    c = _claim(seeds=3)
    r = judge(c, [10.0, None, 10.0])
    assert r.verdict == NOT_MEASURED and "needs 3 seeds" in r.reason
    assert judge(_claim(), []).verdict == NOT_MEASURED
    assert judge(_claim(), [None]).verdict == NOT_MEASURED
    assert judge(_claim(), [float("nan")]).verdict == NOT_REPRODUCED
    assert judge(_claim(), [10.0], errors=["seed0: boom"]).verdict == ERROR
    assert judge(_claim(seeds=1, aggregate="max"), [1.0, None, 12.0]).measured == 12.0


def test_unmeasurable_claim_says_what_it_requires():
    plain = judge(_claim(), [None])
    assert plain.reason == "metric m not logged"
    c = _claim(requires="install CoreNLP 3.6.0 (README), then --set spice=true")
    r = judge(c, [None])
    assert r.verdict == NOT_MEASURED and r.reason.endswith("to measure it: install CoreNLP 3.6.0 (README), then --set spice=true")
    assert judge(c, [10.0]).verdict == REPRODUCED  # requires only explains a missing value


def test_exit_codes():
    assert exit_code([REPRODUCED, BETTER, NOT_MEASURED]) == EXIT_OK
    assert exit_code([REPRODUCED, NOT_REPRODUCED]) == EXIT_NOT_REPRODUCED
    assert exit_code([NOT_REPRODUCED, ERROR]) == EXIT_ERROR
    assert exit_code([]) == EXIT_OK
