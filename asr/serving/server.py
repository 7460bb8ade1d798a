"""`asr serve`: one trained model behind HTTP and a WebSocket, with a browser page to record or drop audio.

Endpoints: ``POST /v1/transcribe`` (multipart upload, field ``file``; ``?format=json|srt|vtt|text|tsv``; the JSON is
what ``asr transcribe --format json`` prints), ``GET /healthz``, ``WS /v1/stream`` (PCM in, partial/final JSON
out; the protocol is in docs/serve.md) and the page at ``/``.

Why it is built the way it is:

* The model is loaded once and shared. Inference runs in a pool of ``max_concurrent`` threads, never on the event
  loop, so the server keeps answering (health checks, refusals) while it computes.
* In front of the pool is a bounded queue (``max_queue``). When it is full a request is refused at once with 503
  and ``Retry-After`` (load shedding): under overload the alternative is a queue that grows until every request in
  it times out, so nobody is served.
* Each limit is checked as early as possible: the declared ``Content-Length`` before the body is read, the bytes
  as they arrive (a client may lie or send chunked), the duration from the audio header before decoding, then
  again after decoding (headers can lie too). Too big is 413, bad audio 400, both with a message; a slow upload
  is 408, an inference that outlives ``timeout`` 504.
* Decoding is greedy, or the beam search with an n-gram LM of ``asr transcribe --lm`` (the same options, built by
  :func:`asr.decoding.beam_search.decoder_from_args` before the server listens, so a bad LM file stops it at start-up).
  Uploads and a stream's final text use it; an exact stream's partial results stay best path, for latency
  (``/healthz`` says which decodes what). The pool's threads share the one decoder, which is thread-safe.
* Nothing a client sends becomes a path. The upload is received into memory (bounded by ``max_upload_mb``) and
  checked there; for the transcriber, which reads files, it is written under a fixed name into a private temporary
  directory that is deleted when the request ends. The client's file name is only echoed back as the result's
  ``path`` label. The page's files are read from the package once, at start-up, and served from memory under
  fixed routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import logging
import math
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, AsyncIterator, Callable

import numpy as np
import soundfile as sf
import torch
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from starlette.formparsers import MultiPartException, MultiPartParser

from asr import __version__
from asr.data.audio import AudioError, resample
from asr.decoding.greedy import Decoder, GreedyDecoder
from asr.errors import UsageError
from asr.inference.formats import write_result
from asr.model.file import LoadedModel

log = logging.getLogger(__name__)

# ?format= values and the media type each is served with.
MEDIA_TYPES = {
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}
# PCM encodings the stream accepts: numpy dtype of each (little-endian).
STREAM_ENCODINGS = {"s16le": "<i2", "f32le": "<f4"}
WEB_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The page loads nothing from elsewhere; recorded audio is played back from blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; media-src 'self' blob:; connect-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
MAX_NAME_CHARS = 200


@dataclass
class Limits:
    """What one server accepts; each is an ``asr serve`` option."""

    max_upload_mb: float = 25.0  # request body, and so the largest file (413 beyond)
    max_duration: float = 600.0  # seconds of audio in one upload or one stream (413 / stream ended beyond)
    max_concurrent: int = 2  # inferences running at once (threads sharing the one model)
    max_queue: int = 32  # requests or open streams waiting beyond those (503 + Retry-After beyond)
    timeout: float = 120.0  # seconds for an upload to arrive, for a request to be served, for a stream to speak

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_duration", "timeout"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_concurrent < 1 or self.max_queue < 0:
            raise UsageError(
                f"max_concurrent must be >= 1 and max_queue >= 0, got {self.max_concurrent} and {self.max_queue}"
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class HTTPProblem(Exception):
    """A request the server refuses: the status code, a one-line message and any extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class TooLong(HTTPProblem):
    def __init__(self, name: str, seconds: float, limit: float):
        super().__init__(413, f"{name}: audio is {seconds:.1f} s long; this server accepts at most {limit:g} s")


