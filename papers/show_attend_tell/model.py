"""Show, Attend and Tell (Xu et al., ICML 2015): an LSTM decoder that attends over the
L annotation vectors a_i of a convolutional encoder at every word.

Only the paper's delta is written here; the vocabulary, additive attention f_att,
beam search, data and the train/test loop are shared (``repro.blocks.captioning``).

* encoder (Section 3.1.1): annotation vectors a = {a_1..a_L}, a_i in R^D from a lower
  conv layer: VGG-19 conv5_4 (14x14x512, L=196) for the paper's setting (ImageNet
  weights, not fine-tuned), or a small CNN trained jointly for the cpu analogue (no
  pretrained weights offline; inputs get two coordinate channels, see README);
* decoder (Section 3.1.2): h_0, c_0 = tanh(f_init(mean_i a_i)); e_ti = f_att(a_i,
  h_{t-1}) (eq. 4), alpha_t = softmax(e_t) (eq. 5); z_t = phi({a_i}, {alpha_ti}) (eq. 6);
  LSTM input [E y_{t-1}; z_t] (eq. 1-3); deep output p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t
  + L_z z_t)) (eq. 7; a tanh before L_o as in the official code);
* phi, Section 4: ``soft`` z_t = beta_t sum_i alpha_ti a_i with the gating scalar
  beta_t = sigmoid(f_beta(h_{t-1})) (Section 4.2.1); ``hard`` z_t = beta_t a_{s_t},
  s_t ~ Multinoulli(alpha_t) trained with the variational lower bound (eq. 10-12: moving-
  average baseline, entropy term, and with probability 0.5 the expected context), and
  the expected context at test time; ``mean`` is the no-attention baseline z_t = beta_t
  mean_i a_i (the cpu analogue's control, not a model of the paper);
* doubly stochastic attention (Section 4.2.1, eq. 14): + lambda sum_i (1 - sum_t alpha_ti)^2.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.caption_scenes import SmallCNN
from repro.blocks.captioning import PAD, AdditiveAttention, CaptionModule, Vocab

# --------------------------------------------------------------------------- encoders


class VGGConv54(nn.Module):
    """The paper's encoder: VGG-19 up to conv5_4 + ReLU, before the last max-pool
    (224x224 -> 14x14x512), frozen ("we do not perform any finetuning")."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from torchvision.models import VGG19_Weights, vgg19

        net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1 if pretrained else None)
        self.features = net.features[:36]  # drops the final MaxPool2d (index 36)
        self.out_dim = 512
        for p in self.features.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()  # frozen: no dropout/batch-norm state anyway, but keep it explicit
        return self

    def forward(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            fmap = self.features(images)
        return fmap.flatten(2).transpose(1, 2)


# --------------------------------------------------------------------------- decoder


def doubly_stochastic_penalty(alphas: Tensor, step_mask: Tensor) -> Tensor:
    """Eq. 14's regulariser sum_i (1 - sum_t alpha_ti)^2, mean over the batch; steps past
    the caption's end (``step_mask`` False) do not count."""
    total = (alphas * step_mask.unsqueeze(-1).to(alphas.dtype)).sum(1)  # (B, L)
    return ((1.0 - total) ** 2).sum(-1).mean()


def hard_attention_surrogate(nll: Tensor, log_alpha_sampled: Tensor, step_mask: Tensor, baseline: Tensor,
                             alphas: Tensor, lambda_r: float, lambda_e: float) -> Tensor:
    """Surrogate loss whose gradient is the paper's hard-attention learning rule (eq. 12):

        lambda_r (NLL(y|s) - b) d/dW log p(s|a)  -  lambda_e d/dW H[s]

    (the d/dW NLL term comes from the caption loss itself). ``nll`` (B,) per caption,
    ``log_alpha_sampled`` (B, T) log alpha_t[s_t], ``baseline`` the moving average b.
    """
    advantage = (nll - baseline).detach()
    score = (log_alpha_sampled * step_mask.to(log_alpha_sampled.dtype)).sum(1)
    entropy = -(alphas * torch.log(alphas.clamp_min(1e-12))).sum(-1)  # (B, T)
    entropy = (entropy * step_mask.to(entropy.dtype)).sum(1)
    return (lambda_r * advantage * score - lambda_e * entropy).mean()


class ShowAttendTell(CaptionModule):
    def __init__(self, cfg, vocab: Vocab, feat_dim: int | None = None) -> None:
        super().__init__(vocab, lr=cfg.lr, beam_size=cfg.beam_size, max_len=cfg.max_len,
                         meteor=cfg.meteor, spice=False, torch_threads=cfg.torch_threads)
        self.cfg = cfg
        if cfg.encoder == "vgg19":
            self.encoder = VGGConv54(pretrained=cfg.pretrained)
        else:
            self.encoder = SmallCNN(cfg.feat_dim, cfg.cnn_width)
        d, n, m, v = self.encoder.out_dim, cfg.hidden, cfg.embed, len(vocab)
        self.attention_kind = cfg.attention
        self.embed = nn.Embedding(v, m, padding_idx=PAD)
        self.init_h, self.init_c = nn.Linear(d, n), nn.Linear(d, n)
        # the no-attention control keeps no f_att (it would receive no gradient); it is still
        # constructed, so that every arm draws the same initial weights for the other layers
        att = AdditiveAttention(d, n, cfg.att_hidden)
        self.att = att if cfg.attention != "mean" else None
        self.f_beta = nn.Linear(n, 1)
        self.lstm = nn.LSTMCell(m + d, n)
        self.L_h, self.L_z = nn.Linear(n, m), nn.Linear(d, m, bias=False)
        self.L_o = nn.Linear(m, v)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("baseline", torch.zeros(()))  # hard attention's moving average b
        self._sampling = False

    # -- CaptionModule interface
    def encode(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        a = self.encoder(batch["image"])
        return {"a": a, "proj": self.att.project(a) if self.att is not None else a}

    def init_state(self, enc: dict[str, Tensor]) -> dict[str, Tensor]:
        mean = enc["a"].mean(1)
        return {"h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}

    def context(self, a: Tensor, proj: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """phi of eq. 6 for this model's kind: (z, alpha, log alpha of the sampled location)."""
        beta = torch.sigmoid(self.f_beta(h))
        if self.attention_kind == "mean":
            return beta * a.mean(1), None, None
        z, alpha = self.att(a, proj, h)
        if self.attention_kind == "hard" and self._sampling:
            s = torch.multinomial(alpha, 1)  # s_t ~ Multinoulli(alpha_t)
            z = a.gather(1, s.unsqueeze(-1).expand(-1, -1, a.shape[-1])).squeeze(1)
            return beta * z, alpha, torch.log(alpha.gather(1, s).squeeze(1).clamp_min(1e-12))
        return beta * z, alpha, None

    def step(self, word: Tensor, state: dict[str, Tensor], enc: dict[str, Tensor]):
        e = self.embed(word)
        z, alpha, logs = self.context(enc["a"], enc["proj"], state["h"])
        h, c = self.lstm(torch.cat([e, z], -1), (state["h"], state["c"]))
        logits = self.L_o(self.drop(torch.tanh(e + self.L_h(self.drop(h)) + self.L_z(z))))
        new = {"h": h, "c": c}
        if logs is not None:
            self._log_sampled.append(logs)
        return logits, new, alpha

    # -- training
    def teacher_forced(self, batch):
        self._log_sampled: list[Tensor] = []
        return super().teacher_forced(batch)

    def training_step(self, batch, batch_idx):
        # hard attention: with probability 0.5 a minibatch uses the expected context
        # instead of a sample (Section 4.1; arctic-captions `semi_sampling_p`)
        self._sampling = self.attention_kind == "hard" and bool(torch.rand(()) >= self.cfg.semi_sampling_p)
        try:
            return super().training_step(batch, batch_idx)
        finally:
            self._sampling = False

    def extra_loss(self, alphas, batch, out):
        if alphas is None:
            return None
        mask = out["targets"] != PAD
        reg = self.cfg.alpha_c * doubly_stochastic_penalty(alphas, mask) if self.cfg.alpha_c > 0 else None
        if self.attention_kind == "hard" and self._log_sampled:
            lo, tg = out["logits"], out["targets"]
            nll = F.cross_entropy(lo.transpose(1, 2), tg, ignore_index=PAD, reduction="none").sum(1)
            sur = hard_attention_surrogate(nll, torch.stack(self._log_sampled, 1), mask, self.baseline, alphas,
                                           self.cfg.lambda_r, self.cfg.lambda_e)
            with torch.no_grad():  # b_k = 0.9 b_{k-1} + 0.1 log p(y | s_k, a)  (as a NLL)
                self.baseline.mul_(0.9).add_(0.1 * nll.mean())
            reg = sur if reg is None else reg + sur
        return reg

    def configure_optimizers(self):
        # Section 5.1: RMSProp for Flickr8k, Adam for Flickr30k and COCO. The official rmsprop is
        # Graves' centred variant (running averages with decay 0.95, momentum 0.9, step 1e-4);
        # torch adds its epsilon outside the square root where the official code adds 1e-4 inside.
        params = [p for p in self.parameters() if p.requires_grad]
        if self.cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr, alpha=0.95, eps=1e-4, momentum=0.9, centered=True)
        if self.cfg.optimizer != "adam":
            raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {self.cfg.optimizer!r}")
        return torch.optim.Adam(params, lr=self.lr)

    # -- the cpu analogue's attention analysis (synthetic scenes carry object boxes)
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._mass: list[float] = []
        self._area: list[float] = []
        self._examples: list[dict] = []

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        if "boxes" in batch and self.attention_kind != "mean":
            self.attention_mass(batch)

    @staticmethod
    def cell_overlap(boxes: Tensor, grid: int, size: float) -> Tensor:
        """Fraction of each of the grid x grid cells (row-major) covered by each box:
        (B, K, 4) pixel boxes -> (B, K, grid*grid)."""
        edges = torch.arange(grid + 1, device=boxes.device, dtype=boxes.dtype) * (size / grid)
        lo, hi = edges[:-1], edges[1:]

        def cover(a0, a1):  # (B, K) box extents -> (B, K, grid) overlap length per cell
            return (torch.minimum(a1.unsqueeze(-1), hi) - torch.maximum(a0.unsqueeze(-1), lo)).clamp_min(0)

        ox = cover(boxes[..., 0], boxes[..., 2])
        oy = cover(boxes[..., 1], boxes[..., 3])
        return (oy.unsqueeze(-1) * ox.unsqueeze(-2)).flatten(-2) / (size / grid) ** 2

    @torch.no_grad()
    def attention_mass(self, batch) -> None:
        """For every reference word that names an object (its shape noun), the attention
        mass alpha_t puts inside that object's box (a cell's mass spread evenly over its
        pixels), and the box's share of the image area."""
        out = self.teacher_forced(batch)
        alphas, targets = out["alphas"], out["targets"]  # (B, T, L), (B, T)
        size = float(batch["image"].shape[-1])
        grid = int(round(alphas.shape[-1] ** 0.5))
        boxes = batch["boxes"].clamp(0, size)
        frac = self.cell_overlap(boxes, grid, size)  # (B, K, L)
        area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]) / size**2  # (B, K)
        match = targets.unsqueeze(-1) == batch["nouns"].unsqueeze(1)  # (B, T, K)
        b_idx, t_idx, k_idx = match.nonzero(as_tuple=True)
        mass = (alphas[b_idx, t_idx] * frac[b_idx, k_idx]).sum(-1)
        self._mass.extend(mass.tolist())
        self._area.extend(area[b_idx, k_idx].tolist())
        if len(self._examples) < 4:
            for i in range(min(4 - len(self._examples), len(batch["refs"]))):
                self._examples.append({"image": batch["image"][i].cpu(), "alphas": alphas[i].cpu(),
                                       "words": [self.vocab.itos[int(w)] for w in targets[i]], "grid": grid})

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self._mass:
            m, a = sum(self._mass) / len(self._mass), sum(self._area) / len(self._area)
            self.log("test/attn_mass_in_box", m)
            self.log("test/attn_box_area_fraction", a)
            self.log("test/attn_mass_over_area", m / a)
        if self._examples and getattr(self.cfg, "attention_figure", False):
            self.write_attention_figure()

    def write_attention_figure(self) -> None:
        """The paper's Figure 2/3 style: the image, then its attention map over every
        word of the (teacher-forced) first reference caption, into run_dir/figures."""
        from pathlib import Path

        root = Path(self.trainer.default_root_dir)
        if root.parent.name != "units":
            return
        out = root.parent.parent / "figures"
        out.mkdir(parents=True, exist_ok=True)
        plot_attention(self._examples, out / f"attention_{root.name}_{self.attention_kind}.png")


def plot_attention(examples: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    cols = max(len([w for w in ex["words"] if w not in ("<pad>",)]) for ex in examples) + 1
    fig, axes = plt.subplots(len(examples), cols, figsize=(1.4 * cols, 1.5 * len(examples)), squeeze=False)
    for r, ex in enumerate(examples):
        img = (ex["image"] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
        size = img.shape[0]
        for ax in axes[r]:
            ax.axis("off")
        axes[r][0].imshow(img)
        for t, w in enumerate(ex["words"]):
            if w == "<pad>":
                break
            amap = ex["alphas"][t].view(1, 1, ex["grid"], ex["grid"])
            up = torch.nn.functional.interpolate(amap, size=(size, size), mode="nearest")[0, 0].numpy()
            ax = axes[r][t + 1]
            ax.imshow(img)
            ax.imshow(up, cmap="gray", alpha=0.6, vmin=0, vmax=float(up.max()) or 1.0)
            ax.set_title(w, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
