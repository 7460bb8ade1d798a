"""eSpeak's word times: the ground truth that word timestamps are checked against."""

import json

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from asr.corpora.espeak import synthesize  # noqa: E402
from asr.data.tokenizer import normalize_text  # noqa: E402

SR = 16000


def energy_onset(audio: np.ndarray, near: float, threshold_db: float = -30.0) -> float:
    """The first loud 5-ms frame after the silence that precedes time ``near``."""
    hop = SR // 200
    n = len(audio) // hop
    rms = np.sqrt((audio[: n * hop].reshape(n, hop) ** 2).mean(axis=1))
    loud = rms > rms.max() * 10 ** (threshold_db / 20)
    i = min(n - 1, int(round(near * 200)))
    while i > 0 and loud[i - 1]:
        i -= 1
    while i < n and not loud[i]:
        i += 1
    return i / 200


@pytest.mark.parametrize(
    "text, voice, rate",
    [
        ("seven. two, zero. five", "en-us+m7", 130),
        ("turn off the lights, please. then call mom!", "en-gb-x-rp+f4", 200),
        ("Set the alarm for six o'clock; in the morning.", "en+klatt5", 170),
    ],
)
def test_word_starts_are_ordered_inside_the_audio_and_on_the_sound(text, voice, rate):
    audio, words = synthesize(text, voice=voice, rate=rate, words=True)
    duration = len(audio) / SR
    assert [w["word"] for w in words] == normalize_text(text).split()
    starts = [w["start"] for w in words]
    assert all(a < b for a, b in zip(starts, starts[1:]))
    assert all(0.0 <= w["start"] < w["end"] <= duration for w in words)
    # Where a word follows silence (the first word, or after a pause) its start is where the sound begins.
    checked = 0
    for prev, w in zip([None, *words], words):
        if prev is None or w["start"] - prev["end"] >= 0.05:
            assert abs(energy_onset(audio, w["start"]) - w["start"]) <= 0.02, (w, text, voice)
            checked += 1
    assert checked >= 2


def test_words_espeak_speaks_as_one_are_shared_out():
    # eSpeak says "in the" as one unit with a single text position; "the" still gets its own start.
    audio, words = synthesize("put it in the box", voice="en-us+m3", words=True)
    by = {w["word"]: w for w in words}
    assert by["in"]["start"] < by["the"]["start"] < by["box"]["start"]
    assert by["in"]["end"] == by["the"]["start"]


def test_silence_trimming_moves_the_word_times_with_the_audio():
    untrimmed, raw = synthesize("call mom", trim=False, words=True)
    trimmed, cut = synthesize("call mom", words=True)
    shift = cut[0]["start"] - raw[0]["start"]
    assert abs(shift - (len(trimmed) - len(untrimmed)) / SR) < 0.2  # the lead-in shrinks, times follow
    assert [w["start"] - shift for w in cut] == pytest.approx([w["start"] for w in raw], abs=1e-3)


def test_synth_manifests_carry_word_times(tiny_corpus):
    for split in ("train", "test"):
        for line in open(tiny_corpus[split]):
            utt = json.loads(line)
            assert [w["word"] for w in utt["words"]] == utt["text"].split()
            assert all(0.0 <= w["start"] <= w["end"] <= utt["duration"] + 1e-3 for w in utt["words"])
