"""Up-Down captioner: the two-LSTM step against a naive re-implementation of eq. 2-7,
masked regions, the self-critical loss, the region encoder, and the bottom-up feature
data script (TSV round trip, prepared arrays)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.unit


def _cfg(**kw):
    from papers.bottom_up_top_down.recipe import PROFILES

    base = dataclasses.replace(PROFILES["smoke"].config, dataset="scenes", features="regions", n_train=8, n_val=4,
                               n_test=4, batch_size=4, eval_batch_size=4)
    return dataclasses.replace(base, **kw)


def _model_and_batch(**kw):
    pytest.importorskip("pycocoevalcap", reason="SCST rewards use pycocoevalcap's CIDEr-D")
    from papers.bottom_up_top_down.data import build_datamodule, build_vocab, feature_dim, train_references
    from papers.bottom_up_top_down.model import UpDown

    cfg = _cfg(**kw)
    torch.manual_seed(0)
    model = UpDown(cfg, build_vocab(cfg), feature_dim(cfg), train_refs=train_references(cfg))
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return model, next(iter(dm.train_dataloader())), dm


def test_step_matches_the_papers_equations():
    """One decoder step recomputed by hand from eq. 2-7 with the module's weights."""
    model, batch, _ = _model_and_batch(features="bottom_up", dataset="scenes")  # features passed directly below
    torch.manual_seed(1)
    b, k, d = 3, 5, model.att.feat_proj.in_features
    v = torch.randn(b, k, d)
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[0, 3:] = False
    enc = model.encode({"features": v, "feature_mask": mask})
    state = {n: torch.randn(b, model.cfg.hidden) for n in ("h1", "c1", "h2", "c2")}
    word = torch.tensor([5, 6, 7])
    model.eval()
    logits, new, alpha = model.step(word, state, enc)

    def lstm(cell, x, h, c):
        gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
        i, f, g, o = gates.chunk(4, -1)
        c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c2), c2

    v_mean = torch.stack([v[i][mask[i]].mean(0) for i in range(b)])
    x1 = torch.cat([state["h2"], v_mean, model.embed.weight[word]], -1)  # eq. 2
    h1, _ = lstm(model.att_lstm, x1, state["h1"], state["c1"])
    a = model.att.score(torch.tanh(model.att.feat_proj(v) + model.att.query_proj(h1)[:, None])).squeeze(-1)  # eq. 3
    a = a.masked_fill(~mask, float("-inf"))
    al = torch.softmax(a, -1)  # eq. 4
    v_hat = (al[..., None] * v).sum(1)  # eq. 5
    h2, _ = lstm(model.lang_lstm, torch.cat([v_hat, h1], -1), state["h2"], state["c2"])  # eq. 6
    ref = model.W_p(h2)  # eq. 7 (logits of the softmax)
    assert torch.allclose(alpha, al, atol=1e-6) and (alpha[0, 3:] == 0).all()
    assert torch.allclose(new["h1"], h1, atol=1e-6) and torch.allclose(new["h2"], h2, atol=1e-6)
    assert torch.allclose(logits, ref, atol=1e-5)


def test_scst_loss_is_zero_when_all_beams_score_alike_and_pushes_up_the_better_beam():
    model, batch, _ = _model_and_batch(scst_beam=3)
    loss, _ = model.scst_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    # rewards all equal -> advantage 0 -> no gradient signal
    model.zero_grad()

    class Flat:
        def scores(self, hyps, refs):
            return [1.0] * len(hyps)

    model.cider = Flat()
    loss, _ = model.scst_loss(batch)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_scst_raises_the_log_probability_of_a_rewarded_caption():
    model, batch, _ = _model_and_batch(scst_beam=2)

    class FirstBeamBest:
        def scores(self, hyps, refs):
            return [1.0 if i % 2 == 0 else 0.0 for i in range(len(hyps))]

    model.cider = FirstBeamBest()
    model.eval()
    with torch.no_grad():
        res = model.decode(batch, beam_size=2)
    before = res.all_scores[:, 0] - res.all_scores[:, 1]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        loss, _ = model.scst_loss(batch)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        # log-probabilities of the same two captions under the updated model
        b, k, t = res.all_tokens.shape
        seqs = res.all_tokens.reshape(b * k, t)
        cap = torch.cat([torch.ones(b * k, 1, dtype=torch.long), seqs], 1)
        exp = {kk: (vv.repeat_interleave(k, 0) if isinstance(vv, torch.Tensor) and vv.shape[:1] == (b,) else vv)
               for kk, vv in batch.items() if kk not in ("refs", "caption")}
        exp.update(caption=cap, refs=[r for r in batch["refs"] for _ in range(k)])
        out = model.teacher_forced(exp)
        lp = torch.log_softmax(out["logits"], -1).gather(-1, out["targets"][..., None]).squeeze(-1)
        lp = (lp * (out["targets"] != 0)).sum(1).view(b, k)
    assert ((lp[:, 0] - lp[:, 1]) > before).all()


def test_grid_and_region_encoders():
    for mode, k in (("regions", 6), ("grid", 36)):
        model, batch, _ = _model_and_batch(features=mode)
        enc = model.encode(batch)
        assert enc["v"].shape == (4, k, model.cfg.feat_dim)
        loss = model.training_step(batch, 0)
        loss.backward()
        assert all(p.grad is not None for p in model.encoder.parameters())


def test_region_boxes_hold_the_objects():
    import random

    from data_scripts import _captions as C
    from papers.bottom_up_top_down.data import region_boxes

    scene = C.sample_scene(random.Random(0), 48)
    boxes = region_boxes(scene, 6, random.Random(1))
    assert len(boxes) == 6
    for ob in scene["objects"]:
        assert list(ob["box"]) in boxes


def test_bottom_up_tsv_roundtrip_and_prepared_arrays(tmp_path, monkeypatch):
    import json

    import data_scripts
    from data_scripts import coco_bottom_up as M

    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    root = data_scripts.build_fixture("coco_bottom_up", force=True)
    rows = list(M.iter_rows(root / "raw" / M.FEATURES_ZIP))
    feats = np.load(root / "features.npy", mmap_mode="r")
    boxes = np.load(root / "boxes.npy")
    caps = json.loads((root / "captions.json").read_text())["images"]
    assert feats.shape == (len(rows), 36, 2048) and feats.dtype == np.float16
    by_id = {r[0]: r for r in rows}
    for im in caps:
        image_id, w, h, b, f = by_id[im["id"]]
        assert np.allclose(feats[im["row"]], f.astype(np.float16)) and np.allclose(boxes[im["row"]], b)
    assert {im["split"] for im in caps} == {"train", "val", "test"}


def test_prepare_refuses_features_missing_for_split_images(tmp_path):
    from data_scripts import _captions as C
    from data_scripts import coco_bottom_up as M
    from repro.errors import ChecksumError

    M.make_fixture(tmp_path)
    data = C.read_karpathy(tmp_path / "raw" / C.KARPATHY_ZIP, M.MEMBER)
    data["images"].append(dict(data["images"][0], cocoid=999999))
    C.write_fixture_karpathy(tmp_path, M.MEMBER, data["images"], "coco")
    with pytest.raises(ChecksumError):
        M.prepare(tmp_path)
