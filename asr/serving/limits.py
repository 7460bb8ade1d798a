"""What one ``asr serve`` accepts: each field is an option of the command (``max_upload_mb`` is ``--max-upload-mb``).

Every limit is a bound on something a client controls: bytes, seconds of audio, samples a second, time spent
sending nothing, open connections. A limit that is not a finite number would bound nothing (``inf`` MB made every
upload a 500), so each is checked when the server is configured, before it listens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from asr.errors import UsageError


@dataclass
class Limits:
    """What one server accepts; each is an ``asr serve`` option (the field name with dashes) unless noted."""

    max_upload_mb: float = 25.0  # request body, and so the largest file (413 beyond)
    max_duration: float = 600.0  # seconds of audio in one upload or one stream (413 / stream ended beyond)
    max_concurrent: int = 2  # inferences running at once (threads sharing the one model)
    max_queue: int = 32  # requests (receiving or waiting) or open streams beyond those (503 + Retry-After beyond)
    timeout: float = 120.0  # seconds for an upload to arrive, and for a request to be served
    idle_timeout: float = 10.0  # seconds a client may send nothing: before a request's headers are complete,
    # between pieces of an upload body (408), between a stream's messages (the stream gets its final and ends)
    max_connections: int = 256  # open HTTP connections; past it the longest-idle one is closed to make room
    min_stream_speed: float = 0.5  # seconds of audio a stream must send per second it waits, once it has waited
    # idle_timeout seconds (live audio is 1.0; 0 turns the rule off); no CLI option
    min_upload_rate: float = 16384.0  # bytes a second an upload body must average once it has taken idle_timeout
    # seconds (a 25 MB file at that rate would take 26 minutes; 0 turns the rule off); no CLI option
    max_input_rate: int = 1_536_000  # sample rate x channels of an upload (8 channels at 192 kHz): decoding memory
    # and time per second of audio grow with it (413 beyond); no CLI option

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_duration", "timeout", "idle_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UsageError(f"{_flag(name)} must be a finite number > 0, got {value}")
        for name in ("min_stream_speed", "min_upload_rate"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise UsageError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        for name, least in (("max_concurrent", 1), ("max_queue", 0), ("max_connections", 1), ("max_input_rate", 1)):
            if getattr(self, name) < least:
                raise UsageError(f"{_flag(name)} must be >= {least}, got {getattr(self, name)}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def _flag(name: str) -> str:
    return (
        f"{name} (--{name.replace('_', '-')})"
        if name not in ("min_stream_speed", "min_upload_rate", "max_input_rate")
        else name
    )