class Recognizer:
    """The loaded model and what the server does with it: transcribe a whole recording, or open a stream.

    Thread-safe: the model is only read (inference mode), so the pool's threads share it.
    """

    def __init__(self, loaded: LoadedModel, decoder: Decoder | None = None):
        self.loaded = loaded
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.decoder = decoder or GreedyDecoder(self.tokenizer)
        self.sample_rate = self.model.sample_rate

    @property
    def streaming_mode(self) -> str:
        """``exact`` (forward-only model: text grows frame by frame) or ``segmented`` (decoded per pause)."""
        return "segmented" if self.streaming_note() else "exact"

    def streaming_note(self) -> str | None:
        """Why this model streams per segment, or None when it streams exactly."""
        from asr.inference.streaming import exact_streaming_problem

        problem = exact_streaming_problem(self.loaded)
        return (
            None
            if problem is None
            else (f"{problem}: streaming per segment, each decoded when a pause (or the end of the stream) closes it")
        )

    def decoder_info(self) -> dict[str, Any]:
        """The decoder (its ``info()``), and what decodes a stream's partial results.

        An exact stream's partials are best path whatever the decoder: a beam search over the whole stream at
        every chunk would cost more the longer it runs, and the text is settled at the end anyway, when the final
        result is decoded with the decoder. A segmented stream decodes each segment with the decoder as it closes.
        """
        describe = getattr(self.decoder, "info", None)
        info = describe() if describe else {"name": type(self.decoder).__name__}
        return {**info, "stream_partials": "greedy" if self.streaming_mode == "exact" else info["name"]}

    def info(self) -> dict[str, Any]:
        dims = self.model.dims
        return {
            "cell": dims.cell,
            "layers": dims.num_layers,
            "hidden_size": dims.hidden_size,
            "bidirectional": dims.bidirectional,
            "sample_rate": self.sample_rate,
            "frame_seconds": self.loaded.frame_seconds,
            "lookahead_frames": dims.lookahead_frames,  # what a stream waits for beyond the model without it:
            "lookahead_ms": round(1000 * self.model.lookahead_seconds, 3),  # lookahead_frames * frame_seconds
            "created": self.loaded.created,
        }

    def transcribe(self, data: bytes, name: str) -> dict[str, Any]:
        """The result of ``asr transcribe --format json`` for the uploaded file ``data``, labelled ``name``.

        :class:`asr.inference.transcribe.Transcriber` reads files, so ``data`` goes to a private temporary directory (mode
        0700, a fixed file name) for the call and is deleted after; a Transcriber per call, since one keeps its
        batch queue between calls. Raises :class:`AudioError` (naming ``name``) for audio it cannot read.
        """
        from asr.inference.transcribe import Transcriber

        with tempfile.TemporaryDirectory(prefix="asr-serve-") as directory:
            path = os.path.join(directory, "upload")
            with open(path, "wb") as f:
                f.write(data)
            transcript = next(iter(Transcriber(self.loaded, decoder=self.decoder).run([path])))
        if transcript.error is not None:
            raise AudioError(transcript.error.replace(path, name))
        for warning in transcript.warnings:
            log.warning("%s", warning.replace(path, name))
        return {**transcript.to_dict(), "path": name}

    def open_stream(self, endpoint_silence_s: float | None = None) -> Any:
        """A fresh per-connection recogniser (``accept(samples) -> Partial``, ``finish() -> Final``), closing a
        segment after each pause of ``endpoint_silence_s`` when given."""
        from asr.inference.streaming import open_stream

        recognizer, _ = open_stream(self.loaded, self.decoder, endpoint_silence_s=endpoint_silence_s)
        return recognizer


