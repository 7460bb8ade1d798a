"""The Python front door: ``asr.load_model`` (lazy), ``asr.inference.transcribe.transcribe``, ``asr.evaluation.evaluate.evaluate``."""

import subprocess
import sys

import asr


def test_import_asr_does_not_import_torch():
    code = (
        "import sys, asr; assert 'torch' not in sys.modules and 'lightning' not in sys.modules; print(asr.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == asr.__version__


def test_load_model_is_the_library_function():
    from asr.model.file import load_model

    assert asr.load_model is load_model


def test_unknown_attribute_is_an_attribute_error():
    try:
        asr.no_such_thing
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_transcribe_and_evaluate_from_python(trained_model, tiny_corpus):
    from asr.data.manifest import read_manifest
    from asr.evaluation.evaluate import evaluate
    from asr.inference.transcribe import transcribe

    model = asr.load_model(trained_model / "model.pt")
    utts = read_manifest(tiny_corpus["test"])
    results = transcribe(model, [u.audio_filepath for u in utts], word_timestamps=True)
    assert [r.path for r in results] == [u.audio_filepath for u in utts]
    assert all(r.error is None and isinstance(r.text, str) for r in results)
    summary = evaluate(model, tiny_corpus["test"]).summary()
    assert summary["num_utterances"] == len(utts) and summary["wer"] >= 0
