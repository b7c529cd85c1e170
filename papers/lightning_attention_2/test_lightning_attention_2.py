"""Lightning Attention-2's tiled forward/backward against the masked O(n^2) reference
and the recurrent form (shared block), outputs and gradients, awkward shapes; the
error-bound metric the claims use; the memory property."""

from __future__ import annotations

import pytest
import torch

from repro.blocks.linear_attention import causal_linear_attention, decay_mask, recurrent_linear_attention
from repro.measure import peak_memory

from .data import random_qkv
from .experiment import rounding_bound
from .model import _intra_mask, alibi_slopes, block_flops, lightning_attention, naive_flops, tnl_decay

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


CASES = [  # (batch, heads, n, d, e, block)
    (1, 1, 1, 3, 3, 4),
    (2, 3, 37, 5, 7, 8),  # n not a multiple of the block, d != e
    (1, 2, 64, 4, 4, 64),  # one full block
    (2, 4, 130, 8, 6, 32),  # partial last block
    (1, 2, 50, 4, 4, 1),  # block of one row: the recurrence
    (1, 1, 20, 3, 2, 1000),  # block larger than the sequence: the masked form
]
DECAYS = [None, 0.9, "tnl"]


def _decay(spec, heads):
    return tnl_decay(heads, torch.float64) if spec == "tnl" else spec


def _check(case, spec):
    b, h, n, d, e, blk = case
    q, k, v = random_qkv(b, h, n, d, e, seed=n + blk, dtype=torch.float64, requires_grad=True)
    lam = _decay(spec, h)
    ref = causal_linear_attention(q, k, v, decay=lam)
    out = lightning_attention(q, k, v, lam, blk)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-11)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for a, r in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("spec", DECAYS)
def test_tiled_equals_masked_reference(case, spec):
    _check(case, spec)


@pytest.mark.parametrize("spec", DECAYS)
def test_tiled_equals_recurrent_form(spec):
    q, k, v = random_qkv(2, 2, 45, 4, 3, seed=5, dtype=torch.float64)
    lam = _decay(spec, 2)
    with torch.no_grad():
        torch.testing.assert_close(lightning_attention(q, k, v, lam, 16), recurrent_linear_attention(q, k, v, decay=lam),
                                   rtol=1e-10, atol=1e-11)


def test_gradcheck_small():
    q, k, v = random_qkv(1, 2, 11, 3, 2, seed=1, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor([0.8, 0.95], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b, c: lightning_attention(a, b, c, lam, 4), (q, k, v))


def test_intra_mask_and_slopes():
    log_lam = torch.log(torch.tensor(0.5, dtype=torch.float64)).reshape(1, 1)
    D = _intra_mask(3, log_lam, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(D[0] if D.dim() == 3 else D, decay_mask(3, 0.5, dtype=torch.float64))
    assert alibi_slopes(8) == [2.0 ** -i for i in range(1, 9)]
    torch.testing.assert_close(tnl_decay(4, torch.float64), torch.exp(-torch.tensor([2**-2, 2**-4, 2**-6, 2**-8],
                                                                                    dtype=torch.float64)))


def test_invalid_arguments():
    q, k, v = random_qkv(1, 1, 4, 2, 2, seed=0)
    with pytest.raises(ValueError):
        lightning_attention(q, k, v, 1.5)
    with pytest.raises(ValueError):
        lightning_attention(q, k, v, None, 0)


def test_rounding_bound_metric_detects_a_wrong_kernel():
    """The equivalence metric is error / rounding bound: a correct float32 kernel sits far
    below 1, a kernel with one wrong decay factor far above it."""
    n, blk = 99, 16
    q, k, v = random_qkv(1, 2, n, 8, 8, seed=2, dtype=torch.float64)
    lam = tnl_decay(2, torch.float64)
    ref = causal_linear_attention(q, k, v, decay=lam)
    bound = rounding_bound(q, k, v, decay_mask(n, lam, dtype=torch.float64), n + 8 + 2 * 7 + 11)
    good = lightning_attention(q.float(), k.float(), v.float(), lam.float(), blk).double()
    assert ((good - ref).abs() / bound).max() < 1
    wrong = lightning_attention(q.float(), k.float(), v.float(), (lam ** 2).float(), blk).double()  # wrong decay
    assert ((wrong - ref).abs() / bound).max() > 100


def test_no_quadratic_buffer():
    """Tiled forward and backward keep O(b h (B^2 + n (d + e) + d e)) memory, never n^2."""
    b, h, n, d, blk = 1, 1, 1024, 8, 128
    q, k, v = random_qkv(b, h, n, d, d, seed=0, requires_grad=True)
    with torch.no_grad():
        fwd, _ = peak_memory(lambda: lightning_attention(q, k, v, 0.99, blk))
        naive, _ = peak_memory(lambda: causal_linear_attention(q, k, v, decay=0.99))
    train, _ = peak_memory(lambda: torch.autograd.grad(lightning_attention(q, k, v, 0.99, blk), (q, k, v),
                                                       torch.ones(b, h, n, d)))
    assert naive.overhead_bytes >= n * n * 4  # the reference materialises n x n
    bound = 16 * blk * blk * 4 + 8 * blk * d * 4 + 4 * d * d * 4 + 3 * n * d * 4
    assert fwd.overhead_bytes < bound and train.overhead_bytes < bound, (fwd, train, bound)


def test_flop_counts():
    assert block_flops(256, 64, 64, 64) < naive_flops(256, 64, 64)
    # per token the tiled count is independent of n (up to the first/last block)
    per_tok = [block_flops(n, 64, 64, 256) / n for n in (1024, 4096, 16384)]
    assert max(per_tok) / min(per_tok) < 1.05
    assert naive_flops(4096, 64, 64) / 4096 == 4 * naive_flops(1024, 64, 64) / 1024  # per token: grows with n