class InferencePool:
    """``max_concurrent`` threads running the model, and at most ``max_queue`` admitted jobs waiting for one.

    The counters live on the event loop's thread (the jobs' ends are reported there), so they need no lock. A job
    that times out while still queued leaves the queue; one already running cannot be interrupted (PyTorch has no
    cancellation), so it keeps its slot until it ends: the count of admitted jobs is always the real load.
    """

    def __init__(self, max_concurrent: int, max_queue: int):
        self.executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="asr-inference")
        self.max_concurrent = max_concurrent
        self.capacity = max_concurrent + max_queue
        self.admitted = 0
        self.job_seconds = 1.0  # running mean of recent jobs, for Retry-After

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the admitted jobs' expected time through the pool."""
        return max(1, math.ceil(self.job_seconds * self.admitted / self.max_concurrent))

    def admit(self) -> None:
        """Take a slot, or raise 503 when every slot is taken."""
        if self.admitted >= self.capacity:
            raise HTTPProblem(
                503,
                f"server busy: {self.admitted} requests running or queued (limit {self.capacity}); retry later",
                {"Retry-After": str(self.retry_after())},
            )
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """``fn(*args)`` in the pool, in a slot of its own (503 when none is left, 504 after ``timeout``)."""
        self.admit()
        loop = asyncio.get_running_loop()
        job = self.executor.submit(self._timed, fn, *args)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self.release))
        waiter = asyncio.wrap_future(job)
        waiter.add_done_callback(_retrieve_exception)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            job.cancel()  # a job still queued leaves now; a running one keeps its slot until it ends
            raise HTTPProblem(
                504, f"transcription did not finish within the server's timeout of {timeout:g} s"
            ) from None

    async def compute(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the pool for a caller that already holds a slot (an open stream)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._timed, fn, *args)

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.job_seconds = 0.8 * self.job_seconds + 0.2 * (time.perf_counter() - start)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _retrieve_exception(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # an abandoned job's error is not logged as "never retrieved"


def display_name(filename: str | None) -> str:
    """The client's file name as a label: its last path component, printable, bounded. Never opened."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[:MAX_NAME_CHARS]
    return name or "upload"


def check_audio(data: bytes, name: str, max_duration: float) -> None:
    """Refuse an upload before the model sees it: :class:`TooLong` past ``max_duration`` (judged from the header
    first, so a long file is refused before it is decoded, then from the samples), :class:`AudioError` naming
    ``name`` and the problem for anything that is not usable audio (any format libsndfile reads is)."""
    decode_audio(data, name, None, max_duration)


def decode_audio(data: bytes, name: str, sample_rate: int | None, max_duration: float) -> np.ndarray:
    """Uploaded bytes as mono float32 at ``sample_rate`` (None: the file's own), checked as :func:`check_audio`
    says."""
    if not data:
        raise AudioError(f"{name}: file is empty")
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception as e:  # libsndfile's errors are generic
        raise AudioError(f"{name}: not a readable audio file ({_first_line(e)})") from None
    with f:
        rate = int(f.samplerate)
        if rate <= 0:
            raise AudioError(f"{name}: invalid sample rate {rate}")
        if f.frames > 0 and f.frames / rate > max_duration:
            raise TooLong(name, f.frames / rate, max_duration)
        try:
            samples = f.read(dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(f"{name}: audio data is damaged ({_first_line(e)})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{name}: no audio samples")
    if samples.shape[0] / rate > max_duration:
        raise TooLong(name, samples.shape[0] / rate, max_duration)
    audio = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if sample_rate is None:
        return np.ascontiguousarray(audio, dtype=np.float32)
    return np.ascontiguousarray(resample(audio, rate, sample_rate), dtype=np.float32)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    # libsndfile names the object it was given ("Error opening <_io.BytesIO object at 0x...>: "): noise to a client.
    text = re.sub(r"^Error opening <[^>]*>: ", "", text)
    return text.splitlines()[0][:200] if text else type(e).__name__


async def _read_upload(request: Request, limits: Limits) -> tuple[bytes, str]:
    """The ``file`` field of a multipart request (bytes, display name), read within the size limit."""
    limit = limits.max_upload_bytes
    too_big = HTTPProblem(413, f"upload larger than this server's limit of {limits.max_upload_mb:g} MB")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPProblem(
            400,
            f"send the audio as multipart/form-data in a field named 'file' (got content type {content_type[:80]!r})",
        )

    async def body():
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_big
            yield chunk

    parser = MultiPartParser(request.headers, body(), max_files=1, max_fields=8)
    parser.spool_max_size = limit + 1  # file parts stay in memory (the body limit bounds them)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise HTTPProblem(400, f"malformed multipart upload: {e.message}") from None
    upload = form.get("file")
    try:
        if upload is None or isinstance(upload, str):
            raise HTTPProblem(400, "no file in the upload: send the audio in a multipart field named 'file'")
        return await upload.read(), display_name(upload.filename)
    finally:
        await form.close()


def _problem_response(p: HTTPProblem) -> JSONResponse:
    return JSONResponse({"detail": p.message}, status_code=p.status, headers=p.headers)


def _web_files() -> dict[str, tuple[bytes, str]]:
    root = resources.files("asr.serving") / "web"
    return {route: ((root / name).read_bytes(), media) for route, (name, media) in WEB_FILES.items()}


def create_app(recognizer: Recognizer, limits: Limits | None = None) -> FastAPI:
    """The ASGI application: ``recognizer`` shared by every request, ``limits`` enforced on each."""
    limits = limits or Limits()
    pool = InferencePool(limits.max_concurrent, limits.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown()

    # No /docs or /redoc: their pages load scripts from a CDN. /openapi.json stays.
    app = FastAPI(title="asr", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.recognizer, app.state.limits, app.state.pool = recognizer, limits, pool
    web = _web_files()
    streaming_mode = recognizer.streaming_mode
    decoder = recognizer.decoder_info()

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, p: HTTPProblem) -> JSONResponse:
        return _problem_response(p)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return JSONResponse({"detail": f"internal error: {_first_line(e)}"}, status_code=500)

    def page(route: str) -> Callable[[], Response]:
        content, media = web[route]

        async def serve_file() -> Response:
            return Response(
                content,
                media_type=media,
                headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"},
            )

        return serve_file

    for route in web:
        app.add_api_route(route, page(route), methods=["GET"], include_in_schema=False)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness and what this server offers: the model, its decoder, its streaming mode, the limits and the
        load."""
        return {
            "status": "ok",
            "version": __version__,
            "model": recognizer.info(),
            "decoder": decoder,
            "streaming": streaming_mode,
            "limits": asdict(limits),
            "admitted": pool.admitted,
            "capacity": pool.capacity,
        }

    @app.post(
        "/v1/transcribe",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    }
                },
            }
        },
    )
    async def transcribe(request: Request, format: str = "json") -> Response:
        """Transcribe the uploaded audio (multipart field ``file``); ``format``: json, srt, vtt, text or tsv."""
        if format not in MEDIA_TYPES:
            raise HTTPProblem(400, f"unknown format {format!r}; choose one of {', '.join(MEDIA_TYPES)}")
        try:
            data, name = await asyncio.wait_for(_read_upload(request, limits), limits.timeout)
        except asyncio.TimeoutError:
            raise HTTPProblem(408, f"the upload did not arrive within {limits.timeout:g} s") from None

        def job() -> dict[str, Any]:  # decoding is CPU work too: off the event loop, in the pool
            check_audio(data, name, limits.max_duration)
            return recognizer.transcribe(data, name)

        try:
            result = await pool.run(job, timeout=limits.timeout)
        except AudioError as e:
            raise HTTPProblem(400, str(e)) from None
        return Response(write_result(result, format), media_type=MEDIA_TYPES[format])

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket, rate: int | None = None, encoding: str = "s16le", endpoint_ms: float = 0) -> None:
        await _stream_session(ws, recognizer, pool, limits, rate or recognizer.sample_rate, encoding, endpoint_ms)

    return app


