"""Cutie (Cheng et al., "Putting the Object Back into Video Object Segmentation", CVPR 2024).

What the paper adds over XMem-style pixel memory (Section 3; shapes from the official
configs, ``cutie/config/model/{base,small}.yaml``):

* **Pixel memory** (Sec. 3.1, inherited from XMem): keys/values of past frames; a query
  frame reads them with the anisotropic L2 similarity (shrinkage ``s``, selection ``e``)
  and a top-k softmax -> pixel readout ``R0``. :func:`memory_similarity`,
  :func:`topk_softmax`, :func:`memory_readout`.
* **Sensory memory** (Sec. 3.1): a per-object hidden state updated by a GRU from the
  decoder every frame and from the mask encoder on memory frames ("deep update").
* **Object memory** ``S`` (Sec. 3.3): per memory frame, ``N`` object summaries by masked
  weighted pooling of the mask-encoded values; the first N/2 pool only foreground, the
  last N/2 only background; accumulated over time as (sum, area) and normalised at
  read time. :class:`ObjectSummarizer`.
* **Query-based object transformer** (Sec. 3.2, Fig. 3): ``L`` blocks; object queries
  ``X`` (initialised from learned queries + the object memory) read the pixel feature
  by **foreground-background masked cross-attention** (first N/2 queries attend only
  to pixels predicted foreground by the previous block's auxiliary mask, the last N/2
  only to background; :func:`fg_bg_attention_mask`), then self-attention and FFN; the
  pixels read the queries back (unmasked cross-attention) and pass a conv FFN.
  :class:`ObjectTransformer`.
* The pixel decoder upsamples the object readout with skip connections from the query
  encoder (:class:`MaskDecoder`); objects are merged by soft aggregation.

Removing the object transformer (``num_blocks=0``) gives the paper's pixel-only
ablation: the decoder then reads the fused pixel readout directly.

Attention uses the suite's ``repro.blocks.attention.MultiHeadAttention`` (SDPA; the
naive kernel is the equivalence reference). Backbones: ImageNet ResNets as the official code
(``pretrained=True``, the full profile; downloaded once) or random init (cpu/smoke analogues).

Training (official ``train_wrapper.py``, ``losses.py``, ``trainer.py``, ``train_config.yaml``):
:meth:`CutieNet.forward_clip` (first-frame ground truth, own predictions afterwards, random memory
frames, deep update with probability 0.2, the sensory auxiliary head) and
:func:`point_clip_losses` (CE + soft Dice on importance-sampled points for the output and every
auxiliary prediction); :class:`CutieModule` sets the optimiser groups and lr schedule.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from repro.blocks.attention import MultiHeadAttention, naive_attention, sdpa_attention

# --------------------------------------------------------------------------- helpers


def gconv(layer: nn.Module, g: Tensor) -> Tensor:
    """Apply a 2D layer to a grouped tensor ``(B, N, C, H, W)`` (one group per object)."""
    b, n = g.shape[:2]
    out = layer(g.flatten(0, 1))
    return out.view(b, n, *out.shape[1:])


def resize_groups(g: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    b, n = g.shape[:2]
    kw = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(g.flatten(0, 1), size=size, mode=mode, **kw)
    return out.view(b, n, *out.shape[1:])


def soft_aggregate(prob: Tensor, dim: int = 1) -> Tensor:
    """Merge per-object probabilities into logits over (background, objects...):
    background = prod(1 - p_i); logit = log(p / (1 - p)) (XMem/Cutie soft aggregation)."""
    bg = torch.prod(1 - prob, dim=dim, keepdim=True)
    new = torch.cat([bg, prob], dim).clamp(1e-7, 1 - 1e-7)
    return torch.log(new / (1 - new))


def gru_update(h: Tensor, values: Tensor) -> Tensor:
    """Sensory-memory GRU: values = [forget, update, candidate] gates along dim 2."""
    d = values.shape[2] // 3
    forget = torch.sigmoid(values[:, :, :d])
    update = torch.sigmoid(values[:, :, d:2 * d])
    cand = torch.tanh(values[:, :, 2 * d:])
    return forget * h * (1 - update) + update * cand


def sine_pe_2d(h: int, w: int, dim: int, *, scale: float = 32.0, temperature: float = 128.0,
               device=None, dtype=torch.float32) -> Tensor:
    """2D sinusoidal position encoding ``(h*w, dim)``: coordinates normalised to
    [0, scale] (official pixel_pe_scale 32, pixel_pe_temperature 128), interleaved
    sin/cos per frequency, the x encoding in the first half of the channels and the y
    encoding in the second (the official PositionalEncoding's layout)."""
    half = int(math.ceil(dim / 4) * 2)
    inv = 1.0 / (temperature ** (torch.arange(0, half, 2, device=device, dtype=dtype) / half))
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    ys = ys / (ys[-1] + 1e-6) * scale
    xs = xs / (xs[-1] + 1e-6) * scale
    ey = torch.stack([(ys[:, None] * inv).sin(), (ys[:, None] * inv).cos()], -1).flatten(1)  # h, half
    ex = torch.stack([(xs[:, None] * inv).sin(), (xs[:, None] * inv).cos()], -1).flatten(1)  # w, half
    pe = torch.cat([ex[None, :, :].expand(h, w, half), ey[:, None, :].expand(h, w, half)], -1)
    return pe[..., :dim].reshape(h * w, dim)


class ResBlock(nn.Module):
    """Pre-activation residual block on grouped features (Cutie's GroupResBlock)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + self.skip(x)


class CAResBlock(nn.Module):
    """Residual block with efficient channel attention (the pixel FFN of the object
    transformer and the fusion blocks)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        t = int((abs(math.log2(cout)) + 1) // 2)
        k = t if t % 2 else t + 1
        self.eca = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.conv1(F.relu(x))))
        b, c = y.shape[:2]
        wgt = self.eca(y.mean((2, 3)).view(b, 1, c)).view(b, c, 1, 1).sigmoid()
        return y * wgt + self.skip(x)


class FusionBlock(nn.Module):
    """Fuse an image feature ``x (B,Cx,H,W)`` into every object's feature ``g (B,N,Cg,H,W)``:
    1x1 projections of both, added, then two channel-attention residual blocks (the
    official GroupFeatureFusionBlock's structure)."""

    def __init__(self, x_dim: int, g_dim: int, out_dim: int) -> None:
        super().__init__()
        self.x_proj = nn.Conv2d(x_dim, out_dim, 1)
        self.g_proj = nn.Conv2d(g_dim, out_dim, 1)
        self.block1 = CAResBlock(out_dim, out_dim)
        self.block2 = CAResBlock(out_dim, out_dim)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        g = gconv(self.g_proj, g) + self.x_proj(x).unsqueeze(1)
        return gconv(self.block2, gconv(self.block1, g))


# --------------------------------------------------------------------------- encoders


