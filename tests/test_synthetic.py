import json

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from asr.corpora.espeak import synthesize, trim_silence
from asr.corpora.synthetic import (
    DEV_VARIANTS,
    TEST_VARIANTS,
    TINY_SIZES,
    build_corpus,
    draw_specs,
    main,
    number_to_words,
    random_sentence,
    split_voices,
    vocabulary,
)
from asr.data.audio import load_audio
from asr.data.manifest import read_manifest
from asr.data.tokenizer import CharTokenizer, normalize_text

SENTENCE = "turn on the kitchen lights"


def test_synthesize_gives_16k_float_audio_of_plausible_length():
    audio = synthesize(SENTENCE, rate=170)
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / 16000
    assert 0.8 < seconds < 3.5  # five words at 170 wpm is about 1.8 s
    assert 0.05 < np.abs(audio).max() <= 1.0


def test_synthesize_trims_silence_to_a_short_margin():
    audio = synthesize(SENTENCE)
    lead = np.argmax(np.abs(audio) > 0.01) / 16000
    tail = np.argmax(np.abs(audio[::-1]) > 0.01) / 16000
    assert lead < 0.15 and tail < 0.15
    padded = np.concatenate([np.zeros(32000, np.float32), audio, np.zeros(32000, np.float32)])
    assert abs(len(trim_silence(padded, 16000)) - len(audio)) < 800


def test_voices_and_rates_differ():
    a = synthesize(SENTENCE, voice="en-us+m3")
    b = synthesize(SENTENCE, voice="en-gb-x-rp+f2")
    n = min(len(a), len(b))
    assert len(a) != len(b) or not np.allclose(a[:n], b[:n], atol=1e-3)
    slow, fast = synthesize(SENTENCE, rate=120), synthesize(SENTENCE, rate=240)
    assert len(slow) > 1.4 * len(fast)


def test_unknown_voice_is_an_error():
    with pytest.raises(ValueError, match="unknown espeak voice"):
        synthesize("hello", voice="en-gb")


def test_grammar_only_produces_in_vocabulary_normalised_text():
    tok, vocab = CharTokenizer(), vocabulary()
    rng = np.random.default_rng(0)
    for _ in range(2000):
        text = random_sentence(rng)
        assert text and normalize_text(text) == text
        tok.encode(text)
        assert set(text.split()) <= vocab
    assert 150 <= len(vocab) <= 600


def test_number_to_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(42) == "forty two"
    assert number_to_words(1905) == "one thousand nine hundred five"


def test_voice_split_is_disjoint_and_holds_out_whole_variants():
    split = split_voices(0)
    train, dev, test = (set(split[s]) for s in ("train", "dev", "test"))
    assert train and dev and test
    assert not (train & dev) and not (train & test) and not (dev & test)
    train_variants = {v.split("+")[1] for v in train}
    assert not train_variants & (set(TEST_VARIANTS) | set(DEV_VARIANTS))


def test_specs_are_deterministic_under_the_seed(tmp_path):
    sizes = {"train": 30, "dev": 5, "test": 10}
    a, b = draw_specs(tmp_path, sizes, seed=3, noise_prob=0.5), draw_specs(tmp_path, sizes, seed=3, noise_prob=0.5)
    assert a == b
    c = draw_specs(tmp_path, sizes, seed=4, noise_prob=0.5)
    assert [s.text for s in a["train"]] != [s.text for s in c["train"]]
    train_texts = {s.text for s in a["train"]}
    assert not any(s.text in train_texts for s in a["test"])


def test_build_tiny_corpus(tmp_path):
    out = tmp_path / "synth"
    manifests = build_corpus(out, seed=1, noise_prob=0.5, **TINY_SIZES)
    utts = {s: read_manifest(p) for s, p in manifests.items()}
    assert [len(utts[s]) for s in ("train", "dev", "test")] == [20, 5, 5]
    for u in utts["train"][:5] + utts["test"]:
        audio = load_audio(u.audio_filepath)
        assert abs(len(audio) / 16000 - u.duration) < 1e-3
        assert 0.3 < u.duration < 10
        assert {"speaker", "rate", "pitch"} <= set(u.extra)
        CharTokenizer().encode(u.text)
    speakers = {s: {u.extra["speaker"] for u in utts[s]} for s in utts}
    assert not speakers["train"] & speakers["test"]
    assert not speakers["train"] & speakers["dev"]

    # Same parameters: nothing is rebuilt.
    stamp = (out / "train.jsonl").stat().st_mtime_ns
    build_corpus(out, seed=1, noise_prob=0.5, **TINY_SIZES)
    assert (out / "train.jsonl").stat().st_mtime_ns == stamp
    # Other parameters: refused unless forced.
    with pytest.raises(FileExistsError):
        build_corpus(out, seed=2, noise_prob=0.5, **TINY_SIZES)
    build_corpus(out, seed=2, noise_prob=0.5, force=True, **TINY_SIZES)
    assert json.loads((out / "corpus.json").read_text())["seed"] == 2


def test_main_prints_a_summary(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "c"), "--train", "6", "--dev", "2", "--test", "3", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "voices" in printed
    assert len(read_manifest(tmp_path / "c" / "test.jsonl")) == 3


@pytest.mark.parametrize("kind", ["relative", "symlink"])
def test_synth_with_a_relative_or_symlinked_data_folder(tmp_path, monkeypatch, kind):
    """`asr synth --out data/synth` as recipes/synth/run.sh runs it: every manifest path opens from elsewhere."""
    pytest.importorskip("espeakng_loader")
    from test_manifest import assert_every_manifest_path_opens, data_dir_as

    from asr.cli import main as asr_main

    data = data_dir_as(kind, tmp_path, monkeypatch)
    assert (
        asr_main(["synth", "--out", f"{data}/synth", "--train", "2", "--dev", "1", "--test", "1", "--jobs", "1"]) == 0
    )
    assert_every_manifest_path_opens(data, expected=4)


def test_synth_refusing_to_overwrite_is_one_error_line(tmp_path, capsys):
    pytest.importorskip("espeakng_loader")
    from asr.cli import main as asr_main

    out = str(tmp_path / "c")
    assert asr_main(["synth", "--out", out, "--train", "1", "--dev", "1", "--test", "1", "--jobs", "1"]) == 0
    assert asr_main(["synth", "--out", out, "--train", "2", "--dev", "1", "--test", "1", "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "asr: error: " in err and "other parameters" in err
