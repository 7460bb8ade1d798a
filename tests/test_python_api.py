"""The Python front door: ``asr.load_model(...).transcribe(...)`` (asr.inference.api), ``asr.transcribe``,
``asr.evaluate``, and the README's example, run as it stands."""

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import asr
from asr.errors import AudioError, UsageError

ROOT = Path(__file__).resolve().parent.parent
README_MARKER = "<!-- tests/test_python_api.py runs this block"


def test_import_asr_does_not_import_torch():
    code = (
        "import sys, asr; assert 'torch' not in sys.modules and 'lightning' not in sys.modules; print(asr.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == asr.__version__


def test_load_model_and_transcribe_are_the_api_functions():
    from asr.inference import api

    assert asr.load_model is api.load_model and asr.transcribe is api.transcribe and asr.Model is api.Model


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        asr.no_such_thing


@pytest.fixture(scope="module")
def model(trained_model):
    return asr.load_model(trained_model / "model.pt")


@pytest.fixture(scope="module")
def wav(tiny_corpus):
    from asr.data.manifest import read_manifest

    return read_manifest(tiny_corpus["test"])[0].audio_filepath


def test_a_loaded_model_is_a_model_on_the_auto_device(model, trained_model):
    from asr.model.file import LoadedModel

    assert isinstance(model, asr.Model) and isinstance(model, LoadedModel)
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert model.path == str((trained_model / "model.pt").resolve())
    assert inspect.signature(asr.load_model).parameters["device"].default == "auto"


def test_one_path_is_one_file_not_its_characters(model, wav):
    t = model.transcribe(wav)
    assert isinstance(t, asr.Transcript) and t.ok and t.path == wav and isinstance(t.text, str)
    assert asr.transcribe(model, wav).text == t.text
    assert asr.transcribe(model, Path(wav)).text == t.text
    from asr.inference.transcribe import transcribe  # the list-returning function evaluate uses

    assert [r.text for r in transcribe(model, wav)] == [t.text]


def test_arrays_tensors_and_bytes_give_the_file_result(model, wav):
    expected = model.transcribe(wav).text
    samples, rate = sf.read(wav, dtype="float32")
    assert model.transcribe(samples, sample_rate=rate).text == expected
    assert model.transcribe(torch.from_numpy(samples), sample_rate=rate).text == expected
    assert model.transcribe(Path(wav).read_bytes()).text == expected
    pcm = np.round(samples * 32767).astype(np.int16)
    assert isinstance(model.transcribe(pcm, sample_rate=rate).text, str)
    # another rate is resampled to the model's: the result has the recording's duration
    slow = model.transcribe(samples[::2].copy(), sample_rate=rate // 2)
    assert slow.duration == pytest.approx(len(samples) / rate, abs=0.01)
    results = model.transcribe([wav, samples, Path(wav).read_bytes()], sample_rate=rate)
    assert [r.path for r in results] == [wav, "array[1]", "bytes[2]"]
    assert [r.text for r in results] == [expected] * 3


def test_typed_results_with_word_times_by_default(model, wav):
    t = model.transcribe(wav)
    d = t.to_dict()
    assert set(d) == {"path", "text", "duration", "segments"} and d["duration"] > 0
    assert all(0 <= w.start <= w.end <= t.duration + 0.05 for w in t.words)
    assert [w.to_dict()["word"] for w in t.words] == [w["word"] for s in d["segments"] for w in s["words"]]
    bare = model.transcribe(wav, word_timestamps=False)
    assert bare.text == t.text and bare.words == []


def test_a_failed_recording_raises_alone_and_is_reported_in_a_list(model, wav, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF, but not really")
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        model.transcribe(str(tmp_path / "missing.wav"))
    with pytest.raises(AudioError, match="bytes: not a readable audio file"):
        model.transcribe(b"no audio here")
    with pytest.raises(AudioError, match="NaN"):
        model.transcribe(np.full(16000, np.nan, dtype=np.float32), sample_rate=16000)
    results = model.transcribe([str(bad), wav, np.zeros(0, dtype=np.float32)], sample_rate=16000)
    assert [r.ok for r in results] == [False, True, False]
    assert str(bad) in results[0].error and results[0].text is None
    assert results[0].to_dict()["error"] == results[0].error and results[0].to_dict()["segments"] == []
    assert "no audio samples" in results[2].error


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.transcribe(np.zeros(1600, dtype=np.float32)), "give its sample rate"),
        (lambda m: m.transcribe(np.zeros((2, 1600), dtype=np.float32), sample_rate=16000), "1-D"),
        (lambda m: m.transcribe(np.zeros(1600, dtype=np.uint8), sample_rate=16000), "dtype uint8"),
        (lambda m: m.transcribe(np.zeros(1600, dtype=np.float32), sample_rate=10), "sample_rate 10"),
        (lambda m: m.transcribe(3.5), "got float"),
        (lambda m: m.transcribe(["a.wav", 3]), r"audio\[1\]: expected a file path"),
        (lambda m: m.transcribe("a.wav", lm_weight=2.0), "lm_weight= needs lm="),
        (lambda m: m.transcribe("a.wav", decoder=object(), lm="lm.arpa"), "not both"),
        (lambda m: m.transcribe("a.wav", num_threads=0), "num_threads"),
    ],
)
def test_bad_arguments_are_one_line_errors(model, call, message):
    with pytest.raises(asr.ASRError, match=message):
        call(model)


