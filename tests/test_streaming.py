"""Streaming recognition: a stream equals offline decoding for every cell, subsampling and chunking; models that
cannot stream exactly are decoded per segment; the `--stream` command and the inputs that go wrong.

Tiny random-weight models (no training, no librosa) keep this fast: equality does not need a model that
recognises anything, only one whose outputs depend on every stage's context.
"""

import io
import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main
from asr.data.tokenizer import CharTokenizer
from asr.decoding.greedy import greedy_decode
from asr.inference.streaming import (
    EnergyEndpointer,
    SegmentedRecognizer,
    StreamingError,
    StreamingRecognizer,
    open_stream,
)
from asr.model.features import FeatureConfig
from asr.model.file import LoadedModel, save_model
from asr.model.network import ASRModel, ModelDimensions

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(cell="lstm", subsampling=3, bidirectional=False, normalize="global", seed=0, lookahead=0) -> LoadedModel:
    torch.manual_seed(seed)
    tok = CharTokenizer()
    dims = ModelDimensions(
        vocab_size=len(tok),
        cell=cell,
        hidden_size=16,
        num_layers=2,
        bidirectional=bidirectional,
        subsampling=subsampling,
        conv_channels=4,
        dropout=0.0,
        lookahead_frames=lookahead,
    )
    model = ASRModel(dims, FeatureConfig(n_mels=20, normalize=normalize), compute_filterbank=False)
    with torch.no_grad():  # a filterbank and statistics that are not the trivial ones
        model.features.mel_fb.copy_(torch.rand_like(model.features.mel_fb) * 0.05)
        model.features.global_mean.normal_()
        model.features.global_std.uniform_(0.5, 2.0)
        model.encoder.head.weight.mul_(20)  # confident outputs: text that differs from frame to frame
        if lookahead:  # a look-ahead that mixes the future in, not the identity it starts as
            model.encoder.lookahead.weight.normal_()
    return LoadedModel(model.eval(), tok, {})


