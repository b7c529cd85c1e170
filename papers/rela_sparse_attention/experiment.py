"""measure(): train one arm of the ReLA recipe on one seed, decode, and analyse its
attention (sparsity, null attention, alignment with the gold links of the toy task)."""

from __future__ import annotations

import time


def measure(cfg, ctx) -> dict[str, float]:
    import torch

    from .model import attention_statistics, install
    from repro.nmt import NMTData, NMTModule, decoder_input

    class ReLAModule(NMTModule):
        def configure_attention(self, net):
            install(net, self.cfg.attention)

    torch.manual_seed(ctx.seed)
    dm = NMTData(cfg, seed=ctx.seed)
    dm.setup()
    module = ReLAModule(cfg, dm.vocab_size, dm.detok, dm.refs["test"])
    t0 = time.perf_counter()
    res = ctx.fit_and_test(module, dm)
    wall = time.perf_counter() - t0
    net = module.net.to(ctx.device).eval()
    batches = [{k: v.to(ctx.device) for k, v in b.items()} for b in dm.batches("test")]
    stats = attention_statistics(net, batches, lambda n, b: n(b["src"], decoder_input(b["tgt"])))
    m = {k: float(v) for k, v in res["metrics"].items() if k.startswith("test/")}
    m.update(stats)
    m["train/final_loss"] = float(res["metrics"].get("train/loss", float("nan")))
    m["time/fit_and_test_s"] = wall
    sig = getattr(module, "bleu_signature", "")
    if sig:
        ctx.echo(f"  sacreBLEU signature: {sig}")
    return m
