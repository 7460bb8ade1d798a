"""`asr serve` in-process: the API, its limits and failure behaviour, the stream protocol, and the CLI entry."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from asr.data.tokenizer import CharTokenizer  # noqa: E402
from asr.errors import UsageError  # noqa: E402
from asr.model.features import FeatureConfig  # noqa: E402
from asr.model.file import load_model, save_model  # noqa: E402
from asr.model.network import ASRModel, ModelDimensions  # noqa: E402
from asr.serving.server import Limits, Recognizer, create_app, display_name  # noqa: E402


def random_model(path, bidirectional: bool = True) -> str:
    """A model file with random weights: it recognises nothing, and costs milliseconds to run."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(
        vocab_size=len(tokenizer), hidden_size=16, num_layers=1, conv_channels=4, bidirectional=bidirectional
    )
    features = FeatureConfig(normalize="per_utterance" if bidirectional else "global")
    save_model(path, ASRModel(dims, features), tokenizer)
    return str(path)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return random_model(tmp_path_factory.mktemp("serve") / "model.pt")


@pytest.fixture(scope="module")
def recognizer(model_path):
    return Recognizer(load_model(model_path))


def wav_bytes(
    seconds: float = 1.0, rate: int = 16000, fmt: str = "WAV", seed: int = 0, subtype=None, level: float = 0.1
) -> bytes:
    # noise that rises and falls like speech, loud at both ends: the voice detector sends it to the model whole
    # (steady noise is no speech to it, and would give an empty transcript without running the model)
    envelope = 0.05 + np.abs(np.cos(2 * np.pi * 3 * np.arange(int(seconds * rate)) / rate))
    audio = (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * level * envelope).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def post(client, data: bytes, name: str = "a.wav", **params):
    return client.post("/v1/transcribe", params=params, files={"file": (name, data, "audio/wav")})


class BlockingRecognizer(Recognizer):
    """Holds every transcription until ``release`` is set, so queue states can be built without timing races."""

    def __init__(self, loaded):
        super().__init__(loaded)
        self.release = threading.Event()
        self.calls = 0

    def transcribe(self, data, name):
        self.calls += 1
        assert self.release.wait(10), "test never released the recogniser"
        return super().transcribe(data, name)


async def wait_until(condition, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# --- the API -----------------------------------------------------------------------------------------------------


def test_transcribe_returns_the_json_of_asr_transcribe(recognizer, model_path, tmp_path, capsys):
    from asr.cli import main

    data = wav_bytes(1.5, rate=22050)
    (tmp_path / "a.wav").write_bytes(data)
    assert main(["transcribe", "--model", model_path, "--format", "json", str(tmp_path / "a.wav")]) == 0
    offline = json.loads(capsys.readouterr().out)
    r = post(TestClient(create_app(recognizer)), data, name="a.wav")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    result = r.json()
    assert result == {**offline, "path": "a.wav"}
    assert set(result) == {"path", "text", "duration", "segments"} and result["duration"] == 1.5
    words = [w for s in result["segments"] for w in s["words"]]
    assert " ".join(w["word"] for w in words) == result["text"]


def test_formats_srt_vtt_text(recognizer):
    from asr.inference.formats import write_result

    client = TestClient(create_app(recognizer))
    data = wav_bytes(1.0)
    result = post(client, data).json()
    for fmt, media in (("srt", "application/x-subrip"), ("vtt", "text/vtt"), ("text", "text/plain")):
        r = post(client, data, format=fmt)
        assert r.status_code == 200 and r.headers["content-type"].startswith(media)
        assert r.text == write_result(result, fmt)
    r = post(client, data, format="docx")
    assert r.status_code == 400 and "unknown format 'docx'" in r.json()["detail"]


def test_healthz_and_page(recognizer):
    client = TestClient(create_app(recognizer, Limits(max_duration=30)))
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["model"]["sample_rate"] == 16000 and h["limits"]["max_duration"] == 30
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert "'self'" in page.headers["content-security-policy"]
    for asset in ("/app.js", "/worklet.js", "/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http://127.0.0.1", "")  # nothing fetched from elsewhere


# --- limits -------------------------------------------------------------------------------------------------------


def test_upload_over_the_size_limit_is_413(recognizer):
    client = TestClient(create_app(recognizer, Limits(max_upload_mb=0.05)))
    r = post(client, wav_bytes(3.0))  # ~96 KB
    assert r.status_code == 413 and "limit of 0.05 MB" in r.json()["detail"]
    # A chunked body declares no length: it is counted as it arrives.
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()

    def chunks():
        yield head
        for _ in range(100):
            yield b"\0" * 4096

    r = client.post(
        "/v1/transcribe", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 413
    assert post(client, wav_bytes(0.5)).status_code == 200


def test_audio_over_the_duration_limit_is_413(recognizer):
    client = TestClient(create_app(recognizer, Limits(max_duration=2)))
    r = post(client, wav_bytes(3.0, fmt="FLAC"), name="long.flac")
    assert r.status_code == 413
    assert r.json()["detail"] == "long.flac: audio is 3.0 s long; this server accepts at most 2 s"
    assert post(client, wav_bytes(1.5)).status_code == 200


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "file is empty"),
        (b"RIFF\x00\x00garbage" * 10, "not a readable audio file"),
        (wav_bytes(0.5)[:44], "no audio samples"),
    ],
)
def test_bad_audio_is_400_naming_the_problem_and_the_server_stays_up(recognizer, data, expected):
    client = TestClient(create_app(recognizer))
    r = post(client, data, name="bad.wav")
    assert r.status_code == 400
    assert r.json()["detail"].startswith("bad.wav: ") and expected in r.json()["detail"]
    assert client.get("/healthz").status_code == 200
    assert post(client, wav_bytes(0.5)).status_code == 200


