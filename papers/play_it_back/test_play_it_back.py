"""Unit tests of Play It Back: spectrogram at a hop and offset, replay alignment with the
clip's timeline, segment selection, slot attention, the mAP convention, the datasets'
prepared lists, and the cpu analogue's data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from papers.play_it_back.model import (PlayItBack, SlotAttention, Spectrogram, frame_count, replay_start,
                                       segment_samples, select_segment)
from papers.play_it_back.recipe import CPU, REPLAY, SINGLE, SMOKE

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


# --------------------------------------------------------------------------- spectrogram


def test_spectrogram_matches_torch_stft():
    """Our un-centred framing equals torch.stft(center=False) (a maintained reference;
    window = n_fft there, since torch.stft centres a shorter window inside n_fft)."""
    torch.manual_seed(0)
    wave = torch.randn(3, 1001, dtype=torch.float64)
    spec = Spectrogram(16000, win=64, n_fft=64).double()
    for hop in (7, 10, 64):
        ours = spec(wave, hop)
        ref = torch.stft(wave, n_fft=64, hop_length=hop, window=torch.hann_window(64, dtype=torch.float64),
                         center=False, return_complex=True).abs().pow(2).transpose(1, 2)
        assert ours.shape == (3, frame_count(1001, 64, hop), 33)
        torch.testing.assert_close(ours, torch.log(ref + 1e-6), rtol=1e-4, atol=1e-3)


def test_mel_spectrogram_uses_torchaudio_htk_bank():
    import torchaudio

    spec = Spectrogram(16000, win=320, n_fft=512, n_mels=32)
    wave = torch.randn(2, 16000)
    lin = torch.fft.rfft(wave.unfold(-1, 320, 160) * torch.hann_window(320), n=512).abs().pow(2)
    fb = torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 32, 16000, norm=None, mel_scale="htk")
    torch.testing.assert_close(spec(wave, 160), torch.log(lin @ fb + 1e-6))


@pytest.mark.parametrize("hop,start,n_frames", [(8, 0, 64), (8, 8 * 37, 50), (32, 32 * 101, 64), (5, 5 * 3, 7)])
def test_replay_features_align_with_the_original_timeline(hop, start, n_frames):
    """A replay starting at sample s (on the hop grid) equals frames s/hop .. s/hop + n - 1
    of the whole clip's spectrogram at the same hop: the replay sits on the clip's timeline."""
    torch.manual_seed(1)
    wave = torch.randn(2, 16384)
    spec = Spectrogram(16000, win=8, n_fft=8)
    whole = spec(wave, hop)
    starts = torch.tensor([start, 0])
    rep = spec.segment(wave, starts, hop, n_frames)
    torch.testing.assert_close(rep[0], whole[0, start // hop: start // hop + n_frames])
    torch.testing.assert_close(rep[1], whole[1, :n_frames])


def test_replay_sees_the_event_that_the_coarse_pass_located():
    """An event at a known place: the coarse frame with most energy, turned into a replay
    window, covers the event's samples."""
    wave = 0.01 * torch.randn(1, 16384)
    wave[0, 9000:9400] += torch.sin(torch.arange(400) * 0.8)
    spec = Spectrogram(16000, win=8, n_fft=8)
    coarse = spec(wave, 256).mean(-1)  # (1, 64) frame energy
    first, last = select_segment(coarse)
    s, e = segment_samples(first, last, torch.zeros(1, dtype=torch.long), 256, 8)
    r0 = replay_start(s, e, 8, 64, 8, 16384)
    assert 8800 <= int(r0) <= 9400 and int(r0) % 8 == 0
    rep = spec.segment(wave, r0, 8, 64).mean(-1)
    assert rep.max() > coarse[0].median() + 3


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize("seed", range(5))
def test_segment_selection_returns_valid_time_spans(seed):
    g = torch.Generator().manual_seed(seed)
    b, t, hop, win, length = 16, 37, 32, 8, 37 * 32 + 8 + 13
    mask = torch.rand(b, t, generator=g)
    mask[0] = 0.5  # a constant row
    mask[1] = torch.zeros(t)
    mask[1, -1] = 1.0  # maximum on the last frame
    mask[2] = torch.zeros(t)
    mask[2, 0] = 1.0  # ... on the first frame
    first, last = select_segment(mask)
    peak = mask.argmax(-1)
    assert ((0 <= first) & (first <= peak) & (peak <= last) & (last < t)).all()
    above = mask > mask.mean(-1, keepdim=True)
    for i in range(3, b):  # the run is maximal: every frame in it is above the mean, its neighbours are not
        assert above[i, first[i]: last[i] + 1].all()
        assert first[i] == 0 or not above[i, first[i] - 1]
        assert last[i] == t - 1 or not above[i, last[i] + 1]
    offset = torch.randint(0, 9, (b,), generator=g) * hop
    s, e = segment_samples(first, last, offset, hop, win)
    assert ((0 <= s) & (s < e) & (e <= offset + (t - 1) * hop + win)).all()
    for fine_hop, n in ((8, 64), (4, 10), (16, 20)):
        r = replay_start(s, e, fine_hop, n, win, length)
        span = (n - 1) * fine_hop + win
        assert ((r >= 0) & (r + span <= length) & (r % fine_hop == 0)).all()
        inside = (s >= r) & (e <= r + span)  # short segments sit inside the replay when the clip allows
        short = (e - s) <= span - 2 * fine_hop
        assert inside[short & (s >= span) & (e <= length - span)].all()