def test_num_threads_holds_for_the_call_and_is_put_back(model, wav):
    from asr.decoding.greedy import GreedyDecoder

    seen = []

    class Recording(GreedyDecoder):
        def __call__(self, log_probs, lengths):
            seen.append(torch.get_num_threads())
            return super().__call__(log_probs, lengths)

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    model.transcribe(wav, num_threads=want, decoder=Recording(model.tokenizer))
    assert seen and set(seen) == {want} and torch.get_num_threads() == before


def test_the_python_defaults_are_the_cli_defaults():
    from asr.cli import build_parser

    args = build_parser().parse_args(["transcribe", "--model", "m.pt", "x.wav"])
    params = inspect.signature(asr.Model.transcribe).parameters
    assert params["max_segment_seconds"].default == args.max_segment_seconds
    assert params["vad"].default == args.vad
    assert params["max_batch_seconds"].default == args.max_batch_seconds
    assert params["no_speech_threshold"].default == args.no_speech_threshold
    assert params["word_timestamps"].default is True  # the CLI's json/srt/vtt carry word times too
    assert args.device == "auto"


def test_lm_options_by_keyword_build_the_cli_decoder_once(model, wav, tiny_corpus, tmp_path):
    pytest.importorskip("flashlight.lib.text")
    from asr.cli import main
    from asr.decoding.beam_search import BeamSearchDecoder

    lm = tmp_path / "lm.arpa"
    assert main(["lm", "build", str(tiny_corpus["train"]), "-o", str(lm), "--order", "2"]) == 0
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"lm_weight": 0.5, "word_score": 1.0}))
    decoder = model.decoder(lm, lm_params=params, beam_size=8)
    assert isinstance(decoder, BeamSearchDecoder)
    assert (decoder.options.lm_weight, decoder.options.word_score, decoder.options.beam_size) == (0.5, 1.0, 8)
    assert model.decoder(lm, lm_params=params, beam_size=8) is decoder  # loaded once
    t = model.transcribe(wav, lm=lm, lm_params=params, beam_size=8)
    words = set(lm.read_text().split())
    assert all(w in words for w in t.text.split())  # a word LM's lexicon search emits only its words


def test_hotwords_by_keyword_greedy_and_with_an_lm(model, wav, tiny_corpus, tmp_path):
    from asr.decoding.hotwords import HotwordDecoder

    assert isinstance(model.decoder(hotwords={"six": 5.0}), HotwordDecoder)
    assert isinstance(model.transcribe(wav, hotwords={"six": 5.0}).text, str)
    with pytest.raises(UsageError, match="lexicon= needs lm="):
        model.decoder(hotwords=["six"], lexicon="words.txt")
    pytest.importorskip("flashlight.lib.text")
    from asr.cli import main

    lm = tmp_path / "lm.arpa"
    assert main(["lm", "build", str(tiny_corpus["train"]), "-o", str(lm), "--order", "2"]) == 0
    boosted = model.decoder(lm, hotwords={"six": 2.0})
    assert boosted is model.decoder(lm, hotwords={"six": 2.0}) and boosted is not model.decoder(lm)
    assert isinstance(model.transcribe(wav, lm=lm, hotwords={"six": 2.0}).text, str)


def test_transcribe_and_evaluate_from_python(model, tiny_corpus):
    from asr.data.manifest import read_manifest

    utts = read_manifest(tiny_corpus["test"])
    results = model.transcribe([u.audio_filepath for u in utts])
    assert [r.path for r in results] == [u.audio_filepath for u in utts]
    assert all(r.ok and isinstance(r.text, str) for r in results)
    summary = asr.evaluate(model, tiny_corpus["test"]).summary()
    assert summary["num_utterances"] == len(utts) and summary["wer"] >= 0


def readme_python_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(README_MARKER) :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```", start)]


def test_the_readme_example_runs_as_written(trained_model, tiny_corpus, wav, tmp_path, monkeypatch, capsys):
    """The README's Python block, unedited, in a folder holding the files it names (the tiny model as
    exp/synth/model.pt, a.wav, an LM and its weights); missing.flac is missing on purpose."""
    pytest.importorskip("flashlight.lib.text")
    from asr.cli import main

    (tmp_path / "exp" / "synth").mkdir(parents=True)
    shutil.copy(trained_model / "model.pt", tmp_path / "exp" / "synth" / "model.pt")
    shutil.copy(wav, tmp_path / "a.wav")
    assert main(["lm", "build", str(tiny_corpus["train"]), "-o", str(tmp_path / "lm.arpa"), "--order", "2"]) == 0
    (tmp_path / "lm_params.json").write_text(json.dumps({"lm_weight": 1.0, "word_score": 0.0}))
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_block(), "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("a.wav ") and not lines[1].startswith("a.wav failed")
    assert lines[2] == "missing.flac failed: missing.flac: file not found"
    assert lines[3].startswith("{'path': 'a.wav', 'text': ") and "'segments': [" in lines[3]
