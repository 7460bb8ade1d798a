"""Word alignment on CTC posteriors: synthetic spikes with known times, edge cases, and a real forward pass."""

import numpy as np
import pytest
import torch

from asr.data.tokenizer import CharTokenizer
from asr.decoding.alignment import AlignmentError, align_words, ctc_viterbi

TOK = CharTokenizer()


def spiky_log_probs(spikes: list[tuple[int, str]], n_frames: int, peak: float = 0.9) -> torch.Tensor:
    """Blank everywhere except a ``peak``-probability spike of each character at its frame."""
    v = len(TOK)
    probs = np.full((n_frames, v), (1 - peak) / (v - 1))
    probs[:, 0] = peak
    for t, c in spikes:
        probs[t] = (1 - peak) / (v - 1)
        probs[t, TOK.vocab.index(c)] = peak
    return torch.from_numpy(np.log(probs)).float()


def test_spikes_give_known_word_times():
    # "hi yo": h@10 i@12 space@15 y@20 o@21, 0.03 s frames, segment starting at 5 s.
    lp = spiky_log_probs([(10, "h"), (12, "i"), (15, " "), (20, "y"), (21, "o")], n_frames=30)
    words = align_words(lp, "Hi, yo!", TOK, frame_seconds=0.03, offset=5.0)
    assert [w.word for w in words] == ["hi", "yo"]
    assert words[0].start == pytest.approx(5.0 + 10 * 0.03) and words[0].end == pytest.approx(5.0 + 13 * 0.03)
    assert words[1].start == pytest.approx(5.0 + 20 * 0.03) and words[1].end == pytest.approx(5.0 + 22 * 0.03)
    assert all(w.confidence == pytest.approx(0.9, abs=1e-4) for w in words)


def test_confidence_drops_where_the_model_doubts():
    lp = spiky_log_probs([(3, "a"), (6, " "), (9, "b")], n_frames=12)
    lp[9] = torch.log(torch.full((len(TOK),), 1.0 / len(TOK)))  # "b" is no more likely than anything
    words = align_words(lp, "a b", TOK, 0.03)
    assert words[0].confidence > 0.8 and words[1].confidence < 0.1


def test_doubled_letters_need_a_blank_between():
    lp = spiky_log_probs([(2, "l"), (4, "l")], n_frames=6)
    path = ctc_viterbi(lp.numpy(), np.array([TOK.vocab.index("l")] * 2))
    assert path[2] == 0 and path[4] == 1 and path[3] == -1


def test_empty_or_unalignable_text_gives_no_words():
    lp = spiky_log_probs([], n_frames=5)
    assert align_words(lp, "", TOK, 0.03) == []
    assert align_words(lp, "  ?! ", TOK, 0.03) == []
    assert align_words(lp, "éé", TOK, 0.03) == []


def test_text_too_long_for_the_frames_is_a_clear_error():
    lp = spiky_log_probs([], n_frames=4)
    # 5 characters, and the doubled "ll" needs a blank between: 6 frames.
    with pytest.raises(AlignmentError, match="needs at least 6 frames .5 characters. but the audio has only 4"):
        align_words(lp, "hello", TOK, 0.03)
    assert len(align_words(lp, "hey", TOK, 0.03)) == 1


def test_zero_length_segment_with_text_is_an_error_and_without_is_empty():
    lp = torch.zeros(0, len(TOK))
    assert align_words(lp, "", TOK, 0.03) == []
    with pytest.raises(AlignmentError):
        align_words(lp, "a", TOK, 0.03)


def test_characters_outside_the_vocabulary_are_skipped_not_lost():
    lp = spiky_log_probs([(2, "a"), (5, " "), (8, "b")], n_frames=12)
    words = align_words(lp, "a café b", TOK, 0.03)
    # "café" keeps its place; its in-vocabulary letters "caf" are aligned (on low-probability frames).
    assert [w.word for w in words] == ["a", "café", "b"]
    assert words[0].start <= words[1].start <= words[2].start
    words = align_words(lp, "a éé b", TOK, 0.03)
    assert [w.word for w in words] == ["a", "éé", "b"]
    assert words[1].start == words[1].end == words[0].end and words[1].confidence == 0.0


