"""`asr serve`: one trained model behind HTTP and a WebSocket, with a browser page to record or drop audio.

Endpoints: ``POST /v1/transcribe`` (multipart upload, field ``file``; ``?format=json|srt|vtt|text|tsv``; the JSON is
what ``asr transcribe --format json`` prints), ``POST /v1/audio/transcriptions`` (the same, in OpenAI's request and
response shapes: :mod:`asr.serving.openai_api`), ``GET /healthz``, ``WS /v1/stream`` (PCM in, partial/final JSON
out; the protocol is in docs/serve.md) and the page at ``/``.

Why it is built the way it is:

* The model is loaded once and shared. Inference runs in a pool of ``max_concurrent`` threads, never on the event
  loop, so the server keeps answering (health checks, refusals) while it computes.
* In front of the pool is a bounded queue (``max_queue``). When it is full a request is refused at once with 503
  and ``Retry-After`` (load shedding): under overload the alternative is a queue that grows until every request in
  it times out, so nobody is served.
* A request takes its slot before its body is read, so the 503 bounds memory too: what is held is at most
  ``max_concurrent + max_queue`` uploads, each spooled to disk as it arrives and decoded once, block by block,
  into mono samples at the model's rate (:mod:`asr.serving.uploads`). Each limit is checked as early as
  possible: the declared ``Content-Length`` before the body is read, the bytes as they arrive, the header's
  length before decoding, the decoded samples as they come. Too big is 413, bad audio 400, both with a message;
  an upload that stops arriving is 408, an inference that outlives ``timeout`` 504.
* Nobody can hold the server by sending nothing: each request's headers have a deadline and idle connections
  make room for new ones (:mod:`asr.serving.connections`), an upload's body and a stream's messages have an idle
  timeout, and a stream must send audio at least at ``min_stream_speed`` (half real time). ``/healthz`` needs
  no slot, so it answers while every slot is taken.
* Other sites cannot use it from a browser: ``Host`` and ``Origin`` are checked against the address it listens
  on (:mod:`asr.serving.access`), as Jupyter does.
* Decoding is greedy, or the beam search with an n-gram LM of ``asr transcribe --lm`` (the same options, built by
  :func:`asr.decoding.beam_search.decoder_from_args` before the server listens, so a bad LM file stops it at start-up).
  Uploads and a stream's final text use it; an exact stream's partial results stay best path, for latency
  (``/healthz`` says which decodes what). The pool's threads share the one decoder, which is thread-safe.
* Nothing a client sends becomes a path. The upload is written under a fixed name into a private temporary
  directory that is deleted when the request ends. The client's file name is only echoed back as the result's
  ``path`` label. The page's files are read from the package once, at start-up, and served from memory under
  fixed routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from importlib import resources
from typing import Any, AsyncIterator, Callable

import numpy as np
import torch
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from asr import __version__
from asr.data.audio import AudioError
from asr.decoding.greedy import Decoder, GreedyDecoder
from asr.errors import UsageError
from asr.inference.formats import write_result
from asr.model.card import card_info
from asr.model.file import LoadedModel
from asr.serving import openai_api
from asr.serving.access import Access, AccessMiddleware, is_loopback, refuse
from asr.serving.limits import Limits
from asr.serving.problems import HTTPProblem, TooLong, first_line
from asr.serving.uploads import Upload, decode_upload, display_name, receive_upload

__all__ = ["Access", "HTTPProblem", "Limits", "Recognizer", "TooLong", "create_app", "display_name", "serve"]

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
STREAM_RATES = (1000, 384000)  # the client sample rates a stream accepts, Hz
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


class Recognizer:
    """The loaded model and what the server does with it: transcribe a whole recording, or open a stream.

    Thread-safe: the model is only read (inference mode), so the pool's threads share it.
    """

    def __init__(self, loaded: LoadedModel, decoder: Decoder | None = None, no_speech_threshold: float | None = None):
        """``no_speech_threshold``: drop the segments of a recording whose ``no_speech_prob`` is above it, as
        ``asr transcribe --no-speech-threshold`` does (None: keep every segment with text)."""
        from asr.inference.transcribe import checked_no_speech_threshold

        self.no_speech_threshold = checked_no_speech_threshold(no_speech_threshold)
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
            "no_speech_threshold": self.no_speech_threshold,
            **card_info(self.loaded.metadata),
        }

    def transcribe(self, audio: np.ndarray, name: str) -> dict[str, Any]:
        """The result of ``asr transcribe --format json`` for ``audio`` (mono float32 at the model's rate, as
        :func:`asr.serving.uploads.decode_upload` gives it), labelled ``name``.

        A Transcriber per call, since one keeps its batch queue between calls.
        """
        from asr.inference.transcribe import Transcriber

        transcript = Transcriber(
            self.loaded, decoder=self.decoder, no_speech_threshold=self.no_speech_threshold
        ).run_audio(audio, name)
        if transcript.error is not None:
            raise AudioError(transcript.error)
        return transcript.to_dict()  # its "path" is ``name``

    def open_stream(self, endpoint_silence_s: float | None = None) -> Any:
        """A fresh per-connection recogniser (``accept(samples) -> Partial``, ``finish() -> Final``), closing a
        segment after each pause of ``endpoint_silence_s`` when given."""
        from asr.inference.streaming import open_stream

        recognizer, _ = open_stream(self.loaded, self.decoder, endpoint_silence_s=endpoint_silence_s)
        return recognizer


class Slot:
    """One admitted request's place in the pool: released when the request ends, or, once it has handed a job
    to the pool, when that job ends (a running job cannot be interrupted and keeps its slot until then)."""

    def __init__(self, pool: "InferencePool"):
        self.pool, self.handed_over, self.released = pool, False, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.pool.admitted -= 1

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """``fn(*args)`` in the pool (504 after ``timeout``; a job still queued then never runs)."""
        loop = asyncio.get_running_loop()
        job = self.pool.executor.submit(self.pool._timed, fn, *args)
        self.handed_over = True
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self.release))
        waiter = asyncio.wrap_future(job)
        waiter.add_done_callback(_retrieve_exception)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            job.cancel()  # a job still queued leaves now (its callback releases); a running one keeps its slot
            raise HTTPProblem(
                504, f"transcription did not finish within the server's timeout of {timeout:g} s"
            ) from None


class InferencePool:
    """``max_concurrent`` threads running the model, and at most ``max_queue`` admitted requests beyond them.

    A request is admitted (takes a :class:`Slot`) before its body is read, so what the server holds at once is
    bounded by the capacity. The counters live on the event loop's thread (the jobs' ends are reported there), so
    they need no lock; the count of admitted requests is always the real load.
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

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """A slot for the block (503 when none is left), released at its end unless a job took it over."""
        self.admit()
        slot = Slot(self)
        try:
            yield slot
        finally:
            if not slot.handed_over:
                slot.release()

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """``fn(*args)`` in the pool, in a slot of its own (503 when none is left, 504 after ``timeout``)."""
        async with self.slot() as slot:
            return await slot.run(fn, *args, timeout=timeout)

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


