"""Recordings of any length: windows at pauses, overlap splicing, stitching in file time, and text that does not
depend on how long the file is.

Exact checks need a model whose answer is known, so most tests use a tone "model": each character is a tone of
its own frequency, 90 ms long, and the model reads the loudest frequency of each 30-ms frame. Like the real model
it is a torch module with log-mel settings, a frame grid (10-ms hop, subsampling 3) and CTC log-probs; unlike it,
every frame depends only on its own samples, so any error in cutting, batching, splicing or timing shows up as a
wrong character or a wrong time.
"""

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from asr.data.tokenizer import CharTokenizer
from asr.inference.segmentation import SegmentationConfig, Window, plan_windows
from asr.inference.transcribe import Transcriber
from asr.model.features import FeatureConfig, LogMel
from asr.model.file import LoadedModel

SR = 16000
FRAME = 480  # samples per output frame: 10-ms hop x subsampling 3
CHAR_S, GAP_S = 0.09, 0.06


def _freq(token: int) -> float:
    return 300.0 if token == 0 else 500.0 + 100.0 * token  # the blank has a tone too, so words sound continuous


class ToneFeatures(nn.Module):
    """Passes the audio through; carries the log-mel settings the energy detector reads."""

    def __init__(self):
        super().__init__()
        self.config = FeatureConfig()
        self.mel_fb = LogMel(self.config).mel_fb

    def forward(self, audio, lengths, stats_mask=None):
        return audio, lengths