def test_real_forward_pass_gives_monotonic_in_range_times():
    from asr.decoding.greedy import greedy_decode
    from asr.inference.formats import subtitle_cues
    from asr.model.features import FeatureConfig
    from asr.model.network import ASRModel, ModelDimensions

    torch.manual_seed(0)
    model = ASRModel(
        ModelDimensions(vocab_size=len(TOK), hidden_size=16, num_layers=1, subsampling=3, conv_channels=4),
        FeatureConfig(),
        compute_filterbank=False,
    ).eval()
    with torch.no_grad():  # any non-negative filterbank will do, and librosa's import costs seconds
        model.features.mel_fb.copy_(torch.rand_like(model.features.mel_fb))
    assert model.frame_seconds == pytest.approx(0.03)
    audio = torch.randn(1, 16000 * 2) * 0.1
    with torch.inference_mode():
        log_probs, lengths = model(audio, torch.tensor([audio.shape[1]]))
    lp = log_probs[0, : int(lengths[0])]
    n_frames = lp.shape[0]
    offset = 12.5
    for text in ("turn on the kitchen lights", greedy_decode(log_probs, lengths, TOK)[0]):
        words = align_words(lp, text, TOK, model.frame_seconds, offset=offset)
        assert [w.word for w in words] == text.split()
        for a, b in zip(words, words[1:]):
            assert a.end <= b.start  # words never overlap and keep their order
        for w in words:
            assert offset <= w.start < w.end <= offset + n_frames * model.frame_seconds + 1e-9
            assert 0.0 <= w.confidence <= 1.0
    result = {
        "path": "x.wav",
        "text": "turn on the kitchen lights",
        "duration": 2.0,
        "segments": [
            {
                "start": offset,
                "end": words[-1].end,
                "text": "turn on the kitchen lights",
                "words": [
                    w.to_dict() for w in align_words(lp, "turn on the kitchen lights", TOK, model.frame_seconds, offset)
                ],
            }
        ],
    }
    cues = subtitle_cues(result)
    assert cues and cues[0].start >= offset


def test_long_segment_aligns_every_word_at_its_spikes():
    # 300 states and more (a 20-s segment's worth of text): the back-trace must not overflow.
    words = [f"{a}{b}" for a in "abcdefgh" for b in "xyz"]  # 24 two-letter words, 71 labels with spaces
    text = " ".join(words)
    spikes, expected, t = [], [], 3
    for w in words * 3:
        expected.append(t)
        spikes += [(t, w[0]), (t + 2, w[1]), (t + 4, " ")]
        t += 7
    lp = spiky_log_probs(spikes[:-1], n_frames=t + 3)
    got = align_words(lp, " ".join([text] * 3), TOK, 0.03)
    assert [round(w.start / 0.03) for w in got] == expected
    assert [round(w.end / 0.03) for w in got] == [e + 3 for e in expected]


def test_word_pieces_align_to_their_words():
    """BPE: no space label; each word is its own pieces, the first marked as a word start."""
    from asr.data.tokenizer import BPETokenizer

    tok = BPETokenizer.train(["go back six steps", "put the ball back", "six balls"] * 10, vocab_size=24)
    pieces = [tok.word_ids(w) for w in ("six", "steps")]
    spikes = {10 + 2 * i: p for i, p in enumerate(pieces[0])} | {30 + 2 * i: p for i, p in enumerate(pieces[1])}
    probs = np.full((45, len(tok)), 0.1 / (len(tok) - 1))
    probs[:, 0] = 0.9
    for t, p in spikes.items():
        probs[t] = 0.1 / (len(tok) - 1)
        probs[t, p] = 0.9
    words = align_words(torch.from_numpy(np.log(probs)).float(), "Six steps", tok, frame_seconds=0.06)
    assert [w.word for w in words] == ["six", "steps"]
    last = 10 + 2 * (len(pieces[0]) - 1)  # the frame of the word's last piece
    assert words[0].start == pytest.approx(10 * 0.06) and words[0].end == pytest.approx((last + 1) * 0.06)
    assert words[1].start == pytest.approx(30 * 0.06)
    assert all(w.confidence == pytest.approx(0.9, abs=1e-4) for w in words)