def _choose_format(query: str | None, upload: Upload | None = None) -> str:
    """The response format: ``?format=`` or the form's ``format`` field (both: they must agree), else json."""
    field = upload.fields.get("format") if upload is not None else None
    if query is not None and field is not None and query != field:
        raise HTTPProblem(400, f"format given twice, as ?format={query[:20]} and as the form field {field[:20]!r}")
    chosen = query if query is not None else field if field is not None else "json"
    if chosen not in MEDIA_TYPES:
        raise HTTPProblem(400, f"unknown format {chosen[:40]!r}; choose one of {', '.join(MEDIA_TYPES)}")
    return chosen


def _stream_parameters(ws: WebSocket, model_rate: int) -> tuple[int, str, float]:
    """``?rate=``, ``?encoding=`` and ``?endpoint_ms=`` of a stream request, or :class:`HTTPProblem` 400 naming
    the bad one."""
    encoding = ws.query_params.get("encoding", "s16le")
    if encoding not in STREAM_ENCODINGS:
        raise HTTPProblem(
            400, f"encoding: unknown encoding {encoding[:40]!r}; choose one of {', '.join(STREAM_ENCODINGS)}"
        )
    value = ws.query_params.get("endpoint_ms", "0")
    try:
        endpoint_ms = float(value)
    except ValueError:
        raise HTTPProblem(400, f"endpoint_ms: {value[:40]!r} is not a number of milliseconds") from None
    if not 0 <= endpoint_ms <= 60000:  # (NaN fails this too)
        raise HTTPProblem(400, f"endpoint_ms: {endpoint_ms:g} is out of range (0: off, up to 60000 ms)")
    value = ws.query_params.get("rate")
    if value is None:
        return model_rate, encoding, endpoint_ms
    low, high = STREAM_RATES
    try:
        rate = int(value)
    except ValueError:
        raise HTTPProblem(400, f"rate: {value[:40]!r} is not a whole number of Hz ({low}-{high})") from None
    if not low <= rate <= high:
        raise HTTPProblem(400, f"rate: sample rate {rate} is out of range ({low}-{high} Hz)")
    return rate, encoding, endpoint_ms