def test_replay_longer_than_clip_is_refused():
    with pytest.raises(ValueError):
        replay_start(torch.tensor([0]), torch.tensor([10]), 8, 100, 8, 500)


# --------------------------------------------------------------------------- slot attention


def test_slot_attention_shapes_and_competition():
    torch.manual_seed(0)
    sa = SlotAttention(16, num_slots=2, iters=3)
    x = torch.randn(4, 11, 16)
    slots, attn = sa(x)
    assert slots.shape == (4, 2, 16) and attn.shape == (4, 2, 11)
    torch.testing.assert_close(attn.sum(1), torch.ones(4, 11), atol=1e-6, rtol=0)  # softmax over slots
    sa.eval()
    a1, a2 = sa(x)[1], sa(x)[1]
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)  # deterministic at evaluation
    sa.train()
    slots, _ = sa(x)
    slots.sum().backward()
    assert all(p.grad is not None for p in sa.parameters())


def test_slot_attention_separates_two_clusters():
    """Slot attention's defining property with a learned-free sanity case: inputs from two
    well-separated clusters end up mostly claimed by different slots after training the
    slot module to reconstruct them (tiny, seconds)."""
    torch.manual_seed(0)
    sa = SlotAttention(8, num_slots=2, iters=3)
    opt = torch.optim.Adam(sa.parameters(), 1e-2)
    centres = torch.randn(2, 8) * 3
    for _ in range(60):
        lab = torch.randint(0, 2, (16, 10))
        x = centres[lab] + 0.1 * torch.randn(16, 10, 8)
        slots, attn = sa(x)
        recon = torch.einsum("bsn,bsd->bnd", attn, slots)
        loss = (recon - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sa.eval()
    lab = torch.zeros(1, 10, dtype=torch.long)
    lab[0, 5:] = 1
    _, attn = sa(centres[lab])
    claimed = attn[0].argmax(0)
    assert claimed[:5].unique().numel() == 1 and claimed[5:].unique().numel() == 1 and claimed[0] != claimed[5]


# --------------------------------------------------------------------------- the network


def _net(cfg):
    ms = lambda x: int(round(x * cfg.sample_rate / 1000))  # noqa: E731
    return PlayItBack(sample_rate=cfg.sample_rate, win=ms(cfg.win_ms), n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                      hops=tuple(ms(h) for h in cfg.hops_ms), replay_frames=cfg.replay_frames, dim=16, heads=2,
                      layers=1, latents=4, num_classes=cfg.num_classes)


def test_forward_spans_are_nested_and_inside_the_clip():
    torch.manual_seed(0)
    cfg = dataclasses.replace(CPU, **REPLAY)
    net = _net(cfg).eval()
    wave = torch.randn(5, 16384)
    out = net(wave)
    assert out["logits"].shape == (5, 2) and len(out["slot_logits"]) == 2 and len(out["spans"]) == 2
    (s1, e1), (s2, e2) = out["spans"]
    assert ((0 <= s1) & (e1 <= 16384) & (e1 - s1 == 63 * 32 + 8)).all()
    assert ((0 <= s2) & (e2 <= 16384) & (e2 - s2 == 63 * 8 + 8)).all()
    seg_s, seg_e = out["segments"][1]  # chosen inside the first replay
    assert ((seg_s >= s1) & (seg_e <= e1)).all()


def test_single_pass_has_no_selection():
    net = _net(dataclasses.replace(CPU, **SINGLE))
    assert len(net.slots) == 0 and net.head is None
    out = net(torch.randn(2, 16384))
    assert out["spans"] == [] and out["logits"].shape == (2, 2)


def test_hops_must_decrease():
    with pytest.raises(ValueError):
        _net(dataclasses.replace(CPU, hops_ms=(2.0, 16.0)))


def test_smoke_config_shapes():
    net = _net(SMOKE)
    out = net(torch.randn(2, 32000))
    assert out["logits"].shape == (2, 8)


# --------------------------------------------------------------------------- metric


def test_macro_map_matches_sklearn_and_states_the_no_positive_convention():
    from sklearn.metrics import average_precision_score
    from torchmetrics.classification import MultilabelAveragePrecision

    from repro.metrics.audio_tagging import macro_map

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 6))
    y = (rng.random((40, 6)) < 0.3).astype(int)
    y[:, 0] = 0  # a class with no positive
    y[0, 1] = 1
    got, excluded = macro_map(torch.tensor(scores), torch.tensor(y))
    per = [average_precision_score(y[:, c], scores[:, c]) for c in range(6) if y[:, c].any()]
    assert excluded == 1
    assert got == pytest.approx(float(np.mean(per)), abs=1e-6)
    # with every class present it is torchmetrics' and sklearn's macro mAP
    y[3, 0] = 1
    got, excluded = macro_map(torch.tensor(scores), torch.tensor(y))
    tm = MultilabelAveragePrecision(num_labels=6, average="macro")(torch.tensor(scores).float(), torch.tensor(y))
    assert excluded == 0
    assert got == pytest.approx(float(tm), abs=1e-6)
    assert got == pytest.approx(average_precision_score(y, scores, average="macro"), abs=1e-6)


