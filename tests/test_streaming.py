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


def tiny_model(cell="lstm", subsampling=3, bidirectional=False, normalize="global", seed=0) -> LoadedModel:
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
    )
    model = ASRModel(dims, FeatureConfig(n_mels=20, normalize=normalize), compute_filterbank=False)
    with torch.no_grad():  # a filterbank and statistics that are not the trivial ones
        model.features.mel_fb.copy_(torch.rand_like(model.features.mel_fb) * 0.05)
        model.features.global_mean.normal_()
        model.features.global_std.uniform_(0.5, 2.0)
        model.encoder.head.weight.mul_(20)  # confident outputs: text that differs from frame to frame
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


@pytest.mark.parametrize("cell,subsampling", [("rnn", 1), ("gru", 2), ("lstm", 3), ("lstm", 4), ("gru", 3)])
def test_stream_equals_offline_for_any_chunking(cell, subsampling):
    loaded = tiny_model(cell, subsampling)
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


def test_partial_results_are_offline_best_path_of_the_frames_so_far():
    loaded = tiny_model("lstm", 3)
    audio = bursts((1.0,), seed=3)
    ref_lp, _ = offline(loaded, audio)
    partials, final = stream(StreamingRecognizer(loaded), audio, [1600] * 20)
    assert [p.frames for p in partials] == sorted(p.frames for p in partials)
    for p in partials:
        # Output frames wait only for the half window and one conv frame per layer (2 layers x 10 ms here)
        assert p.frames >= loaded.model.output_lengths(torch.tensor(p.samples)).item() - 2
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
    lines = capsys.readouterr().out.splitlines()
    ref_text = offline(tiny_model("lstm", 3), audio)[1]
    assert len(lines) >= 2 and lines[-1] == ref_text  # partial lines, then the final text


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
    assert with_lm[:-1] == greedy[:-1]  # partial results stay best path
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
    assert "pip install 'asr[mic]'" in capsys.readouterr().err


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
