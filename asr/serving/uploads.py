"""An upload, from request body to samples: received to a private file, then decoded once, within limits.

Memory is what bounds a server, so nothing here holds more than a bounded amount of anything a client sends:

* The body is parsed as it arrives; its file part spools to disk past 1 MiB (the multipart parser's spool), and
  is copied under a fixed name into the request's private temporary directory (mode 0700, deleted when the request
  ends), because the decoder reads files. A body over ``max_upload_mb`` is refused (413) from its declared length
  before it is read, and counted as it arrives (a client may lie or send chunked); one that stops arriving for
  ``idle_timeout`` seconds, or arrives slower than ``min_upload_rate`` once it has had that long, is 408: the
  request holds a slot while its body arrives, and a trickle must not keep it for all of ``timeout``.
* Decoding is :func:`asr.data.audio.read_blocks`, the block-wise reader ``asr transcribe`` uses for long files:
  down-mixed to mono and resampled to the model's rate one second at a time, so memory is that of the mono audio
  at the model's rate (at most ``max_duration`` of it) plus one second of the file. The length limit is judged
  from those decoded samples, and decoding stops the moment they pass it: a header can lie (a FLAC written to a
  pipe declares no length at all), samples cannot. A header that declares a length past the limit is refused
  before any decoding, as the cheap first check.
* The samples a second the decoder must handle (rate x channels) are capped by ``max_input_rate``: a tiny FLAC
  of silence can declare 8 channels at 192 kHz (96 times the samples of 16 kHz mono), and the reader's one-second
  read, and the decoding time, grow with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from asr.data.audio import AudioError, audio_info, read_blocks
from asr.serving.limits import Limits
from asr.serving.problems import HTTPProblem, TooLong

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
# Header frame counts at or above this are no length: libsndfile reports INT64_MAX for a FLAC that leaves its
# length open (total_samples 0). Such a file is judged by its samples alone.
UNKNOWN_LENGTH = 2**62
SPOOL_BYTES = 1024 * 1024  # a file part beyond this goes to disk while the body arrives
BLOCK_SECONDS = 5.0  # decoded audio is gathered in blocks of this many seconds at the file's rate


@dataclass
class Upload:
    """A received upload: the file part at ``path`` (a fixed name in a private directory), the client's file
    name as a label only, and the form's text fields (``format``, ...)."""

    path: str
    name: str
    fields: dict[str, str] = field(default_factory=dict)  # the last value of each
    # every value of each, in order: a field may repeat (OpenAI's timestamp_granularities[]=word, ...=segment)
    all_fields: dict[str, list[str]] = field(default_factory=dict)


def display_name(filename: str | None) -> str:
    """The client's file name as a label: its last path component, printable, bounded. Never opened."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[:MAX_NAME_CHARS]
    return name or "upload"


async def receive_upload(request: Request, limits: Limits, directory: str) -> Upload:
    """The multipart request's ``file`` field written to ``directory``/upload, and its text fields.

    Raises :class:`HTTPProblem`: 413 past ``max_upload_mb``, 408 when the body stops arriving for ``idle_timeout``
    seconds, 400 for a request that is not a multipart upload with one ``file``.
    """
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
        # Only the time spent waiting for the client counts (not the parser's own work): after idle_timeout
        # seconds, the body must have averaged min_upload_rate bytes a second, and no gap may last idle_timeout.
        received, waited = 0, 0.0
        grace, rate = limits.idle_timeout, limits.min_upload_rate
        chunks = request.stream().__aiter__()
        while True:
            wait = limits.idle_timeout if rate <= 0 else min(limits.idle_timeout, grace + received / rate - waited)
            start = time.monotonic()
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), max(0.0, wait))
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                waited += time.monotonic() - start
                if wait >= limits.idle_timeout:
                    raise HTTPProblem(
                        408, f"the upload stopped arriving: nothing for {limits.idle_timeout:g} s"
                    ) from None
                raise HTTPProblem(
                    408,
                    f"the upload is arriving too slowly: {received} bytes in {waited:.1f} s; this server needs "
                    f"{rate:g} bytes a second",
                ) from None
            waited += time.monotonic() - start
            received += len(chunk)
            if received > limit:
                raise too_big
            yield chunk

    parser = MultiPartParser(request.headers, body(), max_files=1, max_fields=8)
    parser.spool_max_size = SPOOL_BYTES
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise HTTPProblem(400, f"malformed multipart upload: {e.message}") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPProblem(400, "no file in the upload: send the audio in a multipart field named 'file'")
        path = os.path.join(directory, "upload")
        await asyncio.get_running_loop().run_in_executor(None, _copy, upload.file, path)
        all_fields: dict[str, list[str]] = {}
        for k, v in form.multi_items():
            if isinstance(v, str):
                all_fields.setdefault(k, []).append(v)
        fields = {k: v[-1] for k, v in all_fields.items()}
        return Upload(path, display_name(upload.filename), fields, all_fields)
    finally:
        await form.close()


def _copy(source, path: str) -> None:
    source.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)


def decode_upload(path: str, name: str, sample_rate: int, limits: Limits) -> np.ndarray:
    """The upload at ``path`` as mono float32 at ``sample_rate``, decoded once, in blocks, within ``limits``.

    Raises :class:`TooLong` (413) past ``max_duration`` (from the header when it declares a length, else from
    the samples as they are decoded), :class:`HTTPProblem` 413 past ``max_input_rate``, and :class:`AudioError`
    naming ``name`` for anything that is not usable audio (any format libsndfile reads is).
    """
    try:
        info = audio_info(path, max_seconds=0)  # an unknown length is not counted here: the samples judge it
        rate = info.sample_rate
        if rate <= 0:
            raise AudioError(f"{path}: invalid sample rate {rate}")
        if rate * info.channels > limits.max_input_rate:
            raise HTTPProblem(
                413,
                f"{name}: {info.channels} channels at {rate} Hz is {rate * info.channels} samples a second; this "
                f"server decodes at most {limits.max_input_rate} (8 channels at 192 kHz is 1536000)",
            )
        declared = info.declared and 0 < info.frames < UNKNOWN_LENGTH
        if declared and info.frames / rate > limits.max_duration:  # the cheap first check
            raise TooLong(name, info.frames / rate, limits.max_duration)
        most = int(limits.max_duration * sample_rate)
        # One buffer, sized from the header (plus a second: resampling rounds) and grown by doubling past it, never
        # beyond what the limit allows: blocks are not kept in a list to be joined, which would double the peak.
        expected = info.frames * sample_rate // rate + sample_rate if declared else 60 * sample_rate
        audio = np.empty(min(most + 1, expected), dtype=np.float32)
        filled, warnings = 0, []
        blocks = read_blocks(path, sample_rate, BLOCK_SECONDS, warnings)
        try:
            for block in blocks:
                take = min(block.shape[0], most + 1 - filled)
                if filled + take > audio.shape[0]:
                    grown = np.empty(min(most + 1, max(2 * audio.shape[0], filled + take)), dtype=np.float32)
                    grown[:filled] = audio[:filled]
                    audio = grown
                audio[filled : filled + take] = block[:take]
                filled += take
                if filled > most:
                    raise TooLong(name, None, limits.max_duration)
        finally:
            blocks.close()
    except AudioError as e:
        raise AudioError(str(e).replace(path, name)) from None
    for warning in warnings:
        log.warning("%s", warning.replace(path, name))
    return audio[:filled]