class TinyEncoder(nn.Module):
    """Three stride-2 conv stages (random init): features at strides 8, 4, 2 with
    widths 4w, 2w, w. The CPU analogue's stand-in for the truncated ResNet."""

    def __init__(self, in_ch: int, width: int) -> None:
        super().__init__()
        w = width
        self.s2 = nn.Sequential(nn.Conv2d(in_ch, w, 3, 2, 1), nn.ReLU(), nn.Conv2d(w, w, 3, 1, 1), nn.ReLU())
        self.s4 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.ReLU())
        self.s8 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.ReLU(), nn.Conv2d(4 * w, 4 * w, 3, 1, 1))
        self.dims = (4 * w, 2 * w, w)
        self.fine_stride = 2

    def forward(self, x: Tensor) -> list[Tensor]:
        f2 = self.s2(x)
        f4 = self.s4(f2)
        return [self.s8(f4), f4, f2]


class ResNetEncoder(nn.Module):
    """torchvision ResNet truncated after layer3 (strides 16, 8, 4), random init or the official
    ImageNet weights (``pretrained``), BN statistics frozen as in the official code."""

    def __init__(self, arch: str, in_ch: int = 3, pretrained: bool = False) -> None:
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if in_ch != 3:
            net.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
        if pretrained:
            load_imagenet(net, arch)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        exp = 4 if arch == "resnet50" else 1
        self.dims = (256 * exp, 128 * exp, 64 * exp)
        self.fine_stride = 4

    def forward(self, x: Tensor) -> list[Tensor]:
        f4 = self.layer1(self.stem(x))
        f8 = self.layer2(f4)
        return [self.layer3(f8), f8, f4]

    def train(self, mode: bool = True):  # frozen BN statistics
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


# The ImageNet weights the official code starts from (cutie/model/utils/resnet.py, model_urls).
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-5c106cde.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-19c8e357.pth",
}


def load_imagenet(net: nn.Module, arch: str, source_state: dict | None = None) -> None:
    """Initialise a torchvision ResNet from the official ImageNet checkpoint (downloaded once
    into the torch hub cache, needs the network the first time). As the official
    ``load_weights_add_extra_dim``: a first conv with more input channels (the mask encoder:
    image + 2 mask channels) keeps the ImageNet filters on the RGB channels and gets
    orthogonally initialised filters on the extra ones; the fc head is not loaded."""
    if source_state is None:
        source_state = torch.hub.load_state_dict_from_url(IMAGENET_URLS[arch], map_location="cpu", progress=False)
    new = {}
    for name, v in net.state_dict().items():
        if "num_batches_tracked" in name or name not in source_state:
            new[name] = v
            continue
        src = source_state[name]
        if src.shape != v.shape:  # extra input channels of conv1
            pads = torch.zeros(v.shape[0], v.shape[1] - src.shape[1], *v.shape[2:])
            nn.init.orthogonal_(pads)
            src = torch.cat([src, pads], 1)
        new[name] = src
    net.load_state_dict(new)


def make_encoder(kind: str, in_ch: int, width: int, pretrained: bool = False) -> nn.Module:
    if kind == "tiny":
        if pretrained:
            raise ValueError("the tiny encoder has no ImageNet weights")
        return TinyEncoder(in_ch, width)
    if kind in ("resnet18", "resnet50"):
        return ResNetEncoder(kind, in_ch, pretrained)
    raise ValueError(f"unknown encoder {kind!r}")


class KeyProjection(nn.Module):
    """Key, shrinkage s = d^2 + 1 and selection e = sigmoid(.) (XMem Sec. 3.2)."""

    def __init__(self, in_dim: int, mid_dim: int, key_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, mid_dim, 1)
        self.key = nn.Conv2d(mid_dim, key_dim, 3, padding=1)
        self.d = nn.Conv2d(mid_dim, 1, 3, padding=1)
        self.e = nn.Conv2d(mid_dim, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key.weight)
        nn.init.zeros_(self.key.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.proj(x)
        return self.key(x), self.d(x) ** 2 + 1, torch.sigmoid(self.e(x))


# --------------------------------------------------------------------------- pixel memory


def memory_similarity(mk: Tensor, ms: Tensor, qk: Tensor, qe: Tensor) -> Tensor:
    """Anisotropic L2 similarity (fast, expanded form).

    mk ``(B, CK, M)`` memory keys, ms ``(B, 1, M)`` shrinkage, qk/qe ``(B, CK, P)`` query
    keys/selection. Returns ``(B, M, P)``:
    ``-sum_c e_c (k_mc - q_c)^2 * s_m / sqrt(CK)`` = ``(-e.k^2 + 2 k.(e q) - e.q^2) s / sqrt(CK)``.
    """
    ck = mk.shape[1]
    mkt = mk.transpose(1, 2)  # B, M, CK
    a_sq = mkt.pow(2) @ qe
    two_ab = mkt @ (qk * qe)
    b_sq = (qe * qk.pow(2)).sum(1, keepdim=True)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (mk, ms, qk, qe)):
        return (-a_sq + 2 * two_ab - b_sq) * ms.transpose(1, 2) / math.sqrt(ck)
    # inference: the same arithmetic in place on the (M, P) buffers (no autograd to feed)
    return two_ab.mul_(2).sub_(a_sq).sub_(b_sq).mul_(ms.transpose(1, 2)).div_(math.sqrt(ck))


def memory_similarity_naive(mk: Tensor, ms: Tensor, qk: Tensor, qe: Tensor) -> Tensor:
    """Reference: the same similarity by broadcasting the difference (O(M P CK) memory)."""
    diff = mk[:, :, :, None] - qk[:, :, None, :]  # B, CK, M, P
    d = (qe[:, :, None, :] * diff.pow(2)).sum(1)
    return -d * ms.transpose(1, 2) / math.sqrt(mk.shape[1])


def topk_softmax(sim: Tensor, top_k: int | None) -> Tensor:
    """Softmax over the memory dim (1) keeping only each query pixel's top-k entries."""
    if top_k is None or top_k >= sim.shape[1]:
        return torch.softmax(sim, dim=1)
    vals, idx = torch.topk(sim, k=top_k, dim=1)
    w = torch.softmax(vals, dim=1)
    if torch.is_grad_enabled() and sim.requires_grad:
        return torch.zeros_like(sim).scatter(1, idx, w)
    return sim.zero_().scatter_(1, idx, w)  # inference: reuse the similarity buffer


def topk_softmax_naive(sim: Tensor, top_k: int | None) -> Tensor:
    """Reference: a dense softmax with everything below the k-th largest set to -inf."""
    if top_k is None or top_k >= sim.shape[1]:
        return torch.softmax(sim, dim=1)
    kth = sim.sort(dim=1, descending=True).values[:, top_k - 1:top_k]
    return torch.softmax(sim.masked_fill(sim < kth, float("-inf")), dim=1)


