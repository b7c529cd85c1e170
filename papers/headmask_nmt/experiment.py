"""measure(): train one arm (no mask / Random-k / Impt-k) on one seed, decode the test
set (sacreBLEU), then measure how unequal the trained model's heads are."""

from __future__ import annotations


def measure(cfg, ctx) -> dict[str, float]:
    import torch

    from .data import NMTData
    from .model import HeadMaskModule, analyse

    torch.manual_seed(ctx.seed)
    dm = NMTData(cfg, seed=ctx.seed)
    dm.setup()
    module = HeadMaskModule(cfg, dm.vocab_size, dm.detok, dm.refs["test"], seed=ctx.seed)
    res = ctx.fit_and_test(module, dm)
    net = module.net.to(ctx.device).eval()
    move = lambda bs: [{k: v.to(ctx.device) for k, v in b.items()} for b in bs]  # noqa: E731
    m = {k: float(v) for k, v in res["metrics"].items() if k.startswith("test/")}
    if cfg.analyse:
        m.update(analyse(net, move(dm.batches("importance")), move(dm.batches("test"))))
    m["train/final_loss"] = float(res["metrics"].get("train/loss", float("nan")))
    sig = getattr(module, "bleu_signature", "")
    if sig:
        ctx.echo(f"  sacreBLEU signature: {sig}")
    return m
