"""Recipe: Lightning Attention-2 (Qin et al., 2024).

A measurement recipe: no training. The paper's claims are qualitative (the abstract:
the tiled algorithm computes causal linear attention, keeps its speed and memory
independent of the sequence length, and is faster than other attention
implementations); its throughput numbers could not be confirmed against the paper text
(README), so every cpu claim is an expectation, written with its tolerance before the
first run (README, "Claims and tolerances").
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, lazy


@dataclass(frozen=True)
class Config:
    heads: int = 2
    head_dim: int = 64
    value_dim: int = 64
    total_tokens: int = 16384  # batch x n, fixed over the sweep (tokens per step)
    lengths: tuple[int, ...] = (512, 1024, 2048, 4096, 8192)
    block_size: int = 256  # CPU block (the official GPU kernel: 64), see README
    naive_max_length: int = 4096  # the masked O(n^2) form is skipped beyond (b x h x n^2 floats)
    sdpa_max_length: int = 8192
    report_length: int = 8192  # where the speed ratio to softmax SDPA is taken
    decay: bool = True  # TransNormerLLM's per-head decay in the speed/memory sweep
    time_repeats: int = 3
    threads: int = 1  # torch CPU threads during the measurement (0: leave as is), see README
    equiv_batch: int = 2
    equiv_heads: int = 4
    equiv_length: int = 999  # not a multiple of the block: the last block is partial
    equiv_dim: int = 32
    equiv_block: int = 64  # the official kernel's block size


PAPER = Paper(
    slug="lightning_attention_2",
    title="Lightning Attention-2: A Free Lunch for Handling Unlimited Sequence Lengths in Large Language Models",
    arxiv="2401.04658",
    year=2024,
    authors=("Zhen Qin", "Weigao Sun", "Dong Li", "Xuyang Shen", "Weixuan Sun", "Yiran Zhong"),
    venue="arXiv preprint",
    code="https://github.com/OpenNLPLab/lightning-attention",
)

_BOUND_TOL = Tolerance(
    "abs", 0.0, "analysis",
    "Each error is divided by gamma_K * ((|a||b|^T) * M)|c| (float64), the worst-case rounding error of "
    "any summation order of the same products, with K = n + d + 2 per block + 11 roundings per entry "
    "(input casts and the decay factors included). Tiling only reorders the sum, so a correct kernel "
    "stays below 1 on every entry; a wrong block, decay or state update gives errors many orders above it.",
)
_PROTO_EQUIV = (
    "float32 tiled forward (Algorithm 1) / tiled backward (Algorithm 2, custom autograd.Function) vs the "
    "masked O(n^2) form in float64; batch 2, 4 heads, n = 999 (blocks of 64, the last one partial), "
    "d = e = 32, q,k,v ~ N(0,1), upstream gradient ~ N(0,1); two cases: no decay and TransNormerLLM's "
    "per-head decay lambda_h = exp(-2^(-8h/H)); metric = max over entries (and over dq, dk, dv) of "
    "|error| / rounding bound, worse case."
)
_PROTO_SPEED = (
    "2 heads, d = e = 64, float32, TransNormerLLM decay, batch x n = 16384 tokens for n = 512..8192; "
    "tiled = this recipe's Lightning Attention-2 in PyTorch with blocks of 256 (a Python loop over "
    "blocks, batched over batch and heads); one CPU thread for every implementation (torch.set_num_threads(1)); median of 3 timed calls after 1 warm-up, "
    "timed round-robin over all (mode, implementation, n) (repro.measure.time_call), microseconds per token; exponent = least-squares slope of log(time per "
    "token) on log n. Hardware: the run's (the ledger records it); the paper used Triton kernels on GPUs."
)
_PROTO_MEM = (
    "same sweep; working memory = peak bytes of tensors alive during the call minus the returned "
    "tensors (repro.measure.peak_memory); exponent = slope of log memory on log n."
)

CPU_CLAIMS = (
    Claim(
        id="equiv-forward", metric="equiv/fwd_bound_ratio_tiled", reported=1.0, better="lower", bound=True,
        tolerance=_BOUND_TOL, kind="expectation", seeds=3, aggregate="max",
        source="Abstract and Sec. 3: the tiled intra-block/inter-block computation is linear attention "
               "(a reordering of the same sum); bound from our error analysis (README), expectation stated "
               "before running",
        protocol=_PROTO_EQUIV, unit="x rounding bound",
    ),
    Claim(
        id="equiv-gradient", metric="equiv/grad_bound_ratio_tiled", reported=1.0, better="lower", bound=True,
        tolerance=_BOUND_TOL, kind="expectation", seeds=3, aggregate="max",
        source="Abstract: 'a tiling technique is adopted through both forward and backward procedures'; the "
               "tiled backward gives the exact gradient; bound from our error analysis (README), expectation "
               "stated before running",
        protocol=_PROTO_EQUIV, unit="x rounding bound",
    ),
    Claim(
        id="flat-inference-speed", metric="time/fwd/tiled_per_token_exponent", reported=0.0, better=None,
        tolerance=Tolerance("abs", 0.1, "definition",
                            "'Consistent speed regardless of input sequence length' read as a per-token time "
                            "exponent within +-0.1: at most a 32% drift over the 16x range of n. The tiled "
                            "form does O(B d + d e) work per token for any n."),
        kind="expectation",
        source="Abstract: 'Lightning Attention-2 retains consistent training and inference speed regardless of "
               "input sequence length'; expectation stated before running (CPU, PyTorch)",
        protocol=_PROTO_SPEED + " Inference: forward under no_grad.", unit="",
    ),
    Claim(
        id="flat-training-speed", metric="time/train/tiled_per_token_exponent", reported=0.0, better=None,
        tolerance=Tolerance("abs", 0.1, "definition",
                            "Same reading as for inference: |exponent| <= 0.1 over n = 512..8192."),
        kind="expectation",
        source="Abstract: 'retains consistent training and inference speed regardless of input sequence "
               "length'; expectation stated before running (CPU, PyTorch)",
        protocol=_PROTO_SPEED + " Training: forward + backward to q, k, v.", unit="",
    ),
    Claim(
        id="naive-grows", metric="time/fwd/naive_per_token_exponent", reported=0.7, better="higher", bound=True,
        tolerance=Tolerance("abs", 0.0, "analysis",
                            "The masked form does 2 n (d + e) multiply-adds per token, proportional to n: the "
                            "exponent is 1 when compute-bound; fixed per-call overheads at n = 512 can only "
                            "lower it, and we allow down to 0.7."),
        kind="expectation",
        source="Abstract/Sec. 1: causal linear attention computed without the tiling cannot realise its "
               "linear cost (the baseline that the flat-speed claims are read against); expectation stated "
               "before running",
        protocol=_PROTO_SPEED.replace("tiled = ", "naive = the masked O(n^2) form (repro.blocks.linear_attention."
                                                  "causal_linear_attention) for n = 512..4096; tiled = ")
        + " Inference.",
    ),
    Claim(
        id="fixed-memory-inference", metric="memory/fwd/tiled_exponent", reported=0.05, better="lower", bound=True,
        tolerance=Tolerance("abs", 0.0, "analysis",
                            "With batch x n fixed, the tiled form keeps per-block buffers (b h B^2) and the state "
                            "(b h d e), both proportional to b = 16384 / n: its working memory cannot grow with "
                            "n. 0.05 is slack for allocator-size rounding."),
        kind="expectation",
        source="Abstract: linear attention can 'handle sequences of unlimited length ... with a fixed memory "
               "consumption', which Lightning Attention-2 realises; expectation stated before running",
        protocol=_PROTO_MEM + " Inference (no_grad forward).",
    ),
    Claim(
        id="fixed-memory-training", metric="memory/train/tiled_exponent", reported=0.05, better="lower", bound=True,
        tolerance=Tolerance("abs", 0.0, "analysis",
                            "The custom backward saves only q, k, v and recomputes block by block; its buffers "
                            "are per block and per state as in the forward, so the working memory does not grow "
                            "with n at fixed batch x n."),
        kind="expectation",
        source="Abstract: 'fixed memory consumption' for any sequence length, with tiling in forward and "
               "backward; expectation stated before running",
        protocol=_PROTO_MEM + " Training (forward + backward).",
    ),
    Claim(
        id="faster-than-softmax", metric="time/fwd/sdpa_over_tiled", reported=2.0, better="higher", bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "'Significantly faster than other attention mechanisms' read as at least 2x faster "
                            "than PyTorch's fused causal softmax attention at n = 8192 (which needs ~12x the "
                            "multiply-adds of the tiled form there)."),
        kind="expectation",
        source="Abstract: 'significantly faster than other attention mechanisms' (the paper: Triton vs "
               "FlashAttention-2 on GPU); CPU analogue against torch SDPA, expectation stated before running",
        protocol=_PROTO_SPEED + " Ratio = SDPA (causal softmax, same q,k,v) time / tiled time at n = 8192, "
                                "inference.",
        unit="x",
    ),
)

PROFILES = {
    "cpu": Profile(
        "cpu", Config(),
        "Equivalence (3 seeds) and the speed/memory sweep n = 512..8192 (first seed) on a 2-core CPU.",
        claims=CPU_CLAIMS, seeds=3, budget_minutes=5, slow=True,
    ),
    "smoke": Profile(
        "smoke", Config(total_tokens=256, lengths=(64, 128), block_size=32, naive_max_length=128,
                        sdpa_max_length=128, report_length=128, time_repeats=1, equiv_length=37, equiv_block=8,
                        equiv_dim=8, equiv_heads=2),
        "Wiring only: tiny lengths.", budget_minutes=0.5,
    ),
}



METRICS = tuple(dict.fromkeys(c.metric for c in CPU_CLAIMS))

RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, measure=lazy(".experiment:measure", __package__),
    skips={
        "full": "The paper's own measurements are Triton-kernel throughput and memory on GPUs and TransNormerLLM "
                "language-model training; their numbers could not be confirmed against the paper text (only "
                "the abstract's qualitative claims were), so there is no full profile with paper numbers. The "
                "cpu sweep runs unchanged on a GPU with --accelerator gpu.",
        "language-model": "The TNL-LA2 language-model loss comparison (vs FlashAttention-2 / LA-1 baselines) needs "
                          "the paper's training corpus and GPUs.",
    },
)
