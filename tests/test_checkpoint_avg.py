"""Checkpoint averaging on hand-made state dicts."""

from __future__ import annotations

import os

import pytest
import torch

from repro.checkpoint_avg import average_checkpoints, average_state_dicts, last_checkpoints, load_state_dict

pytestmark = pytest.mark.unit


def sd(w, b, steps, half=1.0):
    return {"w": torch.tensor(w, dtype=torch.float32), "b": torch.tensor(b, dtype=torch.float64),
            "bn.num_batches_tracked": torch.tensor(steps), "h": torch.tensor([half], dtype=torch.float16),
            "flag": torch.tensor([steps % 2 == 0])}


def test_exact_average_and_integer_buffers_from_the_last():
    states = [sd([[1.0, 2.0], [3.0, 4.0]], [0.5], 10, 1.0), sd([[3.0, 2.0], [5.0, 0.0]], [1.5], 20, 2.0),
              sd([[2.0, 2.0], [1.0, 2.0]], [4.0], 31, 4.5)]
    avg = average_state_dicts(states)
    assert avg["w"].tolist() == [[2.0, 2.0], [3.0, 2.0]] and avg["w"].dtype == torch.float32
    assert avg["b"].tolist() == [2.0] and avg["b"].dtype == torch.float64
    assert avg["h"].tolist() == [2.5] and avg["h"].dtype == torch.float16
    assert avg["bn.num_batches_tracked"].item() == 31 and avg["bn.num_batches_tracked"].dtype == torch.int64
    assert avg["flag"].tolist() == [False]
    assert list(avg) == list(states[-1])
    # float64 accumulation: the mean of 0.1, 0.2, 0.3 in float32 is float32(0.2)
    tenths = [{"x": torch.tensor([v], dtype=torch.float32)} for v in (0.1, 0.2, 0.3)]
    assert average_state_dicts(tenths)["x"].item() == torch.tensor(0.2, dtype=torch.float32).item()
    assert average_state_dicts(states[:1])["w"].equal(states[0]["w"])


def test_mismatched_keys_and_shapes_are_clear_errors():
    a, b = sd([[1.0]], [0.0], 1), sd([[1.0]], [0.0], 2)
    del b["h"]
    b["extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"state dict 0 does not match.*missing \['extra'\].*unexpected \['h'\]"):
        average_state_dicts([a, b])
    c = sd([[1.0, 2.0]], [0.0], 3)
    with pytest.raises(ValueError, match=r"'w': shape \(1, 1\) in state dict 0, \(1, 2\) in the last one"):
        average_state_dicts([a, c])
    with pytest.raises(ValueError, match="no state dicts"):
        average_state_dicts([])


def test_lightning_and_plain_checkpoints_last_n_and_output(tmp_path):
    for step in (100, 200, 300, 1000):
        w = float(step)
        ckpt = {"epoch": step // 100, "global_step": step, "state_dict": {"model.w": torch.tensor([w, -w])},
                "optimizer_states": [{"state": {}}]}
        torch.save(ckpt, tmp_path / f"epoch={step // 100}-step={step}.ckpt")
    torch.save({"epoch": 99, "state_dict": {"model.w": torch.zeros(2)}}, tmp_path / "last.ckpt")
    os.utime(tmp_path / "epoch=1-step=100.ckpt")  # newest on disk, but the oldest by step
    paths = last_checkpoints(tmp_path, 3)
    assert [p.name for p in paths] == ["epoch=2-step=200.ckpt", "epoch=3-step=300.ckpt", "epoch=10-step=1000.ckpt"]
    out = tmp_path / "avg" / "averaged.ckpt"
    avg = average_checkpoints(paths, out)
    assert avg["model.w"].tolist() == [500.0, -500.0]
    saved = torch.load(out, weights_only=True)
    assert saved["global_step"] == 1000 and saved["state_dict"]["model.w"].tolist() == [500.0, -500.0]
    assert saved["averaged_checkpoints"] == [p.name for p in paths]
    assert load_state_dict(out)["model.w"].tolist() == [500.0, -500.0]
    # plain state dicts, fairseq-style names
    for i in (1, 2, 10):
        torch.save({"w": torch.full((2,), float(i))}, tmp_path / f"checkpoint{i}.pt")
    plain = last_checkpoints(tmp_path, 2, "checkpoint*.pt")
    assert [p.name for p in plain] == ["checkpoint2.pt", "checkpoint10.pt"]
    average_checkpoints(plain, tmp_path / "avg.pt")
    assert torch.load(tmp_path / "avg.pt", weights_only=True)["w"].tolist() == [6.0, 6.0]
    with pytest.raises(ValueError, match=r"3 checkpoints match 'checkpoint\*.pt', 4 wanted"):
        last_checkpoints(tmp_path, 4, "checkpoint*.pt")
    torch.save({"not": "tensors"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="neither a Lightning checkpoint nor a state dict"):
        load_state_dict(tmp_path / "bad.pt")


def test_averaging_a_real_module():
    torch.manual_seed(0)
    mods = [torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)) for _ in range(3)]
    for i, m in enumerate(mods):
        m.train()
        for _ in range(i + 1):
            m(torch.randn(4, 3))
    avg = average_state_dicts([m.state_dict() for m in mods])
    torch.testing.assert_close(avg["0.weight"], torch.stack([m[0].weight for m in mods]).mean(0).detach())
    assert avg["1.num_batches_tracked"].item() == 3
    target = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    target.load_state_dict(avg)