def memory_readout(affinity: Tensor, values: Tensor) -> Tensor:
    """values ``(B, N, CV, M)``, affinity ``(B, M, P)`` -> ``(B, N, CV, P)``."""
    b, n, cv, m = values.shape
    return torch.bmm(values.reshape(b, n * cv, m), affinity).view(b, n, cv, -1)


# --------------------------------------------------------------------------- object memory


class ObjectSummarizer(nn.Module):
    """Object memory (Sec. 3.3): ``N`` summaries per object and frame by masked weighted
    pooling; first N/2 pool foreground only, last N/2 background only. Returns
    ``(B, N_obj, Q, C+1)``: the weighted sums and, last, the pooled area."""

    def __init__(self, value_dim: int, embed_dim: int, num_summaries: int) -> None:
        super().__init__()
        self.q = num_summaries
        self.input_proj = nn.Linear(value_dim, embed_dim)
        self.feature_pred = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.weights_pred = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(),
                                          nn.Linear(embed_dim, num_summaries))
        self.embed_dim = embed_dim

    def forward(self, masks: Tensor, value: Tensor) -> Tensor:
        # masks: B, N, H0, W0 (probabilities); value: B, N, CV, H, W
        h, w = value.shape[-2:]
        m = F.interpolate(masks, size=(h, w), mode="area").unsqueeze(-1)  # B N H W 1
        half = self.q // 2
        allowed = torch.cat([m.expand(-1, -1, -1, -1, half), (1 - m).expand(-1, -1, -1, -1, self.q - half)], -1)
        v = self.input_proj(value.permute(0, 1, 3, 4, 2))
        v = v + sine_pe_2d(h, w, self.embed_dim, device=v.device, dtype=v.dtype).view(h, w, -1)
        feat = self.feature_pred(v)
        weights = self.weights_pred(v).sigmoid() * allowed  # B N H W Q
        sums = torch.einsum("bnhwq,bnhwc->bnqc", weights, feat)
        area = weights.sum((2, 3)).unsqueeze(-1)
        return torch.cat([sums, area], -1)


# --------------------------------------------------------------------------- object transformer


def fg_bg_attention_mask(aux_logits: Tensor, num_queries: int) -> Tensor:
    """Foreground-background masked attention (Sec. 3.2): from per-object auxiliary
    logits ``(B, N, H, W)`` build the boolean mask ``(B*N, Q, H*W)`` (True = may attend):
    the first Q/2 queries see only the object's foreground pixels (where its aggregated
    probability is the largest among background and all objects), the last Q/2 only the
    rest. A query row with nothing to attend to is unmasked (as the official code does)."""
    logits = soft_aggregate(aux_logits.sigmoid(), dim=1)  # B, N+1, H, W
    fg = logits[:, 1:] >= logits.max(dim=1, keepdim=True).values  # B, N, H, W
    fg = fg.flatten(2).flatten(0, 1)  # B*N, HW
    half = num_queries // 2
    mask = torch.cat([fg[:, None, :].expand(-1, half, -1), (~fg)[:, None, :].expand(-1, num_queries - half, -1)], 1)
    empty = ~mask.any(-1, keepdim=True)
    return mask | empty


class ObjectTransformerBlock(nn.Module):
    """One block of Fig. 3: masked query->pixel cross-attention, query self-attention,
    query FFN, pixel->query cross-attention, pixel FFN. Position embeddings are added to
    queries and keys, not to values (official ``add_pe_to_qkv = [True, True, False]``)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, attn=sdpa_attention) -> None:
        super().__init__()
        self.norm_read = nn.LayerNorm(dim)
        self.read_from_pixel = MultiHeadAttention(dim, heads, attn=attn)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, attn=attn)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, dim))
        self.read_from_query = MultiHeadAttention(dim, heads, attn=attn)
        self.pixel_ffn = CAResBlock(dim, dim)

    def forward(self, x: Tensor, pixel: Tensor, x_pe: Tensor, pixel_pe: Tensor, mask: Tensor,
                need_weights: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        # x: (BN, Q, C); pixel: (B, N, C, H, W); pixel_pe: (BN, HW, C); mask: (BN, Q, HW)
        b, n, c, h, w = pixel.shape
        flat = pixel.flatten(3).flatten(0, 1).transpose(1, 2)  # BN, HW, C
        xn = self.norm_read(x)
        q_in, k_in = xn + x_pe, flat + pixel_pe
        out = _cross(self.read_from_pixel, q_in, k_in, flat, mask, need_weights)
        weights = None
        if need_weights:
            out, weights = out
        x = xn + out
        xn = self.norm_self(x)
        x = xn + _cross(self.self_attn, xn + x_pe, xn + x_pe, xn, None, False)
        x = x + self.ffn(self.norm_ffn(x))
        flat = flat + _cross(self.read_from_query, flat + pixel_pe, x + x_pe, x, None, False)
        pixel = self.pixel_ffn(flat.transpose(1, 2).reshape(b * n, c, h, w)).view(b, n, c, h, w)
        return x, pixel, weights


def _linear2d(lin: nn.Linear, x: Tensor) -> Tensor:
    """``lin`` on the last dim through a 2D input: the same numbers, but the bias add is fused
    into the matrix product (addmm), which a 3D input does not get on CPU."""
    return lin(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], -1)


def _cross(mha: MultiHeadAttention, q_in: Tensor, k_in: Tensor, v_in: Tensor, mask: Tensor | None,
           need_weights: bool):
    """Attention with separate query/key/value inputs through the shared MHA's
    projections and kernel (its forward takes one context for both keys and values)."""
    q = mha.split(_linear2d(mha.q_proj, q_in))
    k = mha.split(_linear2d(mha.k_proj, k_in))
    v = mha.split(_linear2d(mha.v_proj, v_in))
    m = mask[:, None] if mask is not None else None
    if need_weights:
        from repro.blocks.attention import softmax_weights

        wts = softmax_weights(q, k, m)
        out = wts @ v
    else:
        out = mha.attn(q, k, v, m)
    b, hh, L, d = out.shape
    out = _linear2d(mha.out_proj, out.transpose(1, 2).reshape(b, L, hh * d))
    return (out, wts) if need_weights else out


class ObjectTransformer(nn.Module):
    """The query-based object transformer (Sec. 3.2): queries = learned init + projected
    object memory; pixel embedding = 2D sine PE + projection of the pixel readout; an
    auxiliary mask head before the first block and after every block provides the
    foreground-background attention mask of the next block (and an auxiliary loss)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, num_queries: int, num_blocks: int,
                 attn=sdpa_attention) -> None:
        super().__init__()
        self.dim, self.q = dim, num_queries
        self.query_init = nn.Embedding(num_queries, dim)
        self.query_emb = nn.Embedding(num_queries, dim)
        self.summary_to_init = nn.Linear(dim, dim)
        self.summary_to_emb = nn.Linear(dim, dim)
        self.pixel_init_proj = nn.Conv2d(dim, dim, 1)
        self.pixel_emb_proj = nn.Conv2d(dim, dim, 1)
        self.blocks = nn.ModuleList(ObjectTransformerBlock(dim, heads, ff_dim, attn) for _ in range(num_blocks))
        self.mask_pred = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(dim, 1, 1)) for _ in range(num_blocks + 1))

    def forward(self, pixel: Tensor, obj_memory: Tensor, need_weights: bool = False) -> tuple[Tensor, dict]:
        # pixel: B, N, C, H, W; obj_memory: B, N, Q, C+1 (sums and area accumulated over time)
        b, n, c, h, w = pixel.shape
        values = obj_memory[..., :-1] / (obj_memory[..., -1:] + 1e-4)
        values = values.flatten(0, 1)  # BN, Q, C
        x = self.query_init.weight[None] + self.summary_to_init(values)
        x_pe = self.query_emb.weight[None] + self.summary_to_emb(values)
        pe = sine_pe_2d(h, w, c, device=pixel.device, dtype=pixel.dtype)
        pixel_pe = pe[None] + gconv(self.pixel_emb_proj, pixel).flatten(3).flatten(0, 1).transpose(1, 2)
        pixel = gconv(self.pixel_init_proj, pixel)
        aux = [gconv(self.mask_pred[0], pixel).squeeze(2)]
        masks, weights = [], None
        for i, block in enumerate(self.blocks):
            mask = fg_bg_attention_mask(aux[-1], self.q)
            masks.append(mask)
            x, pixel, weights = block(x, pixel, x_pe, pixel_pe, mask, need_weights)
            aux.append(gconv(self.mask_pred[i + 1], pixel).squeeze(2))
        return pixel, {"aux_logits": aux, "attn_masks": masks, "q_weights": weights}


