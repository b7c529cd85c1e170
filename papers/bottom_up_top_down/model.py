"""Bottom-Up and Top-Down attention captioner (Anderson et al., CVPR 2018), Section 3.2.

Only the paper's delta is written here; vocabulary, additive attention, beam search,
data and the train/test loop are shared (``repro.blocks.captioning``).

* input: a set of k region features V = {v_1..v_k} (bottom-up attention: Faster R-CNN
  ResNet-101 features of 36 boxes, Section 3.1), precomputed and not fine-tuned;
* top-down attention LSTM (Section 3.2.1): x1_t = [h2_{t-1}; v_mean; W_e Pi_t] (eq. 2);
  a_it = w_a^T tanh(W_va v_i + W_ha h1_t) (eq. 3), alpha_t = softmax(a_t) (eq. 4),
  v_hat_t = sum_i alpha_it v_i (eq. 5);
* language LSTM (Section 3.2.2): x2_t = [v_hat_t; h1_t] (eq. 6),
  p(y_t) = softmax(W_p h2_t + b_p) (eq. 7);
* objectives (Section 3.2.3): cross-entropy (eq. 8), then CIDEr-D optimisation with
  self-critical sequence training (eq. 9-10). As in the official SCST layer
  (Up-Down-Captioner ``layers/scst_layers.py``), the sampled captions are the k beams
  of a beam search and each beam's baseline is the mean reward of its image's beams:
  loss = -sum_b (r_b - mean_b r) log p(w_b).

The cpu analogue has no detector: ``SceneEncoder`` trains a small CNN jointly and
pools its feature map either over oracle object boxes plus distractor boxes
(``regions``, the bottom-up analogue) or over a uniform grid (``grid``, the paper's
ResNet-grid baseline analogue).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from repro.blocks.caption_scenes import SmallCNN
from repro.blocks.captioning import (
    PAD, AdditiveAttention, CaptionModule, Vocab, masked_mean,
)


class SceneEncoder(nn.Module):
    """cpu analogue's feature extractor: the Show-Attend-Tell small CNN (coordinate
    channels, 48x48 -> 6x6 grid), pooled over boxes (RoIAlign, 2x2 bins averaged) or
    taken per grid cell."""

    def __init__(self, mode: str, dim: int, width: int) -> None:
        super().__init__()
        self.mode, self.cnn, self.out_dim = mode, SmallCNN(dim, width), dim

    def forward(self, images: Tensor, boxes: Tensor | None) -> Tensor:
        feats = self.cnn(images)  # (B, L, D), row-major cells
        if self.mode == "grid":
            return feats
        from torchvision.ops import roi_align

        b, l, d = feats.shape
        g = int(round(l**0.5))
        fmap = feats.transpose(1, 2).reshape(b, d, g, g)
        k = boxes.shape[1]
        rois = torch.cat([torch.arange(b, device=boxes.device, dtype=boxes.dtype).repeat_interleave(k).unsqueeze(1),
                          boxes.reshape(-1, 4)], 1)
        pooled = roi_align(fmap, rois, output_size=2, spatial_scale=g / images.shape[-1], sampling_ratio=2,
                           aligned=True)
        return pooled.mean((2, 3)).view(b, k, d)


class UpDown(CaptionModule):
    def __init__(self, cfg, vocab: Vocab, feat_dim: int, train_refs: list[list[str]] | None = None) -> None:
        super().__init__(vocab, lr=cfg.lr, beam_size=cfg.beam_size, max_len=cfg.max_len, meteor=cfg.meteor,
                         spice=cfg.spice, weight_decay=cfg.weight_decay, torch_threads=cfg.torch_threads)
        self.cfg = cfg
        self.encoder = SceneEncoder(cfg.features, cfg.feat_dim, cfg.cnn_width) if cfg.features in ("regions", "grid") \
            else None
        d = self.encoder.out_dim if self.encoder is not None else feat_dim
        n, m, v = cfg.hidden, cfg.embed, len(vocab)
        self.embed = nn.Embedding(v, m, padding_idx=PAD)  # W_e
        self.att_lstm = nn.LSTMCell(n + d + m, n)  # eq. 2
        self.att = AdditiveAttention(d, n, cfg.att_hidden)  # eq. 3-5
        self.lang_lstm = nn.LSTMCell(d + n, n)  # eq. 6
        self.drop = nn.Dropout(cfg.dropout)
        self.W_p = nn.Linear(n, v)  # eq. 7
        self.cider = None
        if train_refs is not None and cfg.scst_epochs > 0:
            from repro.metrics.caption import CorpusCiderD

            self.cider = CorpusCiderD(train_refs)
        self._xe_scores: dict[str, float] = {}

    # -- CaptionModule interface
    def encode(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        if self.encoder is not None:
            v = self.encoder(batch["image"], batch.get("region_boxes"))
            mask = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
        else:
            v, mask = batch["features"].float(), batch["feature_mask"]
        return {"v": v, "mask": mask, "v_mean": masked_mean(v, mask), "proj": self.att.project(v)}

    def init_state(self, enc):
        b, n = enc["v"].shape[0], self.cfg.hidden
        z = enc["v"].new_zeros(b, n)
        return {"h1": z, "c1": z, "h2": z, "c2": z}

    def step(self, word: Tensor, state, enc):
        x1 = torch.cat([state["h2"], enc["v_mean"], self.embed(word)], -1)
        h1, c1 = self.att_lstm(x1, (state["h1"], state["c1"]))
        v_hat, alpha = self.att(enc["v"], enc["proj"], h1, enc["mask"])
        h2, c2 = self.lang_lstm(torch.cat([v_hat, h1], -1), (state["h2"], state["c2"]))
        return self.W_p(self.drop(h2)), {"h1": h1, "c1": c1, "h2": h2, "c2": c2}, alpha

    # -- objectives
    @property
    def in_scst(self) -> bool:
        return self.cfg.scst_epochs > 0 and self.current_epoch >= self.cfg.xe_epochs

    def training_step(self, batch, batch_idx):
        if not self.in_scst:
            return super().training_step(batch, batch_idx)
        loss, mean_reward = self.scst_loss(batch)
        self.log("train/scst_loss", loss.detach(), batch_size=len(batch["refs"]))
        self.log("train/reward", mean_reward, prog_bar=True, batch_size=len(batch["refs"]))
        return loss

    def scst_loss(self, batch) -> tuple[Tensor, float]:
        """Self-critical loss over the k beams of each image (official Up-Down SCST)."""
        k = self.cfg.scst_beam
        was_training = self.training
        self.eval()
        with torch.no_grad():
            res = self.decode(batch, beam_size=k)
        self.train(was_training)
        b, _, t = res.all_tokens.shape
        hyps = [self.vocab.decode(seq) for seq in res.all_tokens.reshape(b * k, t).tolist()]
        refs = [r for r in batch["refs"] for _ in range(k)]
        rewards = torch.tensor(self.cider.scores(hyps, refs), device=res.all_tokens.device).view(b, k)
        advantage = rewards - rewards.mean(1, keepdim=True)
        # log p of each beam caption (with <eos>) under the current, trainable model
        seqs = res.all_tokens.reshape(b * k, t)
        bos = torch.full((b * k, 1), 1, dtype=torch.long, device=seqs.device)
        expanded = {key: (val.repeat_interleave(k, 0) if isinstance(val, Tensor) and val.shape[:1] == (b,) else val)
                    for key, val in batch.items() if key not in ("refs", "caption")}
        expanded["refs"] = refs
        expanded["caption"] = torch.cat([bos, seqs], 1)
        out = self.teacher_forced(expanded)
        logp = torch.log_softmax(out["logits"], -1).gather(-1, out["targets"].unsqueeze(-1)).squeeze(-1)
        keep = out["targets"] != PAD
        seq_logp = (logp * keep).sum(1).view(b, k)
        loss = -(advantage.detach() * seq_logp).sum(1).mean()
        return loss, float(rewards.mean())

    # -- the cross-entropy model's test scores, taken just before CIDEr optimisation
    def on_train_epoch_end(self) -> None:
        if self.cfg.scst_epochs > 0 and self.current_epoch == self.cfg.xe_epochs - 1 and not self._xe_scores:
            self._xe_scores = self.evaluate_test_split()

    def evaluate_test_split(self) -> dict[str, float]:
        dm = self.trainer.datamodule
        if "test" not in dm.sets:
            dm.setup("test")
        was_training = self.training
        self.eval()
        hyps, refs = {}, {}
        with torch.no_grad():
            for batch in dm.test_dataloader():
                batch = {k: (v.to(self.device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
                res = self.decode(batch)
                for img, toks, rs in zip(batch["image_id"].tolist(), res.tokens.tolist(), batch["refs"]):
                    hyps[img], refs[img] = self.vocab.decode(toks), list(rs)
        self.train(was_training)
        return self.score(hyps, refs)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["xe_test_scores"] = dict(self._xe_scores)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._xe_scores = dict(checkpoint.get("xe_test_scores", {}))

    def on_test_epoch_end(self) -> None:
        if not self._hyps:
            return
        final = self.score(self._hyps, self._refs)
        xe = self._xe_scores if self.cfg.scst_epochs > 0 else final
        for key, val in final.items():
            self.log(f"test/{key}", val)
        for key, val in xe.items():
            self.log(f"test/xe/{key}", val)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.cfg.optimizer == "sgd":  # official solver: SGD, momentum 0.9, weight decay 5e-4, poly decay
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.cfg.weight_decay)
            total = max(1, self.cfg.xe_epochs)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda e: max(0.0, 1.0 - e / total) if e < total else self.cfg.scst_lr / self.lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 if e < self.cfg.xe_epochs else self.cfg.scst_lr / self.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
