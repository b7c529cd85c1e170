"""Token-budget batching: budget respected, every index once, deterministic per (seed, epoch)."""

from __future__ import annotations

import pytest
import torch

from repro.training import TokenBatchSampler

pytestmark = pytest.mark.unit


def lengths(n=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(1, 60, (n,), generator=g) ** 1.3).long().clamp(1, 150).tolist()


@pytest.mark.parametrize("max_tokens", [150, 400, 1000])
@pytest.mark.parametrize("max_sentences", [None, 7])
def test_budget_and_each_index_exactly_once(max_tokens, max_sentences):
    lens = lengths()
    s = TokenBatchSampler(lens, max_tokens, seed=3, max_sentences=max_sentences)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lens)))
        for b in batches:
            assert len(b) * max(lens[i] for i in b) <= max_tokens
            assert max_sentences is None or len(b) <= max_sentences
    # batches group similar lengths: padding waste is small
    pad = sum(len(b) * max(lens[i] for i in b) - sum(lens[i] for i in b) for b in batches)
    assert pad / sum(lens) < 0.1


def test_deterministic_given_seed_and_epoch():
    lens = lengths(300, 1)
    a, b = TokenBatchSampler(lens, 500, seed=7), TokenBatchSampler(lens, 500, seed=7)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(TokenBatchSampler(lens, 500, seed=8)) != list(TokenBatchSampler(lens, 500, seed=7))
    ordered = list(TokenBatchSampler(lens, 500, seed=7, shuffle=False))
    maxes = [max(lens[i] for i in bt) for bt in ordered]
    assert maxes == sorted(maxes)


def test_too_long_example_is_an_error_and_dataloader_use():
    with pytest.raises(ValueError, match="1 examples are longer than max_tokens=10"):
        TokenBatchSampler([3, 11, 4], 10)
    data = torch.arange(10)
    dl = torch.utils.data.DataLoader(data, batch_sampler=TokenBatchSampler([2] * 10, 6, seed=0))
    assert sorted(torch.cat(list(dl)).tolist()) == list(range(10)) and all(len(x) <= 3 for x in dl)


def test_tensor_batches_gather_whole_batches_as_tuples_or_dicts():
    from torch.utils.data import BatchSampler, DataLoader

    from repro.training import TensorBatches, keep_batch

    x, y = torch.arange(10).view(5, 2), torch.arange(5) * 10
    tup = TensorBatches(x, y)
    assert len(tup) == 5
    batches = list(DataLoader(tup, batch_sampler=BatchSampler([4, 0, 2, 1, 3], 2, drop_last=False),
                              collate_fn=keep_batch))
    assert [b[1].tolist() for b in batches] == [[40, 0], [20, 10], [30]]
    assert torch.equal(batches[0][0], x[[4, 0]])
    named = TensorBatches({"x": x, "y": y})
    first = next(iter(DataLoader(named, batch_size=3, collate_fn=keep_batch)))
    assert set(first) == {"x", "y"} and first["y"].tolist() == [0, 10, 20]
    assert named[4]["y"].item() == 40 and torch.equal(tup[2][0], x[2])
