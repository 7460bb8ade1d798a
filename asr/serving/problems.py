"""The refusals a server answers with: an HTTP status, a one-line message a client can act on, and headers."""

from __future__ import annotations

import re


class HTTPProblem(Exception):
    """A request the server refuses: the status code, a one-line message and any extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class TooLong(HTTPProblem):
    """413 for audio past ``max_duration``; ``seconds`` None when decoding stopped at the limit (length unknown)."""

    def __init__(self, name: str, seconds: float | None, limit: float):
        length = f"is {seconds:.1f} s long" if seconds is not None else f"is longer than {limit:g} s"
        super().__init__(413, f"{name}: audio {length}; this server accepts at most {limit:g} s")


def first_line(e: BaseException) -> str:
    """An exception as one bounded line for a client."""
    text = str(e).strip()
    # libsndfile names the object it was given ("Error opening <_io.BytesIO object at 0x...>: "): noise to a client.
    text = re.sub(r"^Error opening <[^>]*>: ", "", text)
    return text.splitlines()[0][:200] if text else type(e).__name__
