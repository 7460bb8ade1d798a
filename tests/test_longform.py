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
    loud_level = 1.0  # spectral peak below which a frame is silence

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
        loud = spec.amax(-1) > self.loud_level
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


# --- what real recordings carry around a clip: silence, noise, lead-ins ---------------------------------------------
class NormalisingToneFeatures(ToneFeatures):
    """Per-utterance normalisation, as the real log-mel's: frames more than 3 standard deviations below the mean
    log energy of the window (or of its speech frames, where the transcriber passes them) are silenced. So, like
    a trained model, it is only right when the window is mostly speech: 3 s of faint noise around a 1.5-s clip
    pulls the mean down until the noise counts as sound, and the tone reader turns it into letters."""

    def forward(self, audio, lengths, stats_mask=None):
        hop = self.config.hop_length
        b, n_samples = audio.shape
        n = n_samples // hop + 1
        x = torch.nn.functional.pad(audio, (0, n * hop - n_samples)).view(b, n, hop)
        energy = torch.log((x**2).mean(-1) + 1e-10)
        stats = torch.arange(n)[None, :] < (lengths // hop + 1)[:, None]
        if stats_mask is not None:
            masked = stats & stats_mask[:, :n]
            stats = torch.where(masked.any(1, keepdim=True), masked, stats)
        w = stats.float()
        mean = (energy * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
        std = torch.sqrt((((energy - mean) * w) ** 2).sum(1, keepdim=True) / w.sum(1, keepdim=True) + 1e-6)
        keep = ((energy - mean) / std > -3.0).repeat_interleave(hop, dim=1)[:, :n_samples]
        return audio * keep, lengths


class SensitiveToneEncoder(ToneEncoder):
    """Any sound at all is read (no absolute loudness floor); optionally the first letter of each window is
    emitted on its first frame, as a model trained on trimmed utterances does whatever the lead-in."""

    loud_level = 1e-3
    first_on_frame0 = False

    def forward(self, audio, lengths):
        lp, n = super().forward(audio, lengths)
        if self.first_on_frame0:
            best = lp.argmax(-1)
            for row in range(lp.shape[0]):
                frames = torch.nonzero(best[row, : int(n[row])]).flatten()
                if len(frames):
                    f0 = int(frames[0])
                    run = f0
                    while run < int(n[row]) and best[row, run] == best[row, f0]:
                        run += 1
                    token = lp[row, f0].clone()
                    lp[row, f0:run] = lp[row, 0]  # the first letter's own frames become blank ...
                    lp[row, 0] = token  # ... and it is emitted at the window's start
        return lp, n


def sensitive_model(first_on_frame0: bool = False) -> LoadedModel:
    tok = CharTokenizer()
    model = ToneModel(len(tok))
    model.features = NormalisingToneFeatures()
    model.encoder = SensitiveToneEncoder(len(tok))
    model.encoder.first_on_frame0 = first_on_frame0
    return LoadedModel(model, tok, {})


def _noise(seconds: float, rms: float, seed: int) -> np.ndarray:
    return (rms * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_energy_detector_hears_no_speech_in_coloured_noise():
    """White, pink and brown noise at three levels: steady above 250 Hz, so no speech (brown noise swings by
    15-20 dB frame to frame below it, and was called speech); speech-like bursts in pink noise still are."""
    from asr.inference.segmentation import make_vad

    vad = make_vad("energy", sensitive_model().model)
    rng = np.random.default_rng(0)
    for beta in (0.0, 1.0, 2.0):
        for level in (0.001, 0.01, 0.1):
            spectrum = np.fft.rfft(rng.standard_normal(5 * SR))
            f = np.fft.rfftfreq(5 * SR)
            f[0] = f[1]
            x = np.fft.irfft(spectrum * f ** (-beta / 2), n=5 * SR)
            x = (level * x / x.std()).astype(np.float32)
            assert vad.speech_probabilities([x]).max() < 0.5, (beta, level)
    audio, _ = say("dial nine four two", CharTokenizer())
    x = np.concatenate([np.zeros(SR, np.float32), audio, np.zeros(SR, np.float32)])
    spectrum = np.fft.rfft(rng.standard_normal(len(x)))
    f = np.fft.rfftfreq(len(x))
    f[0] = f[1]
    noise = np.fft.irfft(spectrum / np.sqrt(f), n=len(x))
    probs = vad.speech_probabilities([x + 0.01 * noise / noise.std()])
    speech = probs >= 0.5
    assert speech[int(1.1 * 100) : int((1 + len(audio) / SR - 0.1) * 100)].mean() > 0.9 and not speech[:90].any()


def test_silence_and_white_noise_give_empty_transcripts(tmp_path):
    """2 s of digital silence and 5 s of white noise: the detector finds no speech, so no window reaches the
    model (this model turns any sound into letters; the real ones did: "le oleleln", a 27-word sentence)."""
    sf.write(tmp_path / "silence.wav", np.zeros(2 * SR, np.float32), SR)
    sf.write(tmp_path / "white.wav", _noise(5.0, 0.1, 0), SR)
    sf.write(tmp_path / "faint.wav", _noise(5.0, 0.001, 1), SR)
    files = [str(tmp_path / n) for n in ("silence.wav", "white.wav", "faint.wav")]
    gated = list(Transcriber(sensitive_model()).run(files))
    assert [(r.text, r.segments, r.error) for r in gated] == [("", [], None)] * 3
    assert [r.duration for r in gated] == [2.0, 5.0, 5.0]
    # the same model without the gate hears words in the noise: the test can fail
    ungated = list(Transcriber(sensitive_model(), vad="none").run(files))
    assert ungated[0].text == "" and ungated[1].text and ungated[2].text


@pytest.mark.parametrize("padding", ["silence", "noise"])
def test_clip_with_padding_gives_the_clips_own_text(tmp_path, padding):
    """1.5 s of silence or faint noise (-40 dB) on each side of each clip: the transcript is the clip's own,
    because the window is trimmed to the speech and normalised by the speech frames."""
    tok = CharTokenizer()
    rng = np.random.default_rng(3)
    texts = sentences(6, rng)
    plain, padded = [], []
    for i, text in enumerate(texts):
        audio, _ = say(text, tok)
        sf.write(tmp_path / f"clip{i}.wav", audio, SR)
        side = np.zeros(int(1.5 * SR), np.float32) if padding == "silence" else None
        if side is None:
            x = np.concatenate([np.zeros(int(1.5 * SR), np.float32), audio, np.zeros(int(1.5 * SR), np.float32)])
            x = x + _noise(len(x) / SR, 0.003, i)  # 40 dB below the loud tones
        else:
            x = np.concatenate([side, audio, side])
        sf.write(tmp_path / f"padded{i}.wav", x, SR)
        plain.append(str(tmp_path / f"clip{i}.wav"))
        padded.append(str(tmp_path / f"padded{i}.wav"))
    tr = Transcriber(sensitive_model(), word_timestamps=True)
    assert [t.text for t in tr.run(plain)] == texts
    results = list(tr.run(padded))
    assert [t.text for t in results] == texts
    for t, text in zip(results, texts):
        (seg,) = t.segments
        assert 1.5 - 0.15 <= seg.start <= 1.5 + 0.05 and seg.end <= t.duration - 1.5 + 0.15
        assert 0.0 <= seg.no_speech_prob < 0.2
    if padding == "noise":  # without the gate the noise becomes letters
        ungated = [t.text for t in Transcriber(sensitive_model(), vad="none").run(padded)]
        assert all(u != text for u, text in zip(ungated, texts))


def test_first_word_starts_where_the_speech_does(tmp_path):
    """A model that emits its first letter on a window's first frame put every first word at 0.00 s of a
    clip with a lead-in; the start is moved to where the detector's speech begins (inside the word's span)."""
    tok = CharTokenizer()
    text = "dial nine four two"
    audio, starts = say(text, tok)
    lead = 0.8
    sf.write(tmp_path / "lead.wav", np.concatenate([np.zeros(int(lead * SR), np.float32), audio]), SR)
    (t,) = Transcriber(sensitive_model(first_on_frame0=True), word_timestamps=True).run([str(tmp_path / "lead.wav")])
    assert t.text == text
    words = t.segments[0].words
    assert [w.word for w in words] == text.split()
    errors = [w.start - (lead + s) for w, (_, s) in zip(words, starts)]
    assert max(abs(e) for e in errors) <= 1.5 * FRAME / SR, errors
    assert t.segments[0].start == words[0].start


def test_snap_starts_to_speech_moves_only_starts_in_pauses():
    from asr.decoding.alignment import Word
    from asr.inference.transcribe import snap_starts_to_speech

    words = [Word("a", 0.0, 0.5, 1.0), Word("b", 0.6, 0.9, 1.0), Word("c", 1.0, 1.1, 1.0), Word("d", 1.2, 1.6, 1.0)]
    regions = [(0.3, 0.95), (1.3, 2.0)]
    out = snap_starts_to_speech(words, regions)
    # a: in the lead-in, moved to the onset; b: inside speech, kept; c: in a pause with no onset inside it, kept;
    # d: starts in the pause, its speech begins at 1.3
    assert [w.start for w in out] == [0.3, 0.6, 1.0, 1.3]


def test_trimmed_windows_of_short_files():
    cfg = SegmentationConfig(trim_pad_seconds=0.1)
    probs = np.zeros(300, np.float32)  # 3 s in 10-ms frames
    probs[100:180] = 0.9
    probs[200:220] = 0.9  # a pause of 0.2 s inside is kept in the window
    (w,) = plan_windows(probs, 0.01, 3 * SR, SR, cfg, grid=FRAME)
    assert w.start % FRAME == 0 and 0.9 * SR - FRAME < w.start <= 0.9 * SR and abs(w.end - 2.3 * SR) <= 1
    assert plan_windows(np.zeros(300, np.float32), 0.01, 3 * SR, SR, cfg, FRAME) == []
    probs[:] = 0.9  # speech to the edges: the whole file, as utterances always went
    assert plan_windows(probs, 0.01, 3 * SR, SR, cfg, FRAME) == [Window(0, 3 * SR)]
    short = np.zeros(300, np.float32)
    short[20:280] = 0.9  # a lead-in and a tail of 0.2 s: kept whole, as training utterances have them
    assert plan_windows(short, 0.01, 3 * SR, SR, cfg, FRAME) == [Window(0, 3 * SR)]
    short[250:] = 0.0  # a 0.5-s tail: cut to the margin, the 0.2-s lead-in kept
    (w,) = plan_windows(short, 0.01, 3 * SR, SR, cfg, FRAME)
    assert w.start == 0 and abs(w.end - 2.6 * SR) <= 1
    with pytest.raises(ValueError, match="trimming margin"):
        SegmentationConfig(trim_pad_seconds=-0.1)


def test_no_speech_probability_from_the_blank_posterior():
    from asr.decoding.alignment import no_speech_probability

    v = 5
    silent = np.full((40, v), np.log(0.01 / (v - 1)))
    silent[:, 0] = np.log(0.99)
    assert no_speech_probability(silent) == pytest.approx(0.99)
    sure = silent.copy()
    sure[[5, 6, 20], :] = np.log(0.01 / (v - 1))
    sure[[5, 6], 1], sure[20, 2] = np.log(0.99), np.log(0.99)  # two letters, the model sure of both
    assert no_speech_probability(torch.from_numpy(sure)) < 0.01
    weak = silent.copy()
    weak[10] = np.log([0.45, 0.5, 0.03, 0.01, 0.01])  # one letter that barely beats blank
    assert no_speech_probability(weak) == pytest.approx(0.45)
    assert no_speech_probability(np.zeros((0, v))) == 1.0