def _problem_response(p: HTTPProblem) -> JSONResponse:
    return JSONResponse({"detail": p.message}, status_code=p.status, headers=p.headers)


def _web_files() -> dict[str, tuple[bytes, str]]:
    root = resources.files("asr.serving") / "web"
    return {route: ((root / name).read_bytes(), media) for route, (name, media) in WEB_FILES.items()}


def create_app(recognizer: Recognizer, limits: Limits | None = None, access: Access | None = None) -> FastAPI:
    """The ASGI application: ``recognizer`` shared by every request, ``limits`` enforced on each.

    ``access`` (the address the server listens on, and what else it lets in) turns on the ``Host`` and ``Origin``
    checks; :func:`serve` always passes it. Without it nothing is checked, for an application mounted in a server
    whose addresses only its host knows (and for in-process tests, whose Host is ``testserver``).
    """
    limits = limits or Limits()
    pool = InferencePool(limits.max_concurrent, limits.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown()

    # No /docs or /redoc: their pages load scripts from a CDN. /openapi.json stays.
    app = FastAPI(title="asr", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.recognizer, app.state.limits, app.state.pool, app.state.access = recognizer, limits, pool, access
    if access is not None:
        app.add_middleware(AccessMiddleware, access=access)
    web = _web_files()
    streaming_mode = recognizer.streaming_mode
    decoder = recognizer.decoder_info()

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, p: HTTPProblem) -> JSONResponse:
        return _problem_response(p)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return JSONResponse({"detail": f"internal error: {first_line(e)}"}, status_code=500)

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
        load. Takes no slot: it answers while every slot is busy."""
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
            "parameters": [{"name": "format", "in": "query", "required": False, "schema": {"enum": list(MEDIA_TYPES)}}],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "format": {"type": "string", "enum": list(MEDIA_TYPES)},
                            },
                        }
                    }
                },
            },
        },
    )
    async def transcribe(request: Request) -> Response:
        """Transcribe the uploaded audio (multipart field ``file``); ``format`` (query or form field): json, srt,
        vtt, text or tsv."""
        query_format = request.query_params.get("format")
        _choose_format(query_format)  # a bad ?format= is refused before the body is read
        result, format = await transcribe_upload(request, lambda upload: _choose_format(query_format, upload))
        return Response(write_result(result, format), media_type=MEDIA_TYPES[format])

    async def transcribe_upload(request: Request, check: Callable[[Upload], Any]) -> tuple[dict[str, Any], Any]:
        """The one path from an upload to its result, for every endpoint that takes one (``/v1/transcribe`` and
        OpenAI's ``/v1/audio/transcriptions``): a slot in the pool, the body received within the limits, its form
        fields judged by ``check`` (which raises to refuse them, before any inference), the audio decoded and
        transcribed in the pool. Returns the result (``asr transcribe --format json``'s) and what ``check`` gave."""
        async with pool.slot() as slot:  # before the body: a 503 leaves it unread, so shedding bounds memory
            with tempfile.TemporaryDirectory(prefix="asr-serve-") as directory:
                try:
                    upload = await asyncio.wait_for(receive_upload(request, limits, directory), limits.timeout)
                except asyncio.TimeoutError:
                    raise HTTPProblem(408, f"the upload did not arrive within {limits.timeout:g} s") from None
                checked = check(upload)

                def job() -> dict[str, Any]:  # decoding is CPU work too: off the event loop, in the pool
                    audio = decode_upload(upload.path, upload.name, recognizer.sample_rate, limits)
                    return recognizer.transcribe(audio, upload.name)

                try:
                    result = await slot.run(job, timeout=limits.timeout)
                except AudioError as e:
                    raise HTTPProblem(400, str(e)) from None
        return result, checked

    openai_api.add_routes(
        app, transcribe_upload, HTTPProblem, language=str(recognizer.loaded.metadata.get("language") or "unknown")
    )

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        try:
            rate, encoding, endpoint_ms = _stream_parameters(ws, recognizer.sample_rate)
        except HTTPProblem as p:
            return await _refuse_handshake(ws, p)
        await _stream_session(ws, recognizer, pool, limits, rate, encoding, endpoint_ms)

    return app


async def _refuse_handshake(ws: WebSocket, p: HTTPProblem) -> None:
    """Refuse a WebSocket before accepting it: an HTTP ``p.status`` with the JSON message, where the server
    supports the denial extension (uvicorn does); else accept, send the ``error`` message and close (1008)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        return await refuse(ws.scope, ws.receive, ws.send, p.status, p.message)
    await ws.accept()
    await ws.send_json({"type": "error", "message": p.message})
    await ws.close(1008)


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
    client sends ``{"type": "end"}``, or the stream reaches ``max_duration``, goes quiet for ``idle_timeout``, or
    sends audio slower than ``min_stream_speed`` (only the time spent waiting for the client counts, not the
    server's own computing). With ``endpoint_ms`` > 0 a ``segment`` message closes each stretch of speech after
    that long a pause (the partial's ``open`` is then the open segment's text; docs/streaming.md)."""
    await ws.accept()

    async def refuse(code: int, message: str) -> None:
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code)

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
        received, text, stopped, waited = 0, "", None, 0.0
        grace, speed = limits.idle_timeout, limits.min_stream_speed
        while stopped is None:
            # wait for the next message no longer than idle_timeout, nor past the moment the stream would fall
            # below min_stream_speed (the audio so far covers received / rate / speed seconds of waiting)
            wait = limits.idle_timeout
            if speed > 0:
                wait = min(wait, max(0.0, grace + received / rate / speed - waited))
            start = time.monotonic()
            try:
                message = await asyncio.wait_for(ws.receive(), wait)
            except asyncio.TimeoutError:
                waited += time.monotonic() - start
                if wait >= limits.idle_timeout:
                    stopped = f"no audio for {limits.idle_timeout:g} s"
                else:
                    stopped = (
                        f"the stream sent {received / rate:.1f} s of audio in {waited:.1f} s: slower than this "
                        f"server's minimum of {speed:g} s of audio a second"
                    )
                break
            waited += time.monotonic() - start
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
            await refuse(1011, f"stream failed: {first_line(e)}")
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


def describe_decoding(decoder: dict[str, Any]) -> str:
    """:meth:`Recognizer.decoder_info` as the start-up log says it."""
    if decoder["name"] == "greedy":
        return "greedy decoding" + (
            f", {decoder['hotwords']} hotwords by word spotting" if decoder.get("hotwords") else ""
        )
    settings = ", ".join(
        f"{k} {v}" for k, v in decoder.items() if k not in ("name", "stream_partials") and v is not None
    )
    streams = (
        "partial results greedy, final text with the LM"
        if decoder["stream_partials"] == "greedy"
        else "each segment with the LM"
    )
    return f"{decoder['name']} decoding ({settings}); streams: {streams}"


def server_options(
    recognizer: Recognizer,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    allow_origins: tuple[str, ...] = (),
    allow_hosts: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The arguments of ``uvicorn.run`` (or ``uvicorn.Config``) for :func:`serve`: the application with its
    Host/Origin checks for ``host:port``, and the guarded HTTP protocol (header deadline, idle-first connection
    cap) in place of uvicorn's ``limit_concurrency``, which answers 503 to everyone, ``/healthz`` included, once
    idle sockets fill it. Raises :class:`UsageError` for a port outside 0-65535."""
    from asr.serving.connections import guarded

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {port}")
    limits = limits or Limits()
    access = Access(host, port or None, tuple(allow_origins), tuple(allow_hosts))
    return dict(
        app=create_app(recognizer, limits, access),
        host=host,
        port=port,
        log_level="info",
        http=guarded(limits.idle_timeout, limits.max_connections),
        timeout_keep_alive=5,
        ws_max_size=4 * 1024 * 1024,  # one message: 4 MiB is 2 minutes of 16 kHz s16le, far more than a chunk
    )


def serve(
    recognizer: Recognizer,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    label: str = "model",
    allow_origins: tuple[str, ...] = (),
    allow_hosts: tuple[str, ...] = (),
) -> None:
    """Serve ``recognizer`` (a model loaded once, and its decoder) until interrupted; ``label`` names it in the log.
    ``allow_origins``: origins (``https://app.example``; ``*`` for any) whose pages may use the server besides its
    own; ``allow_hosts``: further names it answers to (docs/serve.md, "Who may use it").

    >>> loaded = load_model("exp/synth/model.pt")
    >>> serve(Recognizer(loaded, BeamSearchDecoder(loaded.tokenizer, "lm.arpa")))
    """
    import uvicorn

    limits = limits or Limits()
    options = server_options(recognizer, host, port, limits, allow_origins, allow_hosts)
    if recognizer.model.device.type == "cpu":
        # The pool's threads share the cores instead of each asking for all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // limits.max_concurrent))
    if not is_loopback(host):
        log.warning("listening on %s: the server has no authentication; anyone who can reach it can use it", host)
    if "*" in allow_origins:
        log.warning("--allow-origin '*': pages of any web site the user opens may use this server")
    log.info(
        "model %s (streaming: %s), %s; page and API at http://%s:%d/",
        label,
        recognizer.streaming_mode,
        describe_decoding(recognizer.decoder_info()),
        f"[{host}]" if ":" in host else host,
        port,
    )
    uvicorn.run(**options)