# --------------------------------------------------------------------------- decoder


class MaskDecoder(nn.Module):
    """Pixel decoder: coarse readout -> mid -> fine with skip connections from the query
    encoder, a 3x3 prediction conv, and the sensory GRU fed by all three scales."""

    def __init__(self, ms_dims: tuple[int, int, int], up_dims: tuple[int, int, int], sensory_dim: int) -> None:
        super().__init__()
        self.skip_mid = nn.Conv2d(ms_dims[1], up_dims[0], 1)
        self.skip_fine = nn.Conv2d(ms_dims[2], up_dims[1], 1)
        self.up1 = ResBlock(up_dims[0], up_dims[1])
        self.up2 = ResBlock(up_dims[1], up_dims[2])
        self.pred = nn.Conv2d(up_dims[2], 1, 3, padding=1)
        self.s_coarse = nn.Conv2d(up_dims[0], sensory_dim, 1)
        self.s_mid = nn.Conv2d(up_dims[1], sensory_dim, 1)
        self.s_fine = nn.Conv2d(up_dims[2] + 1, sensory_dim, 1)
        self.s_gru = nn.Conv2d(2 * sensory_dim, 3 * sensory_dim, 3, padding=1)
        nn.init.xavier_normal_(self.s_gru.weight)

    def forward(self, ms: list[Tensor], readout: Tensor, sensory: Tensor, update_sensory: bool = True):
        f_mid, f_fine = self.skip_mid(ms[1]), self.skip_fine(ms[2])
        p_c = readout
        p_m = resize_groups(p_c, f_mid.shape[-2:]) + f_mid.unsqueeze(1)
        p_m = gconv(self.up1, p_m)
        p_f = resize_groups(p_m, f_fine.shape[-2:]) + f_fine.unsqueeze(1)
        p_f = gconv(self.up2, p_f)
        logits = gconv(self.pred, F.relu(p_f)).squeeze(2)  # B, N, Hf, Wf
        if update_sensory:
            size = sensory.shape[-2:]
            g = gconv(self.s_coarse, p_c) + gconv(self.s_mid, resize_groups(p_m, size, "area")) + \
                gconv(self.s_fine, resize_groups(torch.cat([p_f, logits.unsqueeze(2)], 2), size, "area"))
            sensory = gru_update(sensory, gconv(self.s_gru, torch.cat([g, sensory], 2)))
        return sensory, logits


# --------------------------------------------------------------------------- the network


