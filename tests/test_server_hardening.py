"""`asr serve` against a hostile client: memory bounded by decoded samples, connections and streams that send
nothing, other sites' pages, and malformed parameters and options (issue 18, "asr serve")."""

from __future__ import annotations

import asyncio
import io
import json
import select
import socket
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.testclient import WebSocketDenialResponse  # noqa: E402
from test_server import BlockingRecognizer, EchoRecognizer, post, wav_bytes  # noqa: E402

from asr.model.file import load_model  # noqa: E402
from asr.serving.server import Access, Limits, Recognizer, create_app, server_options  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from test_server import random_model

    return random_model(tmp_path_factory.mktemp("hardening") / "model.pt")


@pytest.fixture(scope="module")
def recognizer(model_path):
    return Recognizer(load_model(model_path))


def flac(seconds: float, rate: int, channels: int, level: float = 0.0, fmt: str = "FLAC") -> bytes:
    """A FLAC of ``channels`` at ``rate``: silence compresses to almost nothing, as an attacker's would."""
    frames = int(seconds * rate)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, format=fmt, subtype="PCM_16") as f:
        for start in range(0, frames, rate):
            n = min(rate, frames - start)
            f.write(np.full((n, channels), level, dtype=np.float32))
    return buf.getvalue()


def unknown_length(data: bytes) -> bytes:
    """The FLAC with STREAMINFO's total_samples set to 0 ("unknown"), as an encoder writing to a pipe leaves it."""
    d = bytearray(data)
    assert d[:4] == b"fLaC"
    (bits,) = struct.unpack(">Q", d[18:26])
    d[18:26] = struct.pack(">Q", bits & ~((1 << 36) - 1))
    return bytes(d)


# --- 1. memory bounded by decoded samples ------------------------------------------------------------------------


def test_an_8_channel_192_khz_upload_costs_its_mono_16_khz_samples(recognizer):
    data = flac(6.0, 192000, 8)  # decoded whole as float32: 6 * 192000 * 8 * 4 = 37 MB; mono 16 kHz: 0.4 MB
    assert len(data) < 200_000
    client = TestClient(create_app(recognizer))
    tracemalloc.start()
    try:
        r = post(client, data, name="many.flac")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200 and r.json()["duration"] == 6.0
    # one second of the file is read at a time (6 MB), gathered mono at its rate in 5-s blocks (3.8 MB)
    assert peak < 20e6, f"peak {peak / 1e6:.1f} MB traced for one upload"


def test_samples_a_second_over_the_cap_are_413_and_the_cap_is_a_limit(recognizer):
    data = flac(0.02, 192000, 16, fmt="WAV")  # 3,072,000 samples a second (FLAC stops at 8 channels)
    r = post(TestClient(create_app(recognizer)), data, name="wide.wav")
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "wide.wav: 16 channels at 192000 Hz is 3072000 samples a second; this server decodes at most 1536000 "
        "(8 channels at 192 kHz is 1536000)"
    )
    assert post(TestClient(create_app(recognizer, Limits(max_input_rate=4_000_000))), data).status_code == 200


def test_a_header_without_a_length_is_judged_by_its_samples(recognizer):
    data = unknown_length(wav_bytes(3.0, fmt="FLAC", level=0.1))
    assert sf.info(io.BytesIO(data)).frames > 2**62  # libsndfile's "unknown": INT64_MAX
    r = post(TestClient(create_app(recognizer, Limits(max_duration=5))), data, name="pipe.flac")
    assert r.status_code == 200 and 0 < r.json()["duration"] <= 3.0  # not 413 "576460752303423.5 s long"
    r = post(TestClient(create_app(recognizer, Limits(max_duration=1))), data, name="pipe.flac")
    assert r.status_code == 413
    assert r.json()["detail"] == "pipe.flac: audio is longer than 1 s; this server accepts at most 1 s"