def bursts(seconds=(0.6, 0.5), gap=0.8, seed=0) -> np.ndarray:
    """Noise bursts (speech stand-ins) separated by silence."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, s in enumerate(seconds):
        if i:
            parts.append(np.zeros(int(gap * SR), dtype=np.float32))
        n = int(s * SR)
        envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 6 * np.pi, n))
        parts.append((rng.standard_normal(n) * 0.2 * envelope).astype(np.float32))
    return np.concatenate(parts)


def offline(loaded: LoadedModel, audio: np.ndarray) -> tuple[torch.Tensor, str]:
    with torch.no_grad():
        lp, lens = loaded.model(torch.from_numpy(audio)[None], torch.tensor([audio.shape[0]]))
    return lp[0], greedy_decode(lp, lens, loaded.tokenizer)[0]


def stream(recognizer, audio: np.ndarray, sizes) -> tuple[list, object]:
    partials, i = [], 0
    for size in sizes:
        if i >= audio.shape[0]:
            break
        partials.append(recognizer.accept(audio[i : i + size]))
        i += size
    assert i >= audio.shape[0]
    return partials, recognizer.finish()


@pytest.mark.parametrize(
    "cell,subsampling,lookahead",
    [("rnn", 1, 0), ("gru", 2, 0), ("lstm", 3, 0), ("lstm", 4, 0), ("gru", 3, 0)]
    # 8: conf_streaming.yaml's look-ahead, wider than some chunks' worth of frames
    + [("lstm", 3, 1), ("gru", 2, 2), ("lstm", 3, 4), ("rnn", 1, 4), ("lstm", 3, 8)],
)
def test_stream_equals_offline_for_any_chunking(cell, subsampling, lookahead):
    loaded = tiny_model(cell, subsampling, lookahead=lookahead)
    audio = bursts((0.9,), seed=1)[: int(1.23 * SR) + 37]  # not a whole number of hops
    ref_lp, ref_text = offline(loaded, audio)
    assert ref_text  # the comparison below is about something
    rng = np.random.default_rng(2)
    chunkings = {
        "10 ms": [160] * 1000,
        "2 s": [2 * SR],
        "odd 37 samples": [37] * 1000,
        "random 1 sample to 0.5 s": rng.integers(1, SR // 2, size=1000).tolist(),
    }
    for name, sizes in chunkings.items():
        _, final = stream(StreamingRecognizer(loaded, keep_log_probs=True), audio, sizes)
        assert final.log_probs.shape == ref_lp.shape, name
        torch.testing.assert_close(final.log_probs, ref_lp, atol=1e-4, rtol=0, msg=name)
        assert final.text == ref_text, name
        assert final.frames == ref_lp.shape[0] and final.samples == audio.shape[0]


@pytest.mark.parametrize("lookahead", [0, 2])
def test_partial_results_are_offline_best_path_of_the_frames_so_far(lookahead):
    loaded = tiny_model("lstm", 3, lookahead=lookahead)
    audio = bursts((1.0,), seed=3)
    ref_lp, _ = offline(loaded, audio)
    partials, final = stream(StreamingRecognizer(loaded), audio, [1600] * 20)
    assert [p.frames for p in partials] == sorted(p.frames for p in partials)
    for p in partials:
        # Output frames wait only for the half window, one conv frame per layer (2 layers x 10 ms here) and
        # the look-ahead's frames; and for nothing more.
        due = loaded.model.output_lengths(torch.tensor(p.samples)).item()
        assert due - 2 - lookahead <= p.frames <= due - lookahead
        prefix = greedy_decode(ref_lp[None, : p.frames], torch.tensor([p.frames]), loaded.tokenizer)[0]
        assert p.text == prefix
    assert final.log_probs is None  # not kept unless asked for


def test_int16_chunks_and_empty_chunks():
    loaded = tiny_model("gru", 2)
    audio = bursts((0.5,), seed=4)
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)
    r = StreamingRecognizer(loaded, keep_log_probs=True)
    r.accept(np.zeros(0, dtype=np.int16))
    r.accept(pcm[:1000])
    r.accept(np.zeros(0, dtype=np.float32))
    r.accept(pcm[1000:])
    ref_lp, ref_text = offline(loaded, pcm.astype(np.float32) / 32768)
    final = r.finish()
    torch.testing.assert_close(final.log_probs, ref_lp, atol=1e-4, rtol=0)
    assert final.text == ref_text
    with pytest.raises(StreamingError, match="after finish"):
        r.accept(pcm)
    r.reset()
    assert r.finish().text == "" and r.finish is not None


def test_empty_stream_gives_empty_text():
    for rec in (StreamingRecognizer(tiny_model()), SegmentedRecognizer(tiny_model(bidirectional=True))):
        final = rec.finish()
        assert (final.text, final.samples, final.frames) == ("", 0, 0)


def test_bad_chunks_are_refused():
    r = StreamingRecognizer(tiny_model())
    with pytest.raises(StreamingError, match="NaN"):
        r.accept(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(StreamingError, match="1-D"):
        r.accept(np.zeros((10, 2), dtype=np.float32))


def test_per_utterance_model_is_refused_by_the_exact_recognizer():
    loaded = tiny_model(normalize="per_utterance")
    with pytest.raises(StreamingError, match="per utterance.*features.normalize=global"):
        StreamingRecognizer(loaded)
    recognizer, note = open_stream(loaded)
    assert isinstance(recognizer, SegmentedRecognizer) and "per segment" in note


def test_bidirectional_model_streams_per_segment():
    loaded = tiny_model(bidirectional=True)
    with pytest.raises(StreamingError, match="bidirectional"):
        StreamingRecognizer(loaded)
    recognizer, note = open_stream(loaded)
    assert isinstance(recognizer, SegmentedRecognizer) and "bidirectional" in note
    audio = bursts((0.6, 0.5), gap=0.8, seed=5)
    first_end = int((0.6 + 0.8) * SR)
    partials, final = stream(recognizer, audio, [1600] * 100)
    # The pause closed the first segment while audio was still arriving: decoded before the stream ended.
    decoded_early = [p for p in partials if p.frames > 0]
    assert decoded_early and decoded_early[0].samples <= first_end
    assert len(recognizer.texts) == 2
    # Each segment is its speech and a margin either side, decoded as offline decoding of that audio would.
    spans = EnergyEndpointer(SR).push(audio)
    assert len(spans) == 1 and spans[0][0] == 0 and abs(spans[0][1] - 0.6 * SR) < 0.05 * SR
    first = offline(loaded, audio[max(0, spans[0][0] - recognizer.margin) : spans[0][1] + recognizer.margin])[1]
    assert recognizer.texts[0] == first and final.text.startswith(first)


# The command line


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "model.pt"
    loaded = tiny_model("lstm", 3)
    save_model(path, loaded.model, loaded.tokenizer)
    return path


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))


def test_cli_stream_file_prints_partials_then_final(model_file, tmp_path, capsys):
    audio = bursts((0.8,), seed=6)
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, SR, subtype="FLOAT")
    assert main(["transcribe", "--model", str(model_file), "--stream", str(wav), "--chunk-ms", "50"]) == 0
    out, err = capsys.readouterr()
    ref_text = offline(tiny_model("lstm", 3), audio)[1]
    assert out.splitlines() == [ref_text]  # one segment (no pause), as offline; partials only on a terminal
    assert err.splitlines()[0] == (
        "asr: streaming exactly; look-ahead 0 frames (0 ms added latency); segments close after 800 ms of pause"
    )
    assert main(["transcribe", "--model", str(model_file), "--stream", str(wav), "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) >= 3 and all("partial" in line for line in lines[:-2])
    assert lines[-2] == {"segment": ref_text, "text": ref_text, "start": 0.0, "end": 0.8, "reason": "end"}
    assert lines[-1] == {"final": ref_text, "time": 0.8}


def test_cli_stream_prints_a_line_per_segment_and_states_the_lookahead(tmp_path, capsys):
    loaded = tiny_model("rnn", 3, lookahead=4)
    save_model(tmp_path / "la4.pt", loaded.model, loaded.tokenizer)
    audio = bursts((0.6, 0.5, 0.4), gap=1.2, seed=10)
    wav = tmp_path / "three.wav"
    sf.write(wav, audio, SR, subtype="FLOAT")
    argv = ["transcribe", "--model", str(tmp_path / "la4.pt"), "--stream", str(wav)]
    assert main([*argv, "--endpoint-silence-ms", "500"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0] == (
        "asr: streaming exactly; look-ahead 4 frames of 30 ms (120 ms added latency); "
        "segments close after 500 ms of pause"
    )
    r = StreamingRecognizer(loaded, endpoint_silence_s=0.5)
    _, final = stream(r, audio, [1600] * 100)
    assert len(final.segments) >= 3 and out.splitlines() == [s.text for s in final.segments]
    assert main([*argv, "--endpoint-silence-ms", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [offline(loaded, audio)[1]] and "segments close never (one segment)" in err


def test_cli_stream_with_lm_decodes_the_final_text_with_it(model_file, tmp_path, capsys):
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.decoding.beam_search import BeamSearchDecoder, BeamSearchOptions
    from asr.decoding.ngram import build_kneser_ney, write_arpa

    lm = tmp_path / "word.arpa"  # searched through its lexicon: only its words can come out
    write_arpa(build_kneser_ney([s.split() for s in ["the cat sat", "a dog ran"] * 5], 2), lm)
    audio = bursts((0.8,), seed=6)
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, SR, subtype="FLOAT")
    argv = ["transcribe", "--model", str(model_file), "--stream", str(wav), "--format", "json"]
    assert main([*argv, "--lm", str(lm), "--beam-size", "8"]) == 0
    with_lm = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(argv) == 0
    greedy = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    partials = [[line for line in lines if "partial" in line] for lines in (with_lm, greedy)]
    assert partials[0] == partials[1] and partials[0]  # partial results stay best path
    loaded = tiny_model("lstm", 3)
    log_probs = offline(loaded, audio)[0]
    decoder = BeamSearchDecoder(loaded.tokenizer, lm, options=BeamSearchOptions(beam_size=8))
    assert with_lm[-1]["final"] == decoder(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]
    assert with_lm[-1]["final"] != greedy[-1]["final"]  # this random model's "j" is no word of the LM


def test_cli_stream_stdin_with_odd_byte_count(model_file, monkeypatch, capsys):
    pcm = np.clip(np.round(bursts((0.5,), seed=7) * 32768), -32768, 32767).astype("<i2")
    _stdin(monkeypatch, pcm.tobytes() + b"\x01")
    assert main(["transcribe", "--model", str(model_file), "--stream", "-", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    final = json.loads(out.splitlines()[-1])
    assert final["final"] == offline(tiny_model("lstm", 3), pcm.astype(np.float32) / 32768)[1]
    assert final["time"] == pytest.approx(pcm.shape[0] / SR, abs=1e-3)
    assert "odd trailing byte is ignored" in err


def test_cli_stream_empty_stdin(model_file, monkeypatch, capsys):
    _stdin(monkeypatch, b"")
    assert main(["transcribe", "--model", str(model_file), "--stream", "-"]) == 0
    assert capsys.readouterr().out == "\n"  # no partial, just the (empty) final line


def test_cli_stream_raw_pcm_at_another_rate_is_resampled(model_file, monkeypatch, capsys):
    pcm = (bursts((0.5,), seed=8)[::2] * 32767).astype("<i2")  # 8 kHz
    _stdin(monkeypatch, pcm.tobytes())
    assert main(["transcribe", "--model", str(model_file), "--stream", "-", "--rate", "8000", "--format", "json"]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert final["time"] == pytest.approx(pcm.shape[0] / 8000, abs=0.01)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--stream", "-", "--rate", "0"], "--rate 0: not a usable sample rate"),
        (["--stream", "a.wav", "b.wav"], "exactly one FILE"),
        (["--stream"], "exactly one FILE"),
        (["--stream", "missing.wav"], "missing.wav: file not found"),
        (
            ["--stream", "-", "--endpoint-silence-ms", "-5"],
            "--endpoint-silence-ms -5.0: must be 0 (never) or a positive",
        ),
    ],
)
def test_cli_stream_bad_arguments(model_file, argv, message, capsys):
    assert main(["transcribe", "--model", str(model_file), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_stream_bidirectional_model_says_per_segment(tmp_path, monkeypatch, capsys):
    loaded = tiny_model(bidirectional=True)
    save_model(tmp_path / "bi.pt", loaded.model, loaded.tokenizer)
    _stdin(monkeypatch, (bursts((0.4,)) * 32767).astype("<i2").tobytes())
    assert main(["transcribe", "--model", str(tmp_path / "bi.pt"), "--stream", "-"]) == 0
    err = capsys.readouterr().err
    assert "bidirectional" in err and "per segment" in err


def test_cli_mic_without_sounddevice(model_file, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    assert main(["transcribe", "--model", str(model_file), "--mic"]) == 2
    assert "pip install 'asr-rnn-ctc[mic]'" in capsys.readouterr().err


def test_cli_stream_interrupted_still_prints_final(model_file, monkeypatch, capsys):
    """Ctrl-C on a live stream (arecord, --mic) ends it: what was heard still gets its final line."""
    pcm = (bursts((0.6,), seed=9) * 32767).astype("<i2").tobytes()

    class Interrupted(io.RawIOBase):
        def __init__(self):
            self.sent = False

        def read1(self, n):
            if self.sent:
                raise KeyboardInterrupt
            self.sent = True
            return pcm

    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": Interrupted()})())
    assert main(["transcribe", "--model", str(model_file), "--stream", "-", "--format", "json"]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert final["time"] == pytest.approx(len(pcm) / 2 / SR)
    assert final["final"] == offline(tiny_model("lstm", 3), np.frombuffer(pcm, "<i2").astype(np.float32) / 32768)[1]


# Endpointing: segments closed at pauses. The tiny Elman RNN's best path is varied letters for the noise bursts and
# blank or one letter held through silence, as a trained model's would be.


def test_without_endpointing_the_stream_is_one_segment_equal_to_offline():
    loaded = tiny_model("rnn", 3)
    audio = bursts((0.6, 0.5), gap=1.2, seed=10)
    _, final = stream(StreamingRecognizer(loaded), audio, [1600] * 100)
    assert [(s.reason, s.start, s.end) for s in final.segments] == [("end", 0.0, audio.shape[0] / SR)]
    assert final.text == final.segments[0].text == offline(loaded, audio)[1]


@pytest.mark.parametrize("rule", ["blank", "energy"])
def test_a_pause_closes_a_segment_equal_to_offline_decoding_of_its_audio(rule):
    loaded = tiny_model("rnn", 3, lookahead=2)
    audio = bursts((0.6, 0.5), gap=1.2, seed=10)
    r = StreamingRecognizer(loaded, keep_log_probs=True, endpoint_silence_s=0.5, endpoint_rules=(rule,))
    partials, final = stream(r, audio, [1600] * 100)
    segments = final.segments
    assert [s.reason for s in segments] == [rule, "end"]
    assert [s for p in partials for s in p.closed] == segments[:1]  # reported once, by the call that closed it
    assert final.closed == segments[1:]
    # Closed in the pause, by the end of the chunk in which it had lasted 0.5 s: for the energy rule 0.5 s after
    # the burst; the best path's letters stop a few frames after the burst (the model's context), then 0.5 s.
    assert 0.6 + 0.5 <= segments[0].end <= 0.6 + 0.5 + (0.1 if rule == "energy" else 0.35)
    assert segments[1].start == segments[0].end and segments[1].end == audio.shape[0] / SR
    lps = []
    for s in segments:
        lp, text = offline(loaded, audio[round(s.start * SR) : round(s.end * SR)])
        assert s.text == text and text
        lps.append(lp)
    torch.testing.assert_close(final.log_probs, torch.cat(lps), atol=1e-4, rtol=0)
    assert final.text == " ".join(s.text for s in segments)
    # While the second segment is open, the partial text is the closed one's and then the open one's.
    after = [p for p in partials if p.samples > segments[0].end * SR and p.open_text]
    assert after and all(p.text == f"{segments[0].text} {p.open_text}" for p in after)


def test_no_pause_no_segment_and_the_longest_segment_is_cut():
    loaded = tiny_model("rnn", 3)
    audio = bursts((1.5,), seed=11)
    _, final = stream(StreamingRecognizer(loaded, endpoint_silence_s=0.8), audio, [1600] * 100)
    assert [s.reason for s in final.segments] == ["end"]
    _, final = stream(StreamingRecognizer(loaded, endpoint_silence_s=0.8, max_segment_s=0.6), audio, [1600] * 100)
    assert [s.reason for s in final.segments] == ["max length", "max length", "end"]
    assert [s.end for s in final.segments] == pytest.approx([0.6, 1.2, 1.5])


def test_a_stream_without_text_closes_nothing_and_restarts_quietly():
    loaded = tiny_model("rnn", 3)
    with torch.no_grad():
        loaded.model.encoder.head.bias[loaded.tokenizer.blank_id] = 1e4  # nothing but blanks
    audio = bursts((1.2, 1.0), gap=0.8, seed=12)
    r = StreamingRecognizer(loaded, keep_log_probs=True, endpoint_silence_s=0.5, max_segment_s=1.0)
    partials, final = stream(r, audio, [1600] * 40)
    assert not any(p.closed for p in partials)
    lps = [offline(loaded, audio[k * SR : (k + 1) * SR])[0] for k in range(3)]
    torch.testing.assert_close(final.log_probs, torch.cat(lps), atol=1e-4, rtol=0)  # each second afresh
    # Restarted at 1, 2 and 3 s (a fresh state: minutes of silence do not pile up in it), never reported.
    assert [(s.text, s.start, s.reason) for s in final.segments] == [("", 3.0, "end")]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"endpoint_silence_s": 0}, "endpoint silence must be a positive"),
        ({"endpoint_silence_s": float("nan")}, "endpoint silence must be a positive"),
        ({"endpoint_silence_s": 0.5, "endpoint_rules": ("vad",)}, "endpoint rules must be some of blank, energy"),
        ({"endpoint_silence_s": 0.5, "endpoint_rules": ()}, "endpoint rules must be some of"),
        ({"endpoint_silence_s": 0.5, "max_segment_s": 0}, "longest segment must be a positive"),
    ],
)
def test_bad_endpointing_is_refused(kwargs, message):
    with pytest.raises(StreamingError, match=message):
        StreamingRecognizer(tiny_model(), **kwargs)
