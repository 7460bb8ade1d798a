"""OpenAI's audio API shape on ``asr serve``: ``POST /v1/audio/transcriptions``.

Many clients already speak it (the ``openai`` SDKs, editors, note-taking apps, ``curl`` recipes), so the server
answers it as well as its own ``/v1/transcribe``. It is a second face on the same path: the upload is read, limited
(size, duration, queue, timeouts) and decoded exactly as ``/v1/transcribe`` does it (the ``transcribe_upload``
callable :func:`asr.serving.server.create_app` passes in), and only the request's fields and the response's shape
are OpenAI's:

* multipart fields ``file`` (required), ``model`` (any name: the server has one model; it is accepted and not
  checked), ``response_format`` (``json``, the default: ``{"text": ...}``; ``text``; ``srt``; ``vtt``;
  ``verbose_json``), ``timestamp_granularities[]`` (``segment``, the default, and/or ``word``; used by
  ``verbose_json`` only, as OpenAI documents), and ``language``, ``prompt``, ``temperature``, which are accepted
  and have no effect (the decoding is the server's: greedy or its ``--lm``);
* ``verbose_json`` has OpenAI's keys. What a CTC model has no counterpart for is filled honestly and said here:
  ``tokens`` is empty, ``temperature`` is 0 (decoding is deterministic), ``no_speech_prob`` is the segment's own
  (:func:`asr.decoding.alignment.no_speech_probability`, 0 where a result has none), ``avg_logprob`` is the mean log of the segment's word
  confidences (0 without words), ``compression_ratio`` is the text's length over its zlib-compressed length, as
  whisper computes it, and ``seek`` is the segment's start in 10 ms frames;
* errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with the status ``/v1/transcribe`` would
  give (400, 408, 413, 503 with ``Retry-After``, 504).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from asr.inference.formats import write_result

RESPONSE_FORMATS = {
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "verbose_json": "application/json",
}
GRANULARITIES = ("segment", "word")
ROUTE = "/v1/audio/transcriptions"

# (request, check of the upload's form fields, run before any inference) -> (the result of `asr transcribe
# --format json`, what the check gave); raises the server's HTTPProblem for what /v1/transcribe would refuse.
TranscribeUpload = Callable[[Request, Callable[[Any], Any]], Awaitable[tuple[dict[str, Any], Any]]]


class FieldRefused(Exception):
    """A form field the endpoint refuses (an HTTP 400 naming the field as ``param``, like the server's HTTPProblem)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object; ``type`` as OpenAI names the class of the status."""
    kind = {
        400: "invalid_request_error",
        408: "timeout",
        413: "invalid_request_error",
        503: "server_error",
        504: "timeout",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def read_options(fields: dict[str, list[str]]) -> tuple[str, list[str]]:
    """``response_format`` and the timestamp granularities of a request's form fields, checked."""
    fmt = (fields.get("response_format") or ["json"])[-1].strip() or "json"
    if fmt not in RESPONSE_FORMATS:
        raise FieldRefused(
            f"response_format {fmt!r} is not supported; choose one of {', '.join(RESPONSE_FORMATS)}", "response_format"
        )
    raw = [*fields.get("timestamp_granularities[]", []), *fields.get("timestamp_granularities", [])]
    granularities = [g.strip() for value in raw for g in value.split(",") if g.strip()]
    bad = [g for g in granularities if g not in GRANULARITIES]
    if bad:
        raise FieldRefused(
            f"timestamp_granularities {bad[0]!r} is not supported; choose segment and/or word",
            "timestamp_granularities[]",
        )
    if (fields.get("stream") or ["false"])[-1].strip().lower() == "true":
        raise FieldRefused("stream=true is not supported here; live text is WS /v1/stream", "stream")
    return fmt, list(dict.fromkeys(granularities)) or ["segment"]


def verbose_json(result: dict[str, Any], granularities: list[str], language: str) -> dict[str, Any]:
    """``result`` (``asr transcribe --format json``) in the shape of OpenAI's ``verbose_json``."""
    out: dict[str, Any] = {
        "task": "transcribe",
        "language": language,
        "duration": result.get("duration") or 0.0,
        "text": result.get("text") or "",
    }
    segments = result.get("segments") or []
    if "segment" in granularities:
        out["segments"] = [_segment(i, s) for i, s in enumerate(segments)]
    if "word" in granularities:
        out["words"] = [
            {"word": w["word"], "start": w["start"], "end": w["end"]} for s in segments for w in s.get("words") or []
        ]
    return out


def _segment(index: int, s: dict[str, Any]) -> dict[str, Any]:
    text = s.get("text") or ""
    confidences = [max(float(w.get("confidence", 1.0)), 1e-6) for w in s.get("words") or []]
    raw = text.encode("utf-8")
    return {
        "id": index,
        "seek": int(round(float(s["start"]) * 100)),
        "start": s["start"],
        "end": s["end"],
        "text": text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(sum(math.log(c) for c in confidences) / len(confidences), 4) if confidences else 0.0,
        "compression_ratio": round(len(raw) / len(zlib.compress(raw)), 4) if raw else 0.0,
        "no_speech_prob": s.get("no_speech_prob") or 0.0,
    }


def render(result: dict[str, Any], fmt: str, granularities: list[str], language: str) -> Response:
    """The response body of one transcription in ``response_format`` ``fmt``."""
    if fmt == "json":
        return JSONResponse({"text": result.get("text") or ""})
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(result, granularities, language))
    return Response(write_result(result, fmt), media_type=RESPONSE_FORMATS[fmt])


def add_routes(
    app: FastAPI, transcribe_upload: TranscribeUpload, problem: type[Exception], language: str = "unknown"
) -> None:
    """Register ``POST /v1/audio/transcriptions`` on ``app``. ``transcribe_upload(request)`` reads, limits and
    transcribes the upload as ``/v1/transcribe`` does and returns (result, form fields); ``problem`` is the
    server's refusal type (with ``status``, ``message``, ``headers``), answered here in OpenAI's error shape."""

    @app.post(
        ROUTE,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "model": {"type": "string"},
                                "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
                                "timestamp_granularities[]": {
                                    "type": "array",
                                    "items": {"type": "string", "enum": list(GRANULARITIES)},
                                },
                            },
                        }
                    }
                },
            }
        },
    )
    async def transcriptions(request: Request) -> Response:
        """OpenAI's ``audio.transcriptions.create``: the upload in ``file``, the answer in ``response_format``."""

        def options(upload: Any) -> tuple[str, list[str], str]:  # asr.serving.uploads.Upload
            fmt, granularities = read_options(upload.all_fields)
            return fmt, granularities, (upload.fields.get("language") or "").strip() or language

        try:
            result, (fmt, granularities, answer_language) = await transcribe_upload(request, options)
        except FieldRefused as e:
            return JSONResponse(error_body(e.message, 400, e.param), status_code=400)
        except problem as p:  # type: ignore[misc]
            param = "file" if p.status in (400, 413) else None
            return JSONResponse(error_body(p.message, p.status, param), status_code=p.status, headers=p.headers)
        return render(result, fmt, granularities, answer_language)