class ToneEncoder(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.head = nn.Linear(1, 1)  # gives the model a device

    def forward(self, audio, lengths):
        n = (lengths // FRAME + 1).clamp(max=audio.shape[1] // FRAME + 1)
        t_max = int(n.max())
        padded = torch.nn.functional.pad(audio, (FRAME // 2, FRAME * (t_max + 1)))
        frames = padded.unfold(1, FRAME, FRAME)[:, :t_max]  # frame i centred on sample i * FRAME
        spec = torch.fft.rfft(frames * torch.hann_window(FRAME), n=SR // 10).abs()  # 10-Hz bins
        peak = spec.argmax(-1).float() * 10.0
        loud = spec.amax(-1) > 1.0
        token = torch.where(peak < 400, 0, torch.round((peak - 500) / 100).long()).clamp(0, self.vocab_size - 1)
        token = torch.where(loud, token, 0)
        lp = torch.full((*token.shape, self.vocab_size), float(np.log(0.02 / (self.vocab_size - 1))))
        lp.scatter_(-1, token[..., None], float(np.log(0.98)))
        return lp, n


class ToneModel(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.features = ToneFeatures()
        self.encoder = ToneEncoder(vocab_size)
        self.feature_config = self.features.config
        self.sample_rate = SR

        class Dims:
            subsampling = 3

        self.dims = Dims()

    @property
    def device(self):
        return self.encoder.head.weight.device


@pytest.fixture(scope="module")
def tone_model():
    tok = CharTokenizer()
    return LoadedModel(ToneModel(len(tok)), tok, {})


def say(text: str, tok: CharTokenizer) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Tones for ``text`` and each word's true start (s)."""
    t = np.arange(int(CHAR_S * SR)) / SR
    g = np.arange(int(GAP_S * SR)) / SR
    parts, starts, pos = [], [], 0
    for w_i, word in enumerate(text.split()):
        ids = ([tok.vocab.index(" ")] if w_i else []) + tok.encode(word)
        for j, i in enumerate(ids):
            if j == (1 if w_i else 0):
                starts.append((word, pos / SR))
            loud = 0.3 if (pos // len(t)) % 3 else 0.03  # speech is not steady: a file's loudness varies
            parts += [loud * np.sin(2 * np.pi * _freq(i) * t), 0.3 * np.sin(2 * np.pi * _freq(0) * g)]
            pos += len(t) + len(g)
    return np.concatenate(parts).astype(np.float32), starts


WORDS = "call mom add three eggs to the list dial nine four two open the blue door".split()


def sentences(n: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) for _ in range(n)]


def test_windows_cut_at_pauses_cover_all_speech():
    fs = 0.01
    probs = np.zeros(3000, dtype=np.float32)  # 30 s
    for s, e in [(100, 400), (450, 470), (1000, 2900)]:  # 3 s, a short pause, a word, then 19 s with a dip
        probs[s:e] = 0.9
    probs[2000:2020] = 0.1  # a 0.2-s dip: too short to end the region, the place to cut it
    probs[1700:1705] = 0.1  # 50 ms: a stop consonant, never a cut
    cfg = SegmentationConfig(max_segment_seconds=12.0, speech_pad_seconds=0.1)
    wins = plan_windows(probs, fs, 30 * SR, SR, cfg, grid=FRAME)
    assert all(w.end - w.start <= 12 * SR and w.start % FRAME == 0 for w in wins)
    assert not any(w.joins_next for w in wins)
    speech = np.flatnonzero(probs >= 0.5)
    covered = np.zeros(3000, dtype=bool)
    for w in wins:
        covered[w.start // 160 : -(-w.end // 160)] = True
    assert covered[speech].all()
    assert any(abs(w.end - 20.1 * SR) < 0.1 * SR for w in wins)  # the long region was cut in its dip
    assert plan_windows(np.zeros(3000, np.float32), fs, 30 * SR, SR, cfg, FRAME) == []


def test_speech_without_pause_is_split_with_overlap():
    cfg = SegmentationConfig(max_segment_seconds=10.0, overlap_seconds=2.0)
    wins = plan_windows(np.ones(5000, np.float32), 0.01, 50 * SR, SR, cfg, grid=FRAME)
    assert len(wins) == 6 and all(w.joins_next for w in wins[:-1]) and not wins[-1].joins_next
    for a, b in zip(wins, wins[1:]):
        assert a.end - b.start >= 1.9 * SR  # overlapping, so nothing is dropped
    assert wins[0].start == 0 and wins[-1].end == 50 * SR
    assert plan_windows(None, 1.0, 5 * SR, SR, cfg, FRAME) == [Window(0, 5 * SR)]


@pytest.mark.parametrize("vad", ["energy", "none"])
def test_long_file_same_text_and_times_as_one_by_one(tone_model, tmp_path, vad):
    """A long file of utterances and pauses gives exactly the text of its utterances one by one, and every word
    lands at its true time in the file; with ``none`` the file is cut by length and spliced at overlaps."""
    rng = np.random.default_rng(0)
    texts = sentences(12, rng)
    pieces, truth, pos = [], [], 0.0
    singles = []
    for i, text in enumerate(texts):
        audio, starts = say(text, tone_model.tokenizer)
        pause = np.zeros(int(rng.uniform(0.4, 1.2) * SR), np.float32)
        truth += [(w, pos + len(pause) / SR + s) for w, s in starts]
        pieces += [pause, audio]
        pos += (len(pause) + len(audio)) / SR
        sf.write(tmp_path / f"u{i}.wav", audio, SR)
        singles.append(str(tmp_path / f"u{i}.wav"))
    sf.write(tmp_path / "long.wav", np.concatenate(pieces + [np.zeros(SR // 2, np.float32)]), SR)
    cfg = SegmentationConfig(max_segment_seconds=8.0, overlap_seconds=2.0)
    tr = Transcriber(tone_model, max_batch_seconds=30, segmentation=cfg, vad=vad, word_timestamps=True)
    one_by_one = [t.text for t in tr.run(singles)]
    assert one_by_one == texts
    (long,) = tr.run([str(tmp_path / "long.wav")])
    assert long.error is None and abs(long.duration - (pos + 0.5)) < 1e-3
    starts = [s.start for s in long.segments]
    assert starts == sorted(starts) and all(s.end <= long.duration for s in long.segments)
    if vad == "none":
        # one stream spliced from 8-s windows; the tone model emits no space across a pause, so compare letters
        assert long.text.replace(" ", "") == "".join(texts).replace(" ", "")
        return
    assert long.text == " ".join(texts) and len(long.segments) == len(texts)
    words = [w for s in long.segments for w in s.words]
    assert [w.word for w in words] == [w for w, _ in truth]
    errors = np.array([w.start - t for w, (_, t) in zip(words, truth)])
    assert np.abs(errors).max() <= 1.5 * FRAME / SR, errors


def test_continuous_speech_longer_than_the_limit(tone_model, tmp_path):
    """50 s without a pause, windows of at most 8 s: spliced back into the same text, nothing dropped."""
    text = " ".join(sentences(40, np.random.default_rng(1)))
    audio, _ = say(text, tone_model.tokenizer)
    assert len(audio) > 40 * SR
    sf.write(tmp_path / "talk.wav", audio, SR)
    cfg = SegmentationConfig(max_segment_seconds=8.0)
    for vad in ("energy", "none"):
        tr = Transcriber(tone_model, segmentation=cfg, vad=vad, word_timestamps=False)
        (t,) = tr.run([str(tmp_path / "talk.wav")])
        assert t.text == text, vad


def test_silence_and_tiny_files_give_empty_results(tone_model, tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(30 * SR, np.float32), SR)
    sf.write(tmp_path / "blip.wav", np.zeros(int(0.05 * SR), np.float32), SR)
    for vad in ("energy", "none"):
        files = [str(tmp_path / "silence.wav"), str(tmp_path / "blip.wav")]
        results = list(Transcriber(tone_model, vad=vad).run(files))
        assert [(r.text, r.error) for r in results] == [("", None), ("", None)]
        assert results[1].duration == pytest.approx(0.05)