def test_nan_audio_and_malformed_requests_are_400(recognizer):
    client = TestClient(create_app(recognizer))
    buf = io.BytesIO()
    sf.write(buf, np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), 16000, format="WAV", subtype="FLOAT")
    r = post(client, buf.getvalue(), name="nan.wav")
    assert r.status_code == 400 and "NaN" in r.json()["detail"]
    r = client.post("/v1/transcribe", files={"audio": ("a.wav", wav_bytes(0.5))})
    assert r.status_code == 400 and "field named 'file'" in r.json()["detail"]
    r = client.post("/v1/transcribe", content=wav_bytes(0.5), headers={"content-type": "audio/wav"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["detail"]
    r = client.post("/v1/transcribe", files=[("file", ("a.wav", b"1")), ("file", ("b.wav", b"2"))])
    assert r.status_code == 400 and "malformed multipart" in r.json()["detail"]


def test_full_queue_gets_503_with_retry_after_and_admitted_requests_complete(model_path):
    recognizer = BlockingRecognizer(load_model(model_path))
    app = create_app(recognizer, Limits(max_concurrent=1, max_queue=1))
    pool = app.state.pool

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            send = lambda: client.post("/v1/transcribe", files={"file": ("a.wav", wav_bytes(0.5))})  # noqa: E731
            admitted = [asyncio.create_task(send()) for _ in range(2)]  # one running, one queued
            await wait_until(lambda: pool.admitted == 2, "two admitted requests")
            refused = await send()
            health = await client.get("/healthz")  # answered while the pool is busy
            recognizer.release.set()
            return refused, health, await asyncio.gather(*admitted)

    refused, health, done = asyncio.run(scenario())
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1 and "retry later" in refused.json()["detail"]
    assert health.status_code == 200 and health.json()["admitted"] == 2
    assert [r.status_code for r in done] == [200, 200]
    assert recognizer.calls == 2 and pool.admitted == 0


def test_request_timeout_is_504_and_a_timed_out_queued_request_never_runs(model_path):
    recognizer = BlockingRecognizer(load_model(model_path))
    app = create_app(recognizer, Limits(max_concurrent=1, max_queue=4, timeout=0.3))
    pool = app.state.pool

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            send = lambda: client.post("/v1/transcribe", files={"file": ("a.wav", wav_bytes(0.5))})  # noqa: E731
            results = await asyncio.gather(send(), send())  # the first runs and blocks, the second waits
            assert pool.admitted == 1 and recognizer.calls == 1  # the running one keeps its slot, the queued left
            recognizer.release.set()
            await wait_until(lambda: pool.admitted == 0, "the running job to end")
            return results, await send()

    results, after = asyncio.run(scenario())
    assert [r.status_code for r in results] == [504, 504]
    assert "timeout of 0.3 s" in results[0].json()["detail"]
    assert after.status_code == 200
    assert recognizer.calls == 2  # the timed-out queued request was skipped, not run late


def test_slow_upload_is_408(recognizer):
    app = create_app(recognizer, Limits(timeout=0.2))

    async def scenario():
        async def slow_body():
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            await asyncio.sleep(1.0)
            yield b"\r\n--b--\r\n"

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                "/v1/transcribe", content=slow_body(), headers={"content-type": "multipart/form-data; boundary=b"}
            )

    r = asyncio.run(scenario())
    assert r.status_code == 408 and "did not arrive within 0.2 s" in r.json()["detail"]


def test_nothing_a_client_sends_reads_or_writes_files(recognizer, tmp_path, monkeypatch):
    import tempfile

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where an upload spilled to disk would land
    monkeypatch.chdir(tmp_path)
    client = TestClient(create_app(recognizer, Limits(max_upload_mb=4)))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    big = wav_bytes(60.0, level=0.0)  # ~1.9 MB: past the multipart parser's default in-memory size
    for name in (str(tmp_path / "written.wav"), "../../written.wav", "..\\written.wav", "/etc/passwd"):
        r = post(client, big, name=name)
        assert r.status_code == 200
        assert r.json()["path"] == display_name(name) and "/" not in r.json()["path"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    for probe in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/app.js/../../server.py", "/server.py"):
        assert client.get(probe).status_code == 404


def test_cli_serve_loads_the_model_once_and_shares_it(model_path, monkeypatch):
    import uvicorn

    import asr.model.file
    from asr.cli import main

    loads, served = [], {}
    real_load = asr.model.file.load_model
    monkeypatch.setattr(asr.model.file, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave the test process's threads alone
    assert main(["serve", "--model", model_path, "--port", "8123", "--max-concurrent", "3"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    app = served["app"]
    client = TestClient(app, base_url="http://127.0.0.1:8123")  # the server's own name: its Host check passes
    for _ in range(3):
        assert post(client, wav_bytes(0.5)).status_code == 200
    assert len(loads) == 1 and app.state.pool.capacity == 3 + 32
    assert client.get("/healthz").json()["decoder"] == {"name": "greedy", "stream_partials": "greedy"}


def test_cli_serve_refuses_bad_limits(model_path, capsys):
    from asr.cli import main

    assert main(["serve", "--model", model_path, "--max-concurrent", "0"]) == 2
    assert "max_concurrent (--max-concurrent) must be >= 1" in capsys.readouterr().err


# --- the stream protocol ---------------------------------------------------------------------------------------------


class _EchoStream:
    """A stand-in recogniser: its text is the number of samples received so far, so each step is checkable."""

    def __init__(self):
        self.samples = 0

    def accept(self, samples):
        self.samples += len(samples)
        return type("P", (), {"text": str(self.samples // 1000)})()

    def finish(self):
        return type("F", (), {"text": f"final {self.samples}"})()


class EchoRecognizer(Recognizer):
    streaming_mode = "segmented"

    def streaming_note(self):
        return "per segment (test)"

    def open_stream(self):
        return _EchoStream()


def test_stream_protocol_partial_and_final(model_path):
    client = TestClient(create_app(EchoRecognizer(load_model(model_path))))
    with client.websocket_connect("/v1/stream?encoding=s16le") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["mode"] == "segmented" and ready["note"] == "per segment (test)"
        ws.send_bytes(np.zeros(1500, dtype="<i2").tobytes())
        assert ws.receive_json() == {"type": "partial", "text": "1", "seconds": 0.094}
        ws.send_bytes(np.zeros(100, dtype="<i2").tobytes())  # text unchanged: no message
        ws.send_bytes(np.zeros(400, dtype="<i2").tobytes())
        assert ws.receive_json()["text"] == "2"
        ws.send_text(json.dumps({"type": "end"}))
        final = ws.receive_json()
        assert final["type"] == "final" and final["text"] == "final 2000" and final["mode"] == "segmented"
        assert final["stopped"] is None


def test_stream_resamples_and_stops_at_the_duration_limit(model_path):
    client = TestClient(create_app(EchoRecognizer(load_model(model_path)), Limits(max_duration=1.0)))
    with client.websocket_connect("/v1/stream?rate=8000&encoding=f32le") as ws:
        assert ws.receive_json()["sample_rate"] == 8000
        ws.send_bytes(np.zeros(12000, dtype="<f4").tobytes())  # 1.5 s at 8 kHz: only 1 s is taken
        messages = [ws.receive_json(), ws.receive_json()]
    final = messages[-1]
    assert final["type"] == "final" and "limit of 1 s" in final["stopped"] and final["seconds"] == 1.0
    assert abs(int(final["text"].split()[1]) - 16000) <= 64  # 1 s at the model's 16 kHz


@pytest.mark.parametrize(
    "url, send, expected",
    [
        ("/v1/stream", b"\x00\x01\x02", "whole samples of 2 bytes"),
        ("/v1/stream?encoding=f32le", np.array([np.inf], dtype="<f4").tobytes(), "NaN or infinite"),
        ("/v1/stream", "hello", 'text messages must be {"type": "end"}'),
    ],
)
def test_stream_refuses_bad_input_with_a_message(model_path, url, send, expected):
    recognizer = EchoRecognizer(load_model(model_path))
    app = create_app(recognizer)
    client = TestClient(app)
    with client.websocket_connect(url) as ws:
        first = ws.receive_json()
        if send is not None:
            assert first["type"] == "ready"
            ws.send_bytes(send) if isinstance(send, bytes) else ws.send_text(send)
            first = ws.receive_json()
        assert first["type"] == "error" and expected in first["message"]
    assert app.state.pool.admitted == 0
    assert client.get("/healthz").status_code == 200


def test_streams_count_against_capacity(model_path):
    app = create_app(EchoRecognizer(load_model(model_path)), Limits(max_concurrent=1, max_queue=0))
    client = TestClient(app)
    with client.websocket_connect("/v1/stream") as first:
        assert first.receive_json()["type"] == "ready"
        with client.websocket_connect("/v1/stream") as second:
            refused = second.receive_json()
            assert refused["type"] == "error" and "server busy" in refused["message"]
        assert post(client, wav_bytes(0.5)).status_code == 503
    assert post(client, wav_bytes(0.5)).status_code == 200


@pytest.mark.parametrize("bidirectional", [False, True])
def test_stream_with_the_real_recogniser(tmp_path, bidirectional):
    loaded = load_model(random_model(tmp_path / "m.pt", bidirectional=bidirectional))
    recognizer = Recognizer(loaded)
    # noise that rises and falls like speech, loud at both ends: offline transcription sends it whole (steady
    # noise would be no speech to the detector, an empty transcript offline; the stream is not gated)
    envelope = 0.05 + np.abs(np.cos(2 * np.pi * 3 * np.arange(16000) / 16000))
    audio = (np.random.default_rng(1).standard_normal(16000) * 0.1 * envelope).astype(np.float32)
    offline = recognizer.transcribe(audio, "x")["text"]
    client = TestClient(create_app(recognizer))
    with client.websocket_connect("/v1/stream?encoding=f32le") as ws:
        ready = ws.receive_json()
        for k in range(0, len(audio), 1600):
            ws.send_bytes(audio[k : k + 1600].tobytes())
        ws.send_text(json.dumps({"type": "end"}))
        while (message := ws.receive_json())["type"] == "partial":
            pass
    assert message["type"] == "final"
    if bidirectional:
        assert ready["mode"] == "segmented" and "bidirectional" in ready["note"] and message["note"]
    else:
        assert ready["mode"] == "exact" and ready["note"] is None
        assert message["text"] == offline  # a forward-only model streams exactly


def test_lookahead_in_healthz_and_segments_over_the_stream(tmp_path):
    """A look-ahead model: /healthz and the ready message state its latency; endpoint_ms closes segments."""
    from asr.inference.streaming import StreamingRecognizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(
        vocab_size=len(tokenizer),
        cell="rnn",
        hidden_size=16,
        num_layers=1,
        conv_channels=4,
        bidirectional=False,
        subsampling=3,
        lookahead_frames=2,
    )
    save_model(tmp_path / "la.pt", ASRModel(dims, FeatureConfig(normalize="global")), tokenizer)
    loaded = load_model(tmp_path / "la.pt")
    client = TestClient(create_app(Recognizer(loaded)))
    model = client.get("/healthz").json()["model"]
    assert (model["lookahead_frames"], model["lookahead_ms"]) == (2, 60.0)
    rng = np.random.default_rng(3)
    burst = (rng.standard_normal(8000) * 0.2).astype(np.float32)
    audio = np.concatenate([burst, np.zeros(16000, np.float32), burst])
    expected = StreamingRecognizer(loaded, endpoint_silence_s=0.5)
    for k in range(0, len(audio), 1600):
        expected.accept(audio[k : k + 1600])
    expected = expected.finish()
    assert len(expected.segments) >= 2  # the pause closed one
    with client.websocket_connect("/v1/stream?encoding=f32le&endpoint_ms=500") as ws:
        ready = ws.receive_json()
        assert (ready["lookahead_ms"], ready["endpoint_ms"]) == (60.0, 500)
        for k in range(0, len(audio), 1600):
            ws.send_bytes(audio[k : k + 1600].tobytes())
        ws.send_text(json.dumps({"type": "end"}))
        messages = []
        while (message := ws.receive_json())["type"] != "final":
            messages.append(message)
    segments = [{k: v for k, v in m.items() if k != "type"} for m in messages if m["type"] == "segment"]
    assert segments == [s.to_dict() for s in expected.segments]
    assert all("open" in m for m in messages if m["type"] == "partial")
    assert message["text"] == expected.text
    from starlette.testclient import WebSocketDenialResponse

    with pytest.raises(WebSocketDenialResponse) as refused:  # refused before the handshake (issue 18)
        with client.websocket_connect("/v1/stream?endpoint_ms=-1"):
            pass
    assert refused.value.status_code == 400 and "endpoint_ms: -1 is out of range" in refused.value.json()["detail"]


# --- LM decoding -----------------------------------------------------------------------------------------------------

LM_FLAGS = ["--beam-size", "8", "--lm-weight", "1.0"]


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    """A character 4-gram of a few sentences: it steers the random model's noise towards their words."""
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.decoding.ngram import build_kneser_ney, units, write_arpa

    sentences = ["the cat sat on the mat", "the cat ran", "a dog sat on the mat", "the dog ran to the cat"] * 5
    path = tmp_path_factory.mktemp("lm") / "char.arpa"
    write_arpa(build_kneser_ney([units(s, "char") for s in sentences], 4), path)
    return str(path)


def _serve_app(argv, monkeypatch):
    """``asr serve ARGV`` up to the point where it would listen: (exit status, the app it would serve or None)."""
    import uvicorn

    from asr.cli import main

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    return main(["serve", *argv]), served.get("app")


def test_serve_lm_options_are_those_of_transcribe():
    from asr.cli import build_parser

    def lm_options(command):
        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        group = next(g for g in sub.choices[command]._action_groups if g.title.startswith("language-model"))
        return [(a.option_strings, a.default, a.type, a.help) for a in group._group_actions]

    assert lm_options("serve") == lm_options("transcribe") and len(lm_options("serve")) >= 7


def test_upload_with_lm_equals_asr_transcribe_lm(model_path, char_lm, tmp_path, capsys, monkeypatch):
    from asr.cli import main

    data = wav_bytes(1.5, rate=22050)
    (tmp_path / "a.wav").write_bytes(data)
    assert (
        main(
            [
                "transcribe",
                "--model",
                model_path,
                "--format",
                "json",
                "--lm",
                char_lm,
                *LM_FLAGS,
                str(tmp_path / "a.wav"),
            ]
        )
        == 0
    )
    offline = json.loads(capsys.readouterr().out)
    rc, app = _serve_app(["--model", model_path, "--lm", char_lm, *LM_FLAGS], monkeypatch)
    assert rc == 0
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    result = post(client, data, name="a.wav").json()
    assert result == {**offline, "path": "a.wav"}
    greedy = post(TestClient(create_app(Recognizer(load_model(model_path)))), data).json()["text"]
    assert result["text"] != greedy and set(result["text"].split()) <= {
        "the",
        "cat",
        "sat",
        "on",
        "mat",
        "a",
        "dog",
        "ran",
        "to",
    }
    assert client.get("/healthz").json()["decoder"] == {
        "name": "beam-search",
        "mode": "lexicon-free",
        "lm": "char.arpa",
        "lexicon": None,
        "beam_size": 8,
        "beam_threshold": 25.0,
        "lm_weight": 1.0,
        "word_score": 0.0,
        "stream_partials": "beam-search",
    }


@pytest.mark.parametrize(
    "lm_text, flags, expected",
    [
        (None, [], "missing.arpa: file not found"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\n", [], "corrupt.arpa:5"),
        ("\x00\xff\xfe binary junk", [], "corrupt.arpa: not UTF-8 text"),
        ("", ["--lm-params", "missing.json"], "missing.json: LM parameters file not found"),
    ],
)
def test_cli_serve_bad_lm_is_a_one_line_error_before_listening(
    model_path, tmp_path, monkeypatch, capsys, lm_text, flags, expected
):
    pytest.importorskip("flashlight.lib.text.decoder")
    lm = tmp_path / ("missing.arpa" if lm_text is None else "corrupt.arpa")
    if lm_text:
        lm.write_bytes(lm_text.encode("latin-1"))
    flags = [str(tmp_path / f) if f.endswith(".json") else f for f in flags]
    rc, app = _serve_app(["--model", model_path, "--lm", str(lm), *flags], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and app is None
    assert len(err) == 1 and err[0].startswith("asr: error: ") and expected in err[0]


def test_cli_serve_lm_options_without_lm_are_refused(model_path, monkeypatch, capsys):
    rc, app = _serve_app(["--model", model_path, "--lm-weight", "2"], monkeypatch)
    assert rc == 2 and app is None and "--lm-weight needs --lm" in capsys.readouterr().err


@pytest.mark.parametrize("bidirectional", [False, True])
def test_stream_with_lm_partials_greedy_final_with_the_lm(tmp_path, char_lm, bidirectional):
    """An exact stream's partials stay best path (those of a greedy server) and its final text is the LM's
    decoding of the whole stream; a segmented stream decodes every segment with the LM."""
    from asr.decoding.beam_search import BeamSearchDecoder, BeamSearchOptions
    from asr.inference.streaming import open_stream

    loaded = load_model(random_model(tmp_path / "m.pt", bidirectional=bidirectional))
    decoder = BeamSearchDecoder(loaded.tokenizer, char_lm, options=BeamSearchOptions(beam_size=8))
    audio = (np.random.default_rng(1).standard_normal(16000) * 0.1).astype(np.float32)

    def run(recognizer):
        with TestClient(create_app(recognizer)).websocket_connect("/v1/stream?encoding=f32le") as ws:
            messages = [ws.receive_json()]
            for k in range(0, len(audio), 1600):
                ws.send_bytes(audio[k : k + 1600].tobytes())
            ws.send_text(json.dumps({"type": "end"}))
            while messages[-1]["type"] != "final":
                messages.append(ws.receive_json())
        return messages[0], [m["text"] for m in messages if m["type"] == "partial"], messages[-1]["text"]

    ready, partials, final = run(Recognizer(loaded, decoder))
    assert ready["decoder"] == "beam-search"
    if bidirectional:
        assert ready["partials"] == "beam-search"
        session, _ = open_stream(loaded, decoder)
        session.accept(audio)
        assert final == session.finish().text
        return
    _, greedy_partials, greedy_final = run(Recognizer(loaded))
    session, _ = open_stream(loaded, keep_log_probs=True)
    session.accept(audio)
    log_probs = session.finish().log_probs
    assert ready["partials"] == "greedy" and partials == greedy_partials
    assert final == decoder(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]
    assert final != greedy_final  # the LM turned the noise's letters into nothing, or into its words


def test_no_speech_threshold_drops_segments_as_asr_transcribe_does(model_path):
    loaded = load_model(model_path)
    audio = sf.read(io.BytesIO(wav_bytes(1.0)), dtype="float32")[0]
    kept = Recognizer(loaded).transcribe(audio, "x")
    assert kept["segments"] and all(0.0 < s["no_speech_prob"] < 1.0 for s in kept["segments"])
    # A softmax never gives blank all of the mass, so at 0 every segment goes; at 1 none does.
    everything = Recognizer(loaded, no_speech_threshold=1.0).transcribe(audio, "x")
    assert everything["segments"] == kept["segments"]
    dropped = Recognizer(loaded, no_speech_threshold=0.0)
    assert dropped.transcribe(audio, "x")["segments"] == []
    with TestClient(create_app(dropped)) as client:
        assert client.get("/healthz").json()["model"]["no_speech_threshold"] == 0.0
        assert post(client, wav_bytes(1.0)).json()["text"] == ""
    with pytest.raises(UsageError, match=r"--no-speech-threshold must be a probability in \[0, 1\], got 1.5"):
        Recognizer(loaded, no_speech_threshold=1.5)
