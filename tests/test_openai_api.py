"""`asr serve`'s OpenAI-shaped endpoint, POST /v1/audio/transcriptions, through a plain multipart client."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from test_server import random_model, wav_bytes  # noqa: E402

from asr.model.file import load_model  # noqa: E402
from asr.serving.server import Limits, Recognizer, create_app  # noqa: E402

ROUTE = "/v1/audio/transcriptions"
RESULT = {  # what `asr transcribe --format json` gives, for the shapes' sake (a random model says nothing useful)
    "path": "a.wav",
    "text": "call me at six thirty",
    "duration": 3.2,
    "segments": [
        {
            "start": 0.1,
            "end": 1.0,
            "text": "call me",
            "words": [
                {"word": "call", "start": 0.1, "end": 0.5, "confidence": 0.9},
                {"word": "me", "start": 0.6, "end": 1.0, "confidence": 0.8},
            ],
        },
        {
            "start": 1.5,
            "end": 3.0,
            "text": "at six thirty",
            "no_speech_prob": 0.125,
            "words": [
                {"word": "at", "start": 1.5, "end": 1.7, "confidence": 1.0},
                {"word": "six", "start": 1.9, "end": 2.3, "confidence": 0.5},
                {"word": "thirty", "start": 2.4, "end": 3.0, "confidence": 0.7},
            ],
        },
    ],
}


class FixedRecognizer(Recognizer):
    """Decodes and checks the upload as the server does, then answers RESULT; counts its calls."""

    calls = 0

    def transcribe(self, data, name):
        FixedRecognizer.calls += 1
        super().transcribe(data, name)
        return {**RESULT, "path": name}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return random_model(tmp_path_factory.mktemp("openai") / "model.pt")


@pytest.fixture(scope="module")
def client(model_path):
    return TestClient(create_app(Recognizer(load_model(model_path))))


@pytest.fixture(scope="module")
def fixed(model_path):
    return TestClient(create_app(FixedRecognizer(load_model(model_path))))


def ask(client, data: bytes | None = None, name: str = "a.wav", **fields):
    files = None if data is None else {"file": (name, data, "audio/wav")}
    return client.post(ROUTE, data={"model": "whisper-1", **fields}, files=files)


def test_json_is_the_text_of_v1_transcribe(client):
    data = wav_bytes(1.5, rate=22050)
    ours = client.post("/v1/transcribe", files={"file": ("a.wav", data, "audio/wav")}).json()
    r = ask(client, data)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"text": ours["text"]}


@pytest.mark.parametrize("fmt, media", [("text", "text/plain"), ("srt", "application/x-subrip"), ("vtt", "text/vtt")])
def test_text_and_subtitles_are_those_of_v1_transcribe(client, fmt, media):
    data = wav_bytes(1.0, seed=3)
    ours = client.post("/v1/transcribe", params={"format": fmt}, files={"file": ("a.wav", data, "audio/wav")})
    r = ask(client, data, response_format=fmt)
    assert r.status_code == 200 and r.headers["content-type"].startswith(media) and r.text == ours.text


def test_verbose_json_has_openais_keys_and_segments_by_default(fixed):
    r = ask(fixed, wav_bytes(1.0), response_format="verbose_json", language="en")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"task", "language", "duration", "text", "segments"}
    assert body["task"] == "transcribe" and body["language"] == "en" and body["duration"] == 3.2
    assert body["text"] == RESULT["text"]
    first, second = body["segments"]
    keys = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio"}
    assert set(first) == keys | {"no_speech_prob"}
    assert (first["id"], first["start"], first["end"], first["text"]) == (0, 0.1, 1.0, "call me")
    assert (second["id"], second["seek"]) == (1, 150)
    assert first["avg_logprob"] == pytest.approx((np.log(0.9) + np.log(0.8)) / 2, abs=1e-4)
    assert first["temperature"] == 0.0 and first["compression_ratio"] > 0
    assert (first["no_speech_prob"], second["no_speech_prob"]) == (0.0, 0.125)  # the segment's own, where it has one


def test_timestamp_granularities_choose_words_segments_or_both(fixed):
    words = ask(fixed, wav_bytes(1.0), response_format="verbose_json", **{"timestamp_granularities[]": "word"}).json()
    assert "segments" not in words
    assert words["words"][:2] == [{"word": "call", "start": 0.1, "end": 0.5}, {"word": "me", "start": 0.6, "end": 1.0}]
    assert [w["word"] for w in words["words"]] == RESULT["text"].split()
    both = ask(
        fixed, wav_bytes(1.0), response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]}
    ).json()
    assert len(both["segments"]) == 2 and len(both["words"]) == 5
    # granularities only shape verbose_json, as OpenAI documents; json stays {"text"}
    plain = ask(fixed, wav_bytes(1.0), **{"timestamp_granularities[]": "word"}).json()
    assert plain == {"text": RESULT["text"]}


def test_language_defaults_to_the_models_or_unknown(fixed):
    body = ask(fixed, wav_bytes(1.0), response_format="verbose_json").json()
    assert body["language"] == "unknown"  # the random model's metadata names none


def error_of(r, status: int, param=None) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param
    return err["message"]


def test_bad_fields_are_openai_errors_before_any_inference(fixed):
    FixedRecognizer.calls = 0
    assert "verbose_json" in error_of(ask(fixed, wav_bytes(), response_format="tsv"), 400, "response_format")
    message = error_of(
        ask(fixed, wav_bytes(), **{"timestamp_granularities[]": "char"}), 400, "timestamp_granularities[]"
    )
    assert "'char'" in message
    assert "WS /v1/stream" in error_of(ask(fixed, wav_bytes(), stream="true"), 400, "stream")
    assert FixedRecognizer.calls == 0


def test_missing_or_bad_audio_is_a_400_naming_it(fixed):
    assert "field named 'file'" in error_of(ask(fixed, None), 400, "file")
    assert "not a readable audio file" in error_of(ask(fixed, b"not audio", name="x.mp3"), 400, "file")
    r = fixed.post(ROUTE, json={"file": "a.wav"})
    assert "multipart/form-data" in error_of(r, 400, "file")


def test_the_limits_of_v1_transcribe_hold(model_path):
    client = TestClient(create_app(Recognizer(load_model(model_path)), Limits(max_upload_mb=0.05, max_duration=1.0)))
    assert "limit of 0.05 MB" in error_of(ask(client, wav_bytes(3.0)), 413, "file")
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000 * 2, dtype=np.int16), 8000, format="WAV", subtype="PCM_16")  # 2 s, 32 kB
    assert "at most 1 s" in error_of(ask(client, buf.getvalue()), 413, "file")


def test_the_endpoint_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"][ROUTE]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"file", "model", "response_format", "timestamp_granularities[]"} <= set(body["properties"])