async def _stream_session(
    ws: WebSocket,
    recognizer: Recognizer,
    pool: InferencePool,
    limits: Limits,
    rate: int,
    encoding: str,
    endpoint_ms: float = 0,
) -> None:
    """One WebSocket stream: binary PCM messages in; ``partial`` messages as the text changes; ``final`` when the
    client sends ``{"type": "end"}`` (or the stream reaches ``max_duration`` or goes quiet for ``timeout``).
    With ``endpoint_ms`` > 0 a ``segment`` message closes each stretch of speech after that long a pause (the
    partial's ``open`` is then the open segment's text; docs/streaming.md)."""
    await ws.accept()

    async def refuse(code: int, message: str) -> None:
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code)

    if encoding not in STREAM_ENCODINGS:
        return await refuse(1008, f"unknown encoding {encoding!r}; choose one of {', '.join(STREAM_ENCODINGS)}")
    if not 1000 <= rate <= 384000:
        return await refuse(1008, f"sample rate {rate} is out of range (1000-384000 Hz)")
    if not 0 <= endpoint_ms <= 60000:
        return await refuse(1008, f"endpoint_ms {endpoint_ms:g} is out of range (0: off, up to 60000 ms)")
    mode = recognizer.streaming_mode
    try:
        pool.admit()
    except HTTPProblem as p:
        return await refuse(1013, p.message)  # 1013: try again later
    try:
        note = recognizer.streaming_note()
        args = (endpoint_ms / 1000,) if endpoint_ms else ()
        session = await pool.compute(recognizer.open_stream, *args)
        dtype = np.dtype(STREAM_ENCODINGS[encoding])
        from asr.inference.streaming import StreamResampler

        converter = StreamResampler(rate, recognizer.sample_rate)
        decoder = recognizer.decoder_info()
        await ws.send_json(
            {
                "type": "ready",
                "mode": mode,
                "note": note,
                "sample_rate": rate,
                "encoding": encoding,
                "model_sample_rate": recognizer.sample_rate,
                "decoder": decoder["name"],
                "partials": decoder["stream_partials"],
                "lookahead_ms": recognizer.info()["lookahead_ms"],
                "endpoint_ms": endpoint_ms,
            }
        )
        received, text, stopped = 0, "", None
        while stopped is None:
            try:
                message = await asyncio.wait_for(ws.receive(), limits.timeout)
            except asyncio.TimeoutError:
                stopped = f"no audio for {limits.timeout:g} s"
                break
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                if _is_end(message["text"]):
                    break
                return await refuse(1003, 'text messages must be {"type": "end"}; send audio as binary PCM')
            chunk = message.get("bytes") or b""
            if len(chunk) % dtype.itemsize:
                return await refuse(
                    1007,
                    f"a {encoding} message must hold whole samples of {dtype.itemsize} bytes; got {len(chunk)} bytes",
                )
            samples = np.frombuffer(chunk, dtype=dtype)
            if dtype.kind == "f" and not np.isfinite(samples).all():
                return await refuse(1007, "audio contains NaN or infinite samples")
            if (received + samples.shape[0]) / rate > limits.max_duration:
                samples = samples[: max(0, int(limits.max_duration * rate) - received)]
                stopped = f"the stream reached this server's limit of {limits.max_duration:g} s"
            received += samples.shape[0]
            # a copy either way: the message's buffer is read-only
            audio = converter(
                samples.astype(np.float32) / 32768.0 if dtype.kind == "i" else np.array(samples, dtype=np.float32)
            )
            partial = await pool.compute(session.accept, audio)
            for segment in getattr(partial, "closed", ()):
                await ws.send_json({"type": "segment", **segment.to_dict()})
            if partial.text != text:
                text = partial.text
                message = {"type": "partial", "text": text, "seconds": round(received / rate, 3)}
                if endpoint_ms:
                    message["open"] = partial.open_text
                await ws.send_json(message)
        tail = converter(np.zeros(0, dtype=np.float32), last=True)
        if tail.shape[0]:
            await pool.compute(session.accept, tail)
        final = await pool.compute(session.finish)
        if endpoint_ms:
            for segment in final.closed:
                await ws.send_json({"type": "segment", **segment.to_dict()})
        await ws.send_json(
            {
                "type": "final",
                "text": final.text,
                "seconds": round(received / rate, 3),
                "mode": mode,
                "note": note,
                "stopped": stopped,
            }
        )
        await ws.close(1000)
    except WebSocketDisconnect:
        pass
    except Exception as e:  # a stream must never take the server down; the client learns why it ended
        log.exception("stream failed")
        try:
            await refuse(1011, f"stream failed: {_first_line(e)}")
        except Exception:
            pass
    finally:
        pool.release()


