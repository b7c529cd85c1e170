"""repro.bpe: sentencepiece BPE training, round trips, special ids and the settings/corpus
keyed cache (a changed setting or corpus never reuses a stale model)."""

from __future__ import annotations

import dataclasses
import random

import pytest

pytest.importorskip("sentencepiece", reason="sentencepiece is needed for BPE")

from repro.bpe import BPESettings, cache_key, joint_bpe, load_or_train, separate_bpe, train_bpe  # noqa: E402

pytestmark = pytest.mark.unit

WORDS_EN = ["the", "house", "houses", "small", "smaller", "garden", "gardens", "green", "river", "rivers"]
WORDS_DE = ["das", "Haus", "Häuser", "klein", "kleiner", "Garten", "Gärten", "grün", "Fluss", "Flüsse"]


def _corpus(tmp_path, seed=0, n=400):
    rng = random.Random(seed)
    en = [" ".join(rng.choice(WORDS_EN) for _ in range(rng.randint(3, 9))) for _ in range(n)]
    de = [" ".join(rng.choice(WORDS_DE) for _ in range(rng.randint(3, 9))) for _ in range(n)]
    (tmp_path / "train.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("\n".join(de) + "\n", encoding="utf-8")
    return tmp_path / "train.en", tmp_path / "train.de", en, de


def test_joint_model_round_trips_and_has_the_special_ids(tmp_path):
    src, tgt, en, de = _corpus(tmp_path)
    m = joint_bpe(src, tgt, tmp_path / "cache", BPESettings(vocab_size=60))
    assert (m.pad_id, m.unk_id, m.bos_id, m.eos_id) == (0, 1, 2, 3)
    assert 8 <= m.vocab_size <= 60
    for line in en[:20] + de[:20]:
        ids = m.encode(line, add_eos=True)
        assert ids[-1] == m.eos_id and m.pad_id not in ids
        assert m.decode(ids) == line  # eos dropped, text restored exactly
    # joint: German umlauts and English words are both in one vocabulary without <unk>
    assert m.unk_id not in m.encode("Gärten houses")


def test_bpe_merges_frequent_words_into_fewer_pieces_than_characters(tmp_path):
    src, tgt, _, _ = _corpus(tmp_path)
    m = joint_bpe(src, tgt, tmp_path / "cache", BPESettings(vocab_size=80))
    line = "the smaller gardens"
    assert len(m.pieces(line)) < len(line.replace(" ", ""))  # some merges happened
    char = load_or_train([src], tmp_path / "cache", BPESettings(vocab_size=80, model_type="char"), name="c")
    assert len(char.pieces("garden")) == 7  # "▁" + 6 characters


def test_cache_is_reused_and_keyed_by_settings_and_corpus(tmp_path):
    src, tgt, _, _ = _corpus(tmp_path)
    cache = tmp_path / "cache"
    a = joint_bpe(src, tgt, cache, BPESettings(vocab_size=60))
    mtime = a.path.stat().st_mtime_ns
    b = joint_bpe(src, tgt, cache, BPESettings(vocab_size=60))
    assert b.path == a.path and b.path.stat().st_mtime_ns == mtime  # not retrained
    c = joint_bpe(src, tgt, cache, BPESettings(vocab_size=70))
    assert c.path != a.path  # another setting, another model
    key = cache_key([src, tgt], BPESettings(vocab_size=60))
    src.write_text(src.read_text() + "river garden\n")  # corpus changed
    assert cache_key([src, tgt], BPESettings(vocab_size=60)) != key
    assert joint_bpe(src, tgt, cache, BPESettings(vocab_size=60)).path != a.path
    assert (cache / (a.path.stem + ".json")).exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_training_is_deterministic(tmp_path):
    src, tgt, _, _ = _corpus(tmp_path)
    p1 = train_bpe([src, tgt], tmp_path / "one", BPESettings(vocab_size=60))
    p2 = train_bpe([src, tgt], tmp_path / "two", BPESettings(vocab_size=60))
    from repro.bpe import BPEModel

    a, b = BPEModel(p1), BPEModel(p2)  # the files differ only in the recorded temporary prefix
    assert [a.sp.id_to_piece(i) for i in range(len(a))] == [b.sp.id_to_piece(i) for i in range(len(b))]
    assert [a.sp.get_score(i) for i in range(len(a))] == [b.sp.get_score(i) for i in range(len(b))]


def test_separate_models_have_their_own_vocabularies(tmp_path):
    src, tgt, _, _ = _corpus(tmp_path)
    ms, mt = separate_bpe(src, tgt, tmp_path / "cache", BPESettings(vocab_size=50))
    assert ms.path != mt.path
    assert "ä" not in "".join(ms.sp.id_to_piece(i) for i in range(ms.vocab_size))
    assert any("ä" in mt.sp.id_to_piece(i) for i in range(mt.vocab_size))


def test_settings_are_validated(tmp_path):
    with pytest.raises(ValueError):
        BPESettings(model_type="wordpiece")
    with pytest.raises(ValueError):
        BPESettings(pad_id=1, unk_id=1)
    with pytest.raises(FileNotFoundError):
        train_bpe([tmp_path / "missing.txt"], tmp_path / "m")
    assert dataclasses.asdict(BPESettings())["vocab_size"] == 10_000