def test_a_full_server_refuses_before_reading_the_body_and_healthz_still_answers(model_path):
    app = create_app(BlockingRecognizer(load_model(model_path)), Limits(max_concurrent=1, max_queue=0))
    pool = app.state.pool
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    arrived, read = asyncio.Event(), []

    async def held_body():  # the first upload: its body keeps coming, holding the only slot
        yield head
        arrived.set()
        await asyncio.sleep(0.5)
        yield wav_bytes(0.2) + b"\r\n--b--\r\n"

    async def counted_body():  # the second: the server must answer without reading any of it
        read.append("started")
        yield head + wav_bytes(0.2) + b"\r\n--b--\r\n"

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        headers = {"content-type": "multipart/form-data; boundary=b"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = asyncio.create_task(client.post("/v1/transcribe", content=held_body(), headers=headers))
            await arrived.wait()
            assert pool.admitted == 1  # the slot is taken while the body arrives
            refused = await client.post("/v1/transcribe", content=counted_body(), headers=headers)
            health = await client.get("/healthz")
            app.state.recognizer.release.set()
            return refused, health, await first

    refused, health, first = asyncio.run(scenario())
    assert refused.status_code == 503 and "server busy" in refused.json()["detail"]
    assert read == []
    assert health.status_code == 200 and health.json()["admitted"] == 1
    assert first.status_code == 200 and pool.admitted == 0


def test_an_upload_that_stops_arriving_is_408_after_the_idle_timeout(recognizer):
    app = create_app(recognizer, Limits(idle_timeout=0.2, timeout=60))

    async def stalled():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        await asyncio.sleep(5)
        yield b"\r\n--b--\r\n"

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"content-type": "multipart/form-data; boundary=b"}
            return await client.post("/v1/transcribe", content=stalled(), headers=headers)

    r = asyncio.run(scenario())
    assert r.status_code == 408 and r.json()["detail"] == "the upload stopped arriving: nothing for 0.2 s"
    assert app.state.pool.admitted == 0


def test_an_upload_trickled_below_the_minimum_rate_is_408_and_frees_its_slot(recognizer):
    app = create_app(recognizer, Limits(idle_timeout=0.3, min_upload_rate=1000, timeout=60))

    async def trickle():  # 10 bytes every 0.05 s: never idle, 200 bytes a second
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(200):
            await asyncio.sleep(0.05)
            yield b"\x00" * 10

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"content-type": "multipart/form-data; boundary=b"}
            return await client.post("/v1/transcribe", content=trickle(), headers=headers)

    r = asyncio.run(scenario())
    assert r.status_code == 408
    assert "the upload is arriving too slowly" in r.json()["detail"]
    assert r.json()["detail"].endswith("this server needs 1000 bytes a second")
    assert app.state.pool.admitted == 0


# --- 2. connections and streams that send nothing ----------------------------------------------------------------