def _is_end(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "end"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_decoding(decoder: dict[str, Any]) -> str:
    """:meth:`Recognizer.decoder_info` as the start-up log says it."""
    if decoder["name"] == "greedy":
        return "greedy decoding"
    settings = ", ".join(
        f"{k} {v}" for k, v in decoder.items() if k not in ("name", "stream_partials") and v is not None
    )
    streams = (
        "partial results greedy, final text with the LM"
        if decoder["stream_partials"] == "greedy"
        else "each segment with the LM"
    )
    return f"{decoder['name']} decoding ({settings}); streams: {streams}"


def serve(
    recognizer: Recognizer,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    label: str = "model",
) -> None:
    """Serve ``recognizer`` (a model loaded once, and its decoder) until interrupted; ``label`` names it in the log.

    >>> loaded = load_model("exp/synth/model.pt")
    >>> serve(Recognizer(loaded, BeamSearchDecoder(loaded.tokenizer, "lm.arpa")))
    """
    import uvicorn

    limits = limits or Limits()
    if recognizer.model.device.type == "cpu":
        # The pool's threads share the cores instead of each asking for all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // limits.max_concurrent))
    if not is_loopback(host):
        log.warning("listening on %s: the server has no authentication; anyone who can reach it can use it", host)
    log.info(
        "model %s (streaming: %s), %s; page and API at http://%s:%d/",
        label,
        recognizer.streaming_mode,
        describe_decoding(recognizer.decoder_info()),
        f"[{host}]" if ":" in host else host,
        port,
    )
    app = create_app(recognizer, limits)
    # Open connections are bounded too: a few per slot covers page loads and health checks beside the work.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_keep_alive=5,
        limit_concurrency=max(64, 4 * (limits.max_concurrent + limits.max_queue)),
    )