def test_macro_map_perfect_and_reversed_rankings():
    from repro.metrics.audio_tagging import macro_map

    y = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]])
    assert macro_map(y.float(), y)[0] == pytest.approx(1.0)
    assert macro_map(-y.float(), y)[0] == pytest.approx(0.5)


# --------------------------------------------------------------------------- data


def test_fine_clicks_are_balanced_deterministic_and_energy_matched():
    from papers.play_it_back.data import fine_clicks, pip_train

    kw = dict(sr=16000, clip_secs=1.024, spacings_ms=(3.0, 5.0), event_secs=0.1, jitter=0.15)
    w1, y1, on1 = fine_clicks(64, 7, **kw)
    w2, y2, _ = fine_clicks(64, 7, **kw)
    assert torch.equal(w1, w2) and torch.equal(y1, y2)
    assert y1.bincount().tolist() == [32, 32]
    assert ((on1 >= 800) & (on1 + 1600 <= 16384 - 800)).all()
    rng = np.random.default_rng(0)
    duty = {s: np.mean([np.mean(pip_train(16000, 0.1, s, rng) ** 2) for _ in range(200)]) for s in (0.003, 0.005)}
    assert duty[0.003] == pytest.approx(duty[0.005], rel=0.08)  # same mean energy per class


@pytest.mark.parametrize("name,multilabel,n_classes", [("audioset", True, 8), ("vggsound", False, 8),
                                                       ("epic_sounds", False, 8)])
def test_prepared_fixture_lists_load(name, multilabel, n_classes, tmp_path, monkeypatch):
    import json

    import data_scripts
    from papers.play_it_back.data import AudioList, num_classes

    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    root = data_scripts.build_fixture(name)
    assert num_classes(root) == n_classes
    ds = AudioList(root, "test", sr=16000, clip_secs=2.0, n_classes=n_classes, multilabel=multilabel)
    x, y = ds[0]
    assert x.shape == (32000,) and torch.isfinite(x).all() and x.abs().max() > 0
    assert (y.shape == (n_classes,) and y.sum() >= 1) if multilabel else (0 <= int(y) < n_classes)
    counts = json.loads((root / "prepared" / "counts.json").read_text())
    assert counts["test"]["found"] == len(ds)
    if name in ("audioset", "vggsound"):  # one listed clip has no audio, as on a shrunken real copy
        assert counts["test"]["listed"] == counts["test"]["found"] + 1


def _logged(module):
    logged = {}
    module.log = lambda k, v, **kw: logged.__setitem__(k, float(v))
    return logged


def test_multilabel_module_on_the_audioset_fixture(tmp_path, monkeypatch):
    """The AudioSet path (multi-label BCE, macro mAP, clip count) end to end on its fixture."""
    import data_scripts
    from papers.play_it_back.data import PlayItBackData
    from papers.play_it_back.model import PlayItBackModule

    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    root = data_scripts.build_fixture("audioset")
    cfg = dataclasses.replace(SMOKE, multilabel=True, data_dir=str(root))
    torch.manual_seed(0)
    module, dm = PlayItBackModule(cfg), PlayItBackData(cfg)
    dm.setup("fit")
    logged = _logged(module)
    batch = next(iter(dm.train_dataloader()))
    assert batch[1].shape == (cfg.batch_size, 8)
    loss = module.training_step(batch, 0)
    loss.backward()
    module.eval()
    module.on_test_epoch_start()
    with torch.no_grad():
        for b in dm.test_dataloader():
            module.test_step(b, 0)
    module.on_test_epoch_end()
    assert logged["test/n_clips"] == 12 and 0 <= logged["test/mAP"] <= 1 and "test/acc" not in logged


def test_replay_diagnostic_counts_windows_on_the_event():
    """test/replay<p>_on_event: a replay window that covers the event counts, one elsewhere does not."""
    from papers.play_it_back.model import PlayItBackModule

    cfg = dataclasses.replace(CPU, **REPLAY, dim=16, heads=2, layers=1, latents=4)
    module = PlayItBackModule(cfg).eval()
    logged = _logged(module)
    spans = [(torch.tensor([8000, 0]), torch.tensor([10024, 2024])), (torch.tensor([8400, 0]), torch.tensor([8912, 512]))]
    module.net.forward = lambda w: {"logits": torch.zeros(2, 2), "slot_logits": [], "spans": spans, "segments": []}
    module.on_test_epoch_start()
    module.test_step((torch.zeros(2, 16384), torch.tensor([0, 1]), torch.tensor([8200, 9000])), 0)
    module.on_test_epoch_end()
    assert logged["test/replay1_on_event"] == 0.5 and logged["test/replay2_on_event"] == 0.5