class LiveServer:
    """``asr serve``'s uvicorn configuration (:func:`server_options`) on a free loopback port, in a thread."""

    def __init__(self, recognizer, limits: Limits | None = None, **access):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        options = server_options(recognizer, "127.0.0.1", self.port, limits, **access)
        options["log_level"] = "warning"
        self.server = uvicorn.Server(uvicorn.Config(**options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        for _ in range(1000):
            if self.server.started:
                return self
            time.sleep(0.01)
        raise AssertionError("server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s


def closed_by_server(s: socket.socket, within: float = 10.0) -> bool:
    """Whether the server closes ``s`` within ``within`` seconds (whatever it sends first)."""
    s.settimeout(within)
    try:
        while s.recv(65536):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def count_closed(sockets: list[socket.socket], want: int, within: float = 10.0) -> int:
    """How many of ``sockets`` the server has closed, waiting up to ``within`` seconds for ``want`` of them."""
    deadline, closed = time.monotonic() + within, set()
    while len(closed) < want and time.monotonic() < deadline:
        readable, _, _ = select.select([s for s in sockets if s not in closed], [], [], 0.05)
        for s in readable:
            try:
                if not s.recv(65536):
                    closed.add(s)
            except ConnectionResetError:
                closed.add(s)
    return len(closed)


def test_idle_connections_cannot_make_healthz_503(recognizer):
    with LiveServer(recognizer) as live:  # the defaults: uvicorn's limit_concurrency was 136 with them
        idle = [live.connect() for _ in range(150)]
        try:
            r = httpx.get(live.url("/healthz"), timeout=10)
            assert r.status_code == 200 and r.json()["status"] == "ok"
        finally:
            for s in idle:
                s.close()


def test_past_max_connections_the_idle_make_room(recognizer):
    with LiveServer(recognizer, Limits(max_connections=8)) as live:
        idle = [live.connect() for _ in range(20)]
        try:
            for _ in range(3):
                assert httpx.get(live.url("/healthz"), timeout=10).status_code == 200
            assert count_closed(idle, 12) >= 12  # at most 8 open at once, the health checks' among them
        finally:
            for s in idle:
                s.close()


def test_headers_must_arrive_within_the_idle_timeout(recognizer):
    with LiveServer(recognizer, Limits(idle_timeout=0.3)) as live:
        silent = live.connect()
        slow = live.connect()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and the rest never comes
        kept = live.connect()
        kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n\r\n".encode())
        kept.settimeout(10)
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # a second request on the kept-alive connection, stalled
        for s in (silent, slow, kept):
            assert closed_by_server(s), "the server kept a connection that sent no complete request"
            s.close()
        assert httpx.get(live.url("/healthz"), timeout=10).status_code == 200


def test_a_silent_stream_and_a_slow_stream_get_their_final_and_free_their_slot(model_path):
    from websockets.asyncio.client import connect

    recognizer = EchoRecognizer(load_model(model_path))

    async def stream(url: str, pause: float | None) -> dict:
        """Open a stream; send one sample (2 bytes) every ``pause`` s (None: nothing) until the final comes."""
        async with connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"

            async def trickle():
                while pause is not None:
                    await ws.send(b"\x00\x00")
                    await asyncio.sleep(pause)

            sender = asyncio.create_task(trickle())
            try:
                while (message := json.loads(await asyncio.wait_for(ws.recv(), 20)))["type"] == "partial":
                    pass
            finally:
                sender.cancel()
            return message

    limits = Limits(idle_timeout=0.3, min_stream_speed=0.5)
    with LiveServer(recognizer, limits) as live:
        url = f"ws://127.0.0.1:{live.port}/v1/stream"
        silent = asyncio.run(stream(url, None))
        slow = asyncio.run(stream(url, 0.1))  # never idle, but 2 bytes each 0.1 s is far slower than real time
        admitted = httpx.get(live.url("/healthz"), timeout=10).json()["admitted"]
    assert silent["type"] == "final" and silent["stopped"] == "no audio for 0.3 s"
    assert slow["type"] == "final"
    assert "slower than this server's minimum of 0.5 s of audio a second" in slow["stopped"]
    assert admitted == 0


# --- 3. other sites ------------------------------------------------------------------------------------------------


def send(client: TestClient, headers: dict[str, str]) -> httpx.Response:
    return client.post("/v1/transcribe", files={"file": ("a.wav", wav_bytes(0.3))}, headers=headers)


def guarded_client(recognizer, host: str = "127.0.0.1", port: int = 8000, **kw) -> TestClient:
    app = create_app(recognizer, Limits(), Access(host, port, **kw))
    return TestClient(app, base_url=f"http://{host}:{port}")


def test_a_rebound_host_is_refused_and_the_loopback_names_pass(recognizer):
    client = guarded_client(recognizer)
    r = client.get("/healthz", headers={"host": "evil.example:8000"})
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "Host 'evil.example:8000' is not a name of this server (listening on 127.0.0.1): refused against DNS "
        "rebinding; start it with --allow-host evil.example to answer to that name"
    )
    assert send(client, {"host": "evil.example"}).status_code == 403
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST", "127.0.0.1"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    allowed = guarded_client(recognizer, allow_hosts=("asr.lan",))
    assert allowed.get("/healthz", headers={"host": "asr.lan:8000"}).status_code == 200


def test_cross_origin_posts_are_refused_and_the_servers_own_pages_pass(recognizer):
    client = guarded_client(recognizer)
    r = send(client, {"origin": "https://evil.example"})
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "cross-origin request from 'https://evil.example' refused: this server serves pages of its own origin "
        "only; start it with --allow-origin https://evil.example to let that site use it"
    )
    for origin in ("http://localhost:3000", "null", "http://127.0.0.1:8001", "file://"):
        assert send(client, {"origin": origin}).status_code == 403, origin
    for origin in (None, "http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        headers = {"origin": origin} if origin else {}
        assert send(client, headers).status_code == 200, origin
    assert client.get("/healthz", headers={"origin": "https://evil.example"}).status_code == 200  # GETs: unreadable
    allowed = guarded_client(recognizer, allow_origins=("https://app.example",))
    assert send(allowed, {"origin": "https://app.example"}).status_code == 200
    assert send(allowed, {"origin": "https://evil.example"}).status_code == 403
    anyone = guarded_client(recognizer, allow_origins=("*",))
    assert send(anyone, {"origin": "https://evil.example"}).status_code == 200


def test_on_a_wildcard_address_any_host_passes_but_only_same_origin_pages(recognizer):
    client = guarded_client(recognizer, host="0.0.0.0")
    assert client.get("/healthz", headers={"host": "asr.lan:8000"}).status_code == 200
    same = {"host": "asr.lan:8000", "origin": "http://asr.lan:8000"}
    assert send(client, same).status_code == 200
    other = {"host": "asr.lan:8000", "origin": "https://evil.example"}
    assert send(client, other).status_code == 403


def test_a_cross_origin_websocket_is_refused_before_the_handshake(model_path):
    app = create_app(EchoRecognizer(load_model(model_path)), Limits(), Access("127.0.0.1", 8000))
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    own = {"host": "127.0.0.1:8000"}  # (TestClient's WebSockets say Host: testserver whatever the base URL)
    with pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect("/v1/stream", headers={**own, "origin": "https://evil.example"}):
            pass
    assert refused.value.status_code == 403 and "cross-origin request" in refused.value.json()["detail"]
    with client.websocket_connect("/v1/stream", headers={**own, "origin": "http://localhost:8000"}) as ws:
        assert ws.receive_json()["type"] == "ready"
    assert app.state.pool.admitted == 0


def test_the_live_server_refuses_other_sites(model_path):
    with LiveServer(EchoRecognizer(load_model(model_path))) as live:
        r = httpx.post(
            live.url("/v1/transcribe"),
            files={"file": ("a.wav", wav_bytes(0.3))},
            headers={"origin": "https://evil.example"},
            timeout=10,
        )
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
        assert httpx.get(live.url("/healthz"), headers={"host": "evil.example"}, timeout=10).status_code == 403
        s = live.connect()
        s.sendall(
            b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Origin: https://evil.example\r\n\r\n"
        )
        s.settimeout(10)
        answer = s.recv(65536)
        s.close()
        assert answer.startswith(b"HTTP/1.1 403") and b"cross-origin" in answer


def test_cli_allow_origin_and_allow_host_are_repeatable(model_path, monkeypatch):
    from test_server import _serve_app

    argv = ["--model", model_path, "--allow-origin", "https://a.example", "--allow-origin", "https://b.example"]
    rc, app = _serve_app([*argv, "--allow-host", "asr.lan"], monkeypatch)
    assert rc == 0
    access = app.state.access
    assert access.allow_origins == ("https://a.example", "https://b.example") and access.allow_hosts == ("asr.lan",)
    assert access.host == "127.0.0.1" and access.port == 8000


# --- 4. parameters and options -------------------------------------------------------------------------------------


def test_format_as_a_form_field_works_like_the_query(recognizer):
    from asr.inference.formats import write_result

    client = TestClient(create_app(recognizer))
    data = wav_bytes(1.0)
    result = post(client, data).json()
    r = client.post("/v1/transcribe", files={"file": ("a.wav", data)}, data={"format": "srt"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-subrip")
    assert r.text == write_result(result, "srt")
    both = client.post("/v1/transcribe?format=srt", files={"file": ("a.wav", data)}, data={"format": "srt"})
    assert both.status_code == 200 and both.text == r.text
    r = client.post("/v1/transcribe?format=vtt", files={"file": ("a.wav", data)}, data={"format": "srt"})
    assert r.status_code == 400 and r.json()["detail"] == (
        "format given twice, as ?format=vtt and as the form field 'srt'"
    )
    r = client.post("/v1/transcribe", files={"file": ("a.wav", data)}, data={"format": "docx"})
    assert r.status_code == 400 and "unknown format 'docx'" in r.json()["detail"]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("rate=0", "rate: sample rate 0 is out of range (1000-384000 Hz)"),
        ("rate=abc", "rate: 'abc' is not a whole number of Hz (1000-384000)"),
        ("rate=10", "rate: sample rate 10 is out of range (1000-384000 Hz)"),
        ("rate=", "rate: '' is not a whole number of Hz (1000-384000)"),
        ("encoding=u8", "encoding: unknown encoding 'u8'; choose one of s16le, f32le"),
        ("endpoint_ms=nan", "endpoint_ms: nan is out of range (0: off, up to 60000 ms)"),
        ("endpoint_ms=soon", "endpoint_ms: 'soon' is not a number of milliseconds"),
    ],
)
def test_bad_stream_parameters_are_a_400_naming_the_parameter(model_path, query, expected):
    app = create_app(EchoRecognizer(load_model(model_path)))
    with pytest.raises(WebSocketDenialResponse) as refused:
        with TestClient(app).websocket_connect(f"/v1/stream?{query}"):
            pass
    assert refused.value.status_code == 400 and refused.value.json() == {"detail": expected}
    assert app.state.pool.admitted == 0


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--port", "99999"], "asr: error: --port must be 0-65535, got 99999"),
        (["--port", "-1"], "asr: error: --port must be 0-65535, got -1"),
        (
            ["--max-upload-mb", "inf"],
            "asr: error: max_upload_mb (--max-upload-mb) must be a finite number > 0, got inf",
        ),
        (
            ["--max-upload-mb", "nan"],
            "asr: error: max_upload_mb (--max-upload-mb) must be a finite number > 0, got nan",
        ),
        (
            ["--max-upload-mb", "-1"],
            "asr: error: max_upload_mb (--max-upload-mb) must be a finite number > 0, got -1.0",
        ),
        (["--max-duration", "inf"], "asr: error: max_duration (--max-duration) must be a finite number > 0, got inf"),
        (["--timeout", "0"], "asr: error: timeout (--timeout) must be a finite number > 0, got 0.0"),
        (["--idle-timeout", "nan"], "asr: error: idle_timeout (--idle-timeout) must be a finite number > 0, got nan"),
        (["--max-connections", "0"], "asr: error: max_connections (--max-connections) must be >= 1, got 0"),
    ],
)
def test_bad_serve_options_are_one_line_errors(model_path, monkeypatch, capsys, flags, expected):
    from test_server import _serve_app

    rc, app = _serve_app(["--model", model_path, *flags], monkeypatch)
    assert rc == 2 and app is None
    assert capsys.readouterr().err.strip() == expected


def test_a_port_out_of_range_is_refused_by_the_library_too(recognizer):
    from asr.errors import UsageError

    for port in (65536, -5, True):
        with pytest.raises(UsageError, match="--port must be 0-65535"):
            server_options(recognizer, "127.0.0.1", port)