class CutieNet(nn.Module):
    """The Cutie network. ``num_blocks=0`` removes the object transformer and the object
    memory (the pixel-only ablation). ``attn`` selects the attention kernel."""

    def __init__(self, *, encoder: str = "resnet18", width: int = 16, pixel_dim: int = 256, key_dim: int = 64,
                 value_dim: int = 256, sensory_dim: int = 256, embed_dim: int = 256, num_queries: int = 16,
                 num_blocks: int = 3, num_heads: int = 8, ff_dim: int = 2048,
                 up_dims: tuple[int, int, int] = (256, 128, 128), attention: str = "sdpa",
                 sensory_aux: bool = False, pretrained: bool = False) -> None:
        super().__init__()
        if up_dims[0] != embed_dim:
            raise ValueError("up_dims[0] must equal embed_dim (the decoder reads the object readout)")
        attn = {"sdpa": sdpa_attention, "naive": naive_attention}[attention]
        self.pixel_encoder = make_encoder(encoder, 3, width, pretrained)
        ms_dims = self.pixel_encoder.dims
        self.fine_stride = self.pixel_encoder.fine_stride
        self.pix_feat_proj = nn.Conv2d(ms_dims[0], pixel_dim, 1)
        self.key_proj = KeyProjection(ms_dims[0], pixel_dim, key_dim)
        # mask encoder: image + this object's mask + all other objects' masks
        self.mask_encoder = make_encoder("resnet18" if encoder != "tiny" else "tiny", 5, width, pretrained)
        self.mask_fuser = FusionBlock(pixel_dim, self.mask_encoder.dims[0], value_dim)
        self.sensory_deep = nn.Conv2d(value_dim + sensory_dim, 3 * sensory_dim, 3, padding=1)
        nn.init.xavier_normal_(self.sensory_deep.weight)
        self.sensory_compress = nn.Conv2d(sensory_dim + 2, value_dim, 1)
        self.pixel_fuser = FusionBlock(pixel_dim, value_dim, embed_dim)
        self.num_blocks, self.num_queries, self.sensory_dim = num_blocks, num_queries, sensory_dim
        if num_blocks > 0:
            self.object_summarizer = ObjectSummarizer(value_dim, embed_dim, num_queries)
            self.object_transformer = ObjectTransformer(embed_dim, num_heads, ff_dim, num_queries, num_blocks, attn)
        self.mask_decoder = MaskDecoder(ms_dims, up_dims, sensory_dim)
        if sensory_aux:
            # training-only auxiliary head on the sensory memory (official aux_modules.LinearPredictor, weight
            # 0.01 in config/model/base.yaml aux_loss.sensory): a 1x1 conv to pixel_dim + 1 channels whose dot
            # product with the pixel feature (+ the last channel as bias) gives each object's logits
            self.sensory_aux = nn.Conv2d(sensory_dim, pixel_dim + 1, 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @property
    def uses_objects(self) -> bool:
        return self.num_blocks > 0

    # ---- per-frame pieces
    def encode_image(self, image: Tensor):
        """image (B, 3, H, W) in [0, 1] -> multi-scale features, pixel feature, key, shrinkage, selection."""
        ms = self.pixel_encoder((image - self.mean) / self.std)
        key, shrink, sel = self.key_proj(ms[0])
        return ms, self.pix_feat_proj(ms[0]), key, shrink, sel

    def encode_mask(self, image: Tensor, pix_feat: Tensor, sensory: Tensor, masks: Tensor,
                    deep_update: bool = True):
        """masks (B, N, H, W) probabilities -> value (B, N, CV, h, w), new sensory, object summaries."""
        b, n = masks.shape[:2]
        others = (masks.sum(1, keepdim=True) - masks).clamp(0, 1)
        img = ((image - self.mean) / self.std).unsqueeze(1).expand(-1, n, -1, -1, -1)
        g = torch.cat([img, masks.unsqueeze(2), others.unsqueeze(2)], 2).flatten(0, 1)
        g = self.mask_encoder(g)[0]
        g = g.view(b, n, *g.shape[1:])
        value = self.mask_fuser(pix_feat, g)
        if deep_update:
            sensory = gru_update(sensory, gconv(self.sensory_deep, torch.cat([value, sensory], 2)))
        summaries = self.object_summarizer(masks, value) if self.uses_objects else None
        return value, sensory, summaries

    def read_pixel_memory(self, qk, qe, mem_keys, mem_shrink, mem_values, top_k: int | None) -> Tensor:
        """qk/qe (B, CK, h, w); mem_keys (B, CK, M); mem_shrink (B, 1, M); mem_values (B, N, CV, M)."""
        b, _, h, w = qk.shape
        sim = memory_similarity(mem_keys, mem_shrink, qk.flatten(2), qe.flatten(2))
        aff = topk_softmax(sim, top_k)
        return memory_readout(aff, mem_values).view(b, mem_values.shape[1], -1, h, w)

    def fuse(self, pix_feat: Tensor, readout: Tensor, sensory: Tensor, last_mask: Tensor) -> Tensor:
        """Pixel readout + sensory memory + last mask -> R0 (B, N, C, h, w)."""
        lm = F.interpolate(last_mask, size=sensory.shape[-2:], mode="area")
        others = (lm.sum(1, keepdim=True) - lm).clamp(0, 1)
        s = gconv(self.sensory_compress, torch.cat([sensory, lm.unsqueeze(2), others.unsqueeze(2)], 2))
        return self.pixel_fuser(pix_feat, readout + s)

    def object_readout(self, r0: Tensor, obj_memory: Tensor | None, need_weights: bool = False):
        if not self.uses_objects:
            return r0, {"aux_logits": [], "attn_masks": [], "q_weights": None}
        return self.object_transformer(r0, obj_memory, need_weights)

    def segment(self, ms, readout, sensory, update_sensory: bool = True, out_size=None):
        """-> new sensory, per-object logits (B, N, h_f, w_f), probabilities (B, N+1, H, W) incl. background."""
        sensory, logits = self.mask_decoder(ms, readout, sensory, update_sensory)
        agg = soft_aggregate(torch.sigmoid(logits), dim=1)
        size = out_size or tuple(s * self.fine_stride for s in logits.shape[-2:])
        agg = F.interpolate(agg, size=size, mode="bilinear", align_corners=False)
        return sensory, logits, agg

    def init_sensory(self, b: int, n: int, h: int, w: int, device, dtype=torch.float32) -> Tensor:
        return torch.zeros(b, n, self.sensory_dim, h, w, device=device, dtype=dtype)

    # ---- training: one clip, first-frame ground truth, the model's own predictions after
    def sensory_aux_logits(self, pix_feat: Tensor, sensory: Tensor) -> Tensor:
        """Training-only auxiliary prediction from the sensory memory (official LinearPredictor):
        per-object logits (B, N, h, w) = <pixel feature, W s> + bias channel."""
        x = gconv(self.sensory_aux, sensory)
        return (pix_feat.unsqueeze(1) * x[:, :, :-1]).sum(2) + x[:, :, -1]

    def forward_clip(self, frames: Tensor, first_mask: Tensor, num_ref_frames: int = 3,
                     deep_update_prob: float = 1.0, ref_sampling: str = "recent") -> dict:
        """frames (B, T, 3, H, W); first_mask (B, N, H, W). Returns the aggregated logits
        (B, T-1, N+1, H, W) of frames 1..T-1 and the object transformer's auxiliary logits
        (and, with the sensory auxiliary head, ``sensory_logits``: per frame (B, N, h, w)).

        Memory frames read by frame ``ti``: all earlier frames while ``ti <= num_ref_frames``;
        afterwards ``ref_sampling="random"`` draws ``num_ref_frames`` of them per clip
        (``torch.randperm``, the official train_wrapper.py), ``"recent"`` keeps the first and the
        most recent ``num_ref_frames - 1`` (the cpu analogue's original rule). The deep update of
        the sensory memory by the mask encoder happens with probability ``deep_update_prob``
        (official 0.2, train_config.yaml; 1.0 = always, no random draw)."""
        if ref_sampling not in ("recent", "random"):
            raise ValueError(f"unknown ref_sampling {ref_sampling!r}")
        b, t = frames.shape[:2]
        n = first_mask.shape[1]
        ms_all, pix_all, keys, shrink, sel = self.encode_image(frames.flatten(0, 1))
        h, w = keys.shape[-2:]
        unflat = lambda x: x.view(b, t, *x.shape[1:])  # noqa: E731
        ms_all = [unflat(m) for m in ms_all]
        pix_all, keys, shrink, sel = unflat(pix_all), unflat(keys), unflat(shrink), unflat(sel)
        sensory = self.init_sensory(b, n, h, w, frames.device, frames.dtype)
        value, sensory, summ = self.encode_mask(frames[:, 0], pix_all[:, 0], sensory, first_mask)
        mem = [(0, value, summ)]
        last = first_mask
        outs, aux_all, sens_all = [], [], []
        for ti in range(1, t):
            if ref_sampling == "random" and ti > num_ref_frames:
                ridx = [torch.randperm(ti)[:num_ref_frames] for _ in range(b)]  # per clip, as the official
                idx_b = [[mem[int(i)][0] for i in r] for r in ridx]
                mk = torch.stack([keys[bi, idx_b[bi]].transpose(0, 1).flatten(1) for bi in range(b)], 0)
                msh = torch.stack([shrink[bi, idx_b[bi]].transpose(0, 1).flatten(1) for bi in range(b)], 0)
                mv = torch.stack([torch.stack([mem[int(i)][1][bi] for i in ridx[bi]], 2).flatten(2)
                                  for bi in range(b)], 0)
            else:
                ref = [mem[0]] + mem[1:][-(num_ref_frames - 1):] if num_ref_frames > 1 else [mem[0]]
                idx = [r[0] for r in ref]
                mk = keys[:, idx].transpose(1, 2).flatten(2)  # B, CK, T'hw
                msh = shrink[:, idx].transpose(1, 2).flatten(2)
                mv = torch.stack([r[1] for r in ref], 3).flatten(3)  # B, N, CV, T'hw
            readout = self.read_pixel_memory(keys[:, ti], sel[:, ti], mk, msh, mv, top_k=None)
            if hasattr(self, "sensory_aux"):
                sens_all.append(self.sensory_aux_logits(pix_all[:, ti], sensory))
            r0 = self.fuse(pix_all[:, ti], readout, sensory, last)
            obj_mem = torch.stack([m[2] for m in mem], 0).sum(0) if self.uses_objects else None
            feat, aux = self.object_readout(r0, obj_mem)
            ms_t = [m[:, ti] for m in ms_all]
            sensory, _, agg = self.segment(ms_t, feat, sensory, out_size=frames.shape[-2:])
            outs.append(agg)
            aux_all.append(aux["aux_logits"])
            prob = torch.softmax(agg, dim=1)[:, 1:]
            last = prob
            if ti < t - 1:
                deep = True if deep_update_prob >= 1 else bool(np.random.rand() < deep_update_prob)
                value, sensory, summ = self.encode_mask(frames[:, ti], pix_all[:, ti], sensory, prob,
                                                        deep_update=deep)
                mem.append((ti, value, summ))
        out = {"logits": torch.stack(outs, 1), "aux_logits": aux_all}
        if sens_all:
            out["sensory_logits"] = sens_all
        return out


# --------------------------------------------------------------------------- inference


class MemorySchedule:
    """Which frames enter memory (official eval config for DAVIS/YouTube-VOS/MOSE):
    the first frame is permanent; afterwards every ``mem_every``-th frame is memorised;
    working memory keeps at most ``max_mem_frames`` frames including the permanent one,
    dropping the oldest non-permanent frame first (FIFO)."""

    def __init__(self, mem_every: int = 5, max_mem_frames: int = 5) -> None:
        if mem_every < 1 or max_mem_frames < 1:
            raise ValueError("mem_every and max_mem_frames must be >= 1")
        self.mem_every, self.max_mem_frames = mem_every, max_mem_frames

    def is_mem_frame(self, ti: int, last_mem_ti: int) -> bool:
        return ti - last_mem_ti >= self.mem_every

    def kept(self, mem_frames: list[int]) -> list[int]:
        """The frames kept in working memory, given all memorised frames in order."""
        if len(mem_frames) <= self.max_mem_frames:
            return list(mem_frames)
        return [mem_frames[0]] + mem_frames[len(mem_frames) - (self.max_mem_frames - 1):] \
            if self.max_mem_frames > 1 else [mem_frames[0]]


def argmax_objects(prob: Tensor) -> Tensor:
    """``prob.argmax(0)`` for (N+1, H, W) probabilities (first index on ties, as argmax):
    a running comparison over the few object channels, which on CPU is far cheaper than
    the strided reduction over the leading dim."""
    if prob.shape[0] > 8:
        return prob.argmax(0)
    best, lab = prob[0], torch.zeros(prob.shape[1:], dtype=torch.long, device=prob.device)
    for i in range(1, prob.shape[0]):
        lab.masked_fill_(prob[i] > best, i)
        best = torch.maximum(best, prob[i])
    return lab


class _Bucket:
    """Memory of the objects that first appeared in the same frame (the official memory
    store's "bucket"): its own key memory, its first frame permanent, FIFO eviction of the
    rest (``MemorySchedule.kept``). ``objs`` is the slice of the objects it holds."""

    __slots__ = ("objs", "frames", "store")

    def __init__(self, objs: slice) -> None:
        self.objs, self.frames, self.store = objs, [], {}

    def add(self, ti: int, key: Tensor, shrink: Tensor, value: Tensor, sched: MemorySchedule) -> None:
        self.store[ti] = (key, shrink, value[:, self.objs])
        self.frames.append(ti)
        kept = sched.kept(self.frames)
        for old in [i for i in self.store if i not in kept]:
            del self.store[old]

    def memory(self, sched: MemorySchedule) -> tuple[Tensor, Tensor, Tensor]:
        kept = sched.kept(self.frames)
        if len(kept) == 1:
            return self.store[kept[0]]
        return (torch.cat([self.store[i][0] for i in kept], 2), torch.cat([self.store[i][1] for i in kept], 2),
                torch.cat([self.store[i][2] for i in kept], 3))


@torch.no_grad()
def segment_video(net: CutieNet, frames: Tensor, first_mask: Tensor, *, mem_every: int = 5,
                  max_mem_frames: int = 5, top_k: int | None = 30, probs: list | None = None,
                  later: dict[int, Tensor] | None = None) -> tuple[Tensor, list[int]]:
    """Semi-supervised VOS of one video: frames (T, 3, H, W) in [0, 1], first-frame masks
    (N, H, W) in {0, 1}. Returns per-pixel labels (T, H, W) (0 background, i = object i)
    and the indices of the memorised frames. Sensory memory is updated every frame
    (official stagger_updates=5 >= mem_every=5 means every frame), deep-updated on memory
    frames; object memory accumulates the summaries of all memorised frames. ``probs``: if a
    list, each segmented frame's probabilities (N+1, H, W) (background first) are appended.

    ``later`` (YouTube-VOS, where objects may first appear mid-video): ``{t: masks (K, H, W)}``
    for objects whose first annotation is at frame ``t``; they are numbered after the
    objects known so far. As in the official inference, the given masks override the
    prediction of that frame (other objects' probabilities are zeroed under them), the
    frame is memorised, the new objects start with an empty sensory memory, and their keys
    and values go to a new memory bucket whose first frame is permanent. Each bucket is read
    and fused separately (the "other objects" mask of the pixel fusion counts only the
    bucket's objects), as the official memory manager does."""
    sched = MemorySchedule(mem_every, max_mem_frames)
    dev = next(net.parameters()).device  # inputs follow the network (a GPU run reads CPU frames)
    frames, first_mask = frames.to(dev), first_mask.to(dev)
    later = {t: m.to(dev) for t, m in (later or {}).items()}
    # pad to a multiple of the coarsest stride, centred (the official pad_divide_by), crop at the end
    d = net.fine_stride * 4
    h0, w0 = frames.shape[-2:]
    ph, pw = (d - h0 % d) % d, (d - w0 % d) % d
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        frames, first_mask = F.pad(frames, pad), F.pad(first_mask, pad)
        later = {t: F.pad(m, pad) for t, m in later.items()}
    crop = (slice(pad[2], pad[2] + h0), slice(pad[0], pad[0] + w0))
    t_len = frames.shape[0]
    n = first_mask.shape[0]
    ms, pix, key, shrink, sel = net.encode_image(frames[:1])
    sensory = net.init_sensory(1, n, *key.shape[-2:], frames.device, frames.dtype)
    masks = first_mask[None].float()
    value, sensory, summ = net.encode_mask(frames[:1], pix, sensory, masks)
    buckets = [_Bucket(slice(0, n))]
    buckets[0].add(0, key.flatten(2), shrink.flatten(2), value.flatten(3), sched)
    obj_mem = summ
    mem_frames, last_mem = [0], 0
    labels = [torch.where(masks[0].amax(0) > 0.5, masks[0].argmax(0) + 1, torch.zeros_like(masks[0, 0])).long()]
    last = masks
    for ti in range(1, t_len):
        ms, pix, key, shrink, sel = net.encode_image(frames[ti:ti + 1])
        if len(buckets) == 1:
            readout = net.read_pixel_memory(key, sel, *buckets[0].memory(sched), top_k)
            feat, _ = net.object_readout(net.fuse(pix, readout, sensory, last), obj_mem)
        else:  # per bucket, as the official reader does (its fusion's "other objects" are the bucket's)
            feats = []
            for b in buckets:
                readout = net.read_pixel_memory(key, sel, *b.memory(sched), top_k)
                r0 = net.fuse(pix, readout, sensory[:, b.objs], last[:, b.objs])
                feats.append(net.object_readout(r0, obj_mem[:, b.objs] if obj_mem is not None else None)[0])
            feat = torch.cat(feats, 1)
        # the last frame's sensory update would never be read (the official core skips it too)
        sensory, _, agg = net.segment(ms, feat, sensory, update_sensory=ti < t_len - 1, out_size=frames.shape[-2:])
        prob = torch.softmax(agg, dim=1)
        new = later.get(ti)
        if new is not None and new.shape[0] > 0:  # objects first annotated here join
            known = prob[:, 1:].clone()
            known[:, :, new.amax(0) > 0.5] = 0
            prob = torch.softmax(soft_aggregate(torch.cat([known, new[None].to(known)], 1), dim=1), dim=1)
            sensory = torch.cat([sensory, net.init_sensory(1, new.shape[0], *sensory.shape[-2:], sensory.device,
                                                           sensory.dtype)], 1)
        if probs is not None:
            probs.append(prob[0][:, crop[0], crop[1]])
        labels.append(argmax_objects(prob[0]))
        last = prob[:, 1:]
        joined = new is not None and new.shape[0] > 0
        if (sched.is_mem_frame(ti, last_mem) or joined) and ti < t_len - 1:
            value, sensory, summ = net.encode_mask(frames[ti:ti + 1], pix, sensory, last)
            k, s, v = key.flatten(2), shrink.flatten(2), value.flatten(3)
            if joined:
                buckets.append(_Bucket(slice(n, n + new.shape[0])))
            for b in buckets:
                b.add(ti, k, s, v, sched)
            if summ is not None:
                obj_mem = obj_mem + summ[:, :n] if not joined else torch.cat([obj_mem + summ[:, :n], summ[:, n:]], 1)
            mem_frames.append(ti)
            last_mem = ti
        if joined:
            n += new.shape[0]
    return torch.stack(labels)[:, crop[0], crop[1]], mem_frames


# --------------------------------------------------------------------------- training module


def build_net(cfg) -> CutieNet:
    return CutieNet(encoder=cfg.encoder, width=cfg.width, pixel_dim=cfg.pixel_dim, key_dim=cfg.key_dim,
                    value_dim=cfg.value_dim, sensory_dim=cfg.sensory_dim, embed_dim=cfg.embed_dim,
                    num_queries=cfg.num_queries, num_blocks=cfg.num_blocks, num_heads=cfg.num_heads,
                    ff_dim=cfg.ff_dim, up_dims=tuple(cfg.up_dims), attention=cfg.attention,
                    sensory_aux=cfg.sensory_aux, pretrained=cfg.pretrained_backbone)


def clip_losses(out: dict, labels: Tensor, num_objects: int, aux_weight: float) -> dict[str, Tensor]:
    """Cross-entropy over (background, objects) plus soft Dice per object on every
    predicted frame (the paper's losses, here on all pixels instead of sampled points),
    and the object transformer's auxiliary mask losses (official weight 0.01)."""
    logits = out["logits"]  # B, T-1, N+1, H, W
    b, t = logits.shape[:2]
    flat = logits.flatten(0, 1)
    lab = labels.flatten(0, 1)
    ce = F.cross_entropy(flat, lab)
    prob = torch.softmax(flat, 1)[:, 1:]
    onehot = torch.stack([(lab == j + 1).float() for j in range(num_objects)], 1)
    inter = (prob * onehot).flatten(2).sum(-1)
    dice = 1 - (2 * inter + 1) / (prob.flatten(2).sum(-1) + onehot.flatten(2).sum(-1) + 1)
    losses = {"ce": ce, "dice": dice.mean()}
    aux = torch.zeros((), device=logits.device)
    count = 0
    for ti, per_block in enumerate(out["aux_logits"]):
        for al in per_block:  # B, N, h, w
            tgt = F.interpolate(onehot.view(b, t, num_objects, *onehot.shape[-2:])[:, ti], size=al.shape[-2:],
                                mode="area")
            aux = aux + F.binary_cross_entropy_with_logits(al, tgt)
            count += 1
    losses["aux"] = aux / max(count, 1)
    losses["loss"] = ce + losses["dice"] + aux_weight * losses["aux"]
    return losses


def point_sample(x: Tensor, coords: Tensor) -> Tensor:
    """Bilinear values of ``x (K, C, H, W)`` at ``coords (K, P, 2)`` in [0, 1]^2 (x, y) ->
    ``(K, C, P)`` (grid_sample with align_corners=False, as PointRend's point_sample)."""
    return F.grid_sample(x, 2.0 * coords.unsqueeze(2) - 1.0, align_corners=False).squeeze(3)


def uncertainty(logits: Tensor) -> Tensor:
    """PointRend's uncertainty of class logits ``(K, C, P)`` -> ``(K, 1, P)``: the gap between the
    two largest logits, negated (for two classes: -|logit of class 1|)."""
    if logits.shape[1] == 2:
        return -logits[:, 1:2].abs()
    top2 = torch.topk(logits, k=2, dim=1).values
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def sample_uncertain_points(logits: Tensor, num_points: int, oversample_ratio: float,
                            importance_sample_ratio: float) -> Tensor:
    """Importance sampling of supervision points (PointRend / Mask2Former, used by the official
    losses.py): draw ``num_points * oversample_ratio`` uniform points per map, keep the
    ``importance_sample_ratio`` fraction with the highest uncertainty of the bilinearly sampled
    logits, fill the rest with fresh uniform points. ``logits (K, C, H, W)`` -> coords ``(K, P, 2)``.
    Random draws: ``torch.rand`` for the candidates, then for the uniform rest."""
    k = logits.shape[0]
    n_cand = int(num_points * oversample_ratio)
    cand = torch.rand(k, n_cand, 2, device=logits.device)
    score = uncertainty(point_sample(logits, cand))[:, 0]
    n_imp = int(importance_sample_ratio * num_points)
    idx = torch.topk(score, k=n_imp, dim=1).indices
    coords = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_points - n_imp > 0:
        coords = torch.cat([coords, torch.rand(k, num_points - n_imp, 2, device=logits.device)], 1)
    return coords


def point_mask_loss(logits: Tensor, soft_gt: Tensor, num_points: int, oversample_ratio: float,
                    importance_sample_ratio: float) -> tuple[Tensor, Tensor]:
    """The paper's mask loss on sampled points (official losses.py ``mask_loss``) for one clip:
    ``logits``/``soft_gt`` ``(T, N+1, H, W)`` (aggregated logits incl. background; one-hot
    ground truth). Points are chosen without gradient on ``logits``; cross-entropy per point
    summed over frames, averaged over points; soft Dice per object (background excluded)
    summed over frames, averaged over objects."""
    with torch.no_grad():
        coords = sample_uncertain_points(logits, num_points, oversample_ratio, importance_sample_ratio)
        gt = point_sample(soft_gt, coords)
    pl_ = point_sample(logits, coords)  # T, C, P
    ce = F.cross_entropy(pl_, gt, reduction="none").sum(0).mean()
    prob = pl_.softmax(1)[:, 1:]
    g = gt[:, 1:]
    dice = 1 - (2 * (prob * g).sum(-1) + 1) / (prob.sum(-1) + g.sum(-1) + 1)
    return ce, dice.sum(0).mean()


def point_clip_losses(out: dict, labels: Tensor, num_objects: int, *, num_points: int, oversample_ratio: float,
                      importance_sample_ratio: float, sensory_weight: float = 0.01,
                      query_weight: float = 0.01) -> dict[str, Tensor]:
    """The official training loss (losses.py ``LossComputer.compute``): per clip, point-sampled
    CE + Dice on the aggregated logits of frames 1..T-1, the same on the sensory auxiliary head's
    and on every object-transformer level's aggregated auxiliary logits (weights 0.01 each, official
    config/model/base.yaml aux_loss), averaged over the batch; ``loss`` is their sum. The random
    points are drawn per clip in that order (main, sensory, query levels)."""
    logits = out["logits"]  # B, T-1, N+1, H, W
    b = logits.shape[0]
    soft = torch.stack([(labels == j).float() for j in range(num_objects + 1)], 2)  # B, T-1, N+1, H, W
    pts = {"num_points": num_points, "oversample_ratio": oversample_ratio,
           "importance_sample_ratio": importance_sample_ratio}
    sens = out.get("sensory_logits")
    levels = len(out["aux_logits"][0]) if out["aux_logits"] else 0
    losses: dict[str, Tensor] = {}

    def add(key: str, v: Tensor) -> None:
        losses[key] = losses.get(key, 0) + v

    for bi in range(b):
        ce, dice = point_mask_loss(logits[bi], soft[bi], **pts)
        add("ce", ce / b)
        add("dice", dice / b)
        if sens:
            s_log = torch.stack([soft_aggregate(torch.sigmoid(s[bi:bi + 1]), dim=1)[0] for s in sens], 0)
            ce, dice = point_mask_loss(s_log, soft[bi], **pts)
            add("aux_sensory_ce", ce / b * sensory_weight)
            add("aux_sensory_dice", dice / b * sensory_weight)
        for lv in range(levels):
            q_log = torch.stack([soft_aggregate(torch.sigmoid(a[lv][bi:bi + 1]), dim=1)[0]
                                 for a in out["aux_logits"]], 0)
            ce, dice = point_mask_loss(q_log, soft[bi], **pts)
            add(f"aux_query_ce_l{lv}", ce / b * query_weight)
            add(f"aux_query_dice_l{lv}", dice / b * query_weight)
    losses["loss"] = sum(losses.values())
    return losses


def parameter_groups(net: nn.Module, lr: float, weight_decay: float, backbone_lr_ratio: float,
                     embed_weight_decay: float) -> list[dict]:
    """The official optimiser groups (model/utils/parameter_groups.py): the pixel encoder at
    ``lr * backbone_lr_ratio``; the learned query embeddings without weight decay
    (``embed_weight_decay``); everything else at ``lr`` and ``weight_decay``."""
    embed_names = tuple(e + ".weight" for e in ("summary_pos", "query_init", "query_emb", "obj_pe"))
    backbone, embed, other = [], [], []
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("pixel_encoder."):
            backbone.append(p)
        elif name.endswith(embed_names):
            embed.append(p)
        else:
            other.append(p)
    return [{"params": backbone, "lr": lr * backbone_lr_ratio, "weight_decay": weight_decay},
            {"params": embed, "lr": lr, "weight_decay": embed_weight_decay},
            {"params": other, "lr": lr, "weight_decay": weight_decay}]


class CutieModule(pl.LightningModule):
    """Lightning wrapper: one clip per example, first-frame ground truth, the network's
    own soft predictions written into memory for the later frames (Sec. 4, training)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = build_net(cfg)

    def _step(self, batch) -> dict[str, Tensor]:
        c = self.cfg
        out = self.net.forward_clip(batch["frames"], batch["first_mask"], num_ref_frames=c.num_ref_frames,
                                    deep_update_prob=c.deep_update_prob if self.training else 1.0,
                                    ref_sampling=c.ref_sampling)
        if c.point_supervision:
            return point_clip_losses(out, batch["labels"], c.num_objects, num_points=c.train_num_points,
                                     oversample_ratio=c.oversample_ratio,
                                     importance_sample_ratio=c.importance_sample_ratio,
                                     sensory_weight=c.aux_weight, query_weight=c.aux_weight)
        return clip_losses(out, batch["labels"], c.num_objects, c.aux_weight)

    def training_step(self, batch, batch_idx):
        losses = self._step(batch)
        self.log("train/loss", losses["loss"], prog_bar=True)
        return losses["loss"]

    def test_step(self, batch, batch_idx):
        losses = self._step(batch)
        self.log("test/clip_loss", losses["loss"])

    def configure_optimizers(self):
        c = self.cfg
        if c.backbone_lr_ratio == 1.0 and c.embed_weight_decay is None and c.lr_schedule == "constant":
            # the cpu analogue's original optimiser (one group, constant lr)
            return torch.optim.AdamW(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        groups = parameter_groups(self.net, c.lr, c.weight_decay, c.backbone_lr_ratio,
                                  c.weight_decay if c.embed_weight_decay is None else c.embed_weight_decay)
        opt = torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay, eps=c.adam_eps)
        if c.lr_schedule == "constant":
            return opt
        if c.lr_schedule != "step":
            raise ValueError(f"unknown lr_schedule {c.lr_schedule!r}")
        # official trainer.py: MultiStepLR stepped once per iteration
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(c.lr_schedule_steps), c.lr_schedule_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
