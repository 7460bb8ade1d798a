"""The self-contained model file (``model.pt``): feature settings, tokenizer, dimensions and weights.

It holds only plain Python values and tensors, so it loads with ``torch.load(..., weights_only=True)``: opening
a model file can never execute code.

Compatibility rules, so that files outlive the release that wrote them:

* A release may *add* a field that an older reader can safely ignore (top level, or inside ``features``,
  ``model``, ``tokenizer``) without changing ``format_version``; an older release loads such a file and warns,
  naming the fields it ignored.
* A change that an older reader would get wrong (a field renamed, a meaning changed, weights laid out anew) bumps
  ``format_version``. A release refuses a file newer than it knows with a message saying to upgrade asr, and
  migrates an older one in memory through :data:`MIGRATIONS`, one small function per version step, so every file
  ever written stays loadable.

Format history:

1. features, model dimensions, tokenizer (a plain dict with a ``type``), metadata, state dict, asr_version.
   (Tokenizer ``type: bpe``, a sentencepiece model as ``model_proto`` bytes, is an addition, not a version step:
   an older release refuses such a file naming the unknown tokenizer type, and every char file reads as before.)
2. adds ``created`` (UTC time of writing, ISO 8601: which of two copies is newer without trusting file times,
   which copying resets; ``None`` for migrated v1 files) and ``frame_seconds`` (seconds of audio per output
   frame: what timestamps, alignment and streaming need, readable by any tool without building the model; it is
   checked against the dimensions on load, so an edited file cannot disagree with itself).
   (``model.lookahead_frames``, the frames of a look-ahead layer after the recurrent stack, is an addition, not a
   version step, as ``bpe`` was: a file without it, every file written before it, loads with 0, no look-ahead,
   and a file with 0 loads in an older release as before; an older release warns that it ignores the field in
   a file with look-ahead and then refuses it, since its state dict holds the layer's weights.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

import torch

from asr import __version__
from asr.data.tokenizer import Tokenizer, tokenizer_from_dict
from asr.errors import ModelFileError, UsageError  # noqa: F401  (ModelFileError re-exported: raised here)
from asr.model.features import FeatureConfig
from asr.model.network import ASRModel, ModelDimensions, frame_seconds

log = logging.getLogger(__name__)

FORMAT = "asr-rnn-ctc"
FORMAT_VERSION = 2
TOP_LEVEL_FIELDS = (
    "format",
    "format_version",
    "asr_version",
    "created",
    "frame_seconds",
    "features",
    "model",
    "tokenizer",
    "metadata",
    "state_dict",
)


class UnknownFieldsWarning(UserWarning):
    """A model file has fields this release does not know (written by a newer release); they were ignored."""


@dataclass
class LoadedModel:
    model: ASRModel
    tokenizer: Tokenizer
    metadata: dict[str, Any]
    created: str | None = None
    format_version: int = FORMAT_VERSION  # as stored in the file, before any migration
    path: str | None = None  # the file it was loaded from, absolute (reports name it and its SHA-256)

    @property
    def frame_seconds(self) -> float:
        return frame_seconds(self.model.feature_config, self.model.dims)


def save_model(
    path: str | os.PathLike, model: ASRModel, tokenizer: Tokenizer, metadata: dict[str, Any] | None = None
) -> None:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "asr_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "frame_seconds": frame_seconds(model.feature_config, model.dims),
        "features": dataclasses.asdict(model.feature_config),
        "model": dataclasses.asdict(model.dims),
        "tokenizer": tokenizer.to_dict(),
        "metadata": metadata or {},
        "state_dict": state,
    }
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rewrite_metadata(path: str | os.PathLike, update: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Replace a model file's metadata with ``update(metadata)`` and return it; weights and everything else are
    kept byte for byte as tensors, and the file is replaced atomically (``asr evaluate --update-card``)."""
    path = str(path)
    load_model(path)  # the same checks (and errors) as any load, before touching the file
    obj = torch.load(path, map_location="cpu", weights_only=True)
    obj["metadata"] = update(dict(obj.get("metadata") or {}))
    tmp = f"{path}.tmp"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ModelFileError(f"{path}: cannot rewrite the model file ({e.strerror or e})") from None
    return obj["metadata"]


def _v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    features = FeatureConfig(**_known(obj["features"], FeatureConfig))
    dims = ModelDimensions(**_known(obj["model"], ModelDimensions))
    return {**obj, "format_version": 2, "created": None, "frame_seconds": frame_seconds(features, dims)}


# MIGRATIONS[v] turns a file of format version v into version v + 1 (in memory; the file is never rewritten).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def _known(d: dict[str, Any], cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _first_lines(e: BaseException) -> str:
    """The reason of ``e`` on one line, never cut inside a line: torch's explanations put the cause after a long
    preamble. A heading line ending in ':' (``Error(s) in loading state_dict for ASRModel:``) keeps the first
    item under it, and the rest is counted."""
    lines = [" ".join(line.split()) for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
        return f"{lines[0]} {lines[1]}{more}"
    return lines[0]


def _warn_unknown(path: str, where: str, unknown: set[str], written_by: str) -> None:
    if unknown:
        msg = (
            f"{path}: ignored {where} field(s) unknown to asr {__version__}: {', '.join(sorted(unknown))} "
            f"(written by asr {written_by}; a newer release may use them)"
        )
        warnings.warn(msg, UnknownFieldsWarning, stacklevel=3)


def _migrate(path: str, obj: dict[str, Any]) -> tuple[dict[str, Any], int]:
    version = obj.get("format_version")
    written_by = obj.get("asr_version", "?")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path}: model file is damaged (format version {version!r} is not a version number)")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version} was written by asr {written_by}, newer than this asr "
            f"{__version__} (reads format versions up to {FORMAT_VERSION}); upgrade asr to load it"
        )
    stored = version
    try:
        while version < FORMAT_VERSION:
            obj = MIGRATIONS[version](obj)
            version += 1
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise ModelFileError(
            f"{path}: model file format version {stored} is damaged: cannot migrate it to "
            f"version {FORMAT_VERSION} ({_first_lines(e)})"
        ) from None
    if stored != FORMAT_VERSION:
        log.debug("%s: migrated model file format %d -> %d", path, stored, FORMAT_VERSION)
    return obj, stored


def check_features(values: dict[str, Any]) -> None:
    """Raise ``ValueError`` for feature settings (a ``features`` section) no audio can have: each would fail
    later, far from the file (``sample_rate: 0`` as a ZeroDivisionError in the first timestamp, a zero hop as an
    empty spectrogram)."""
    f = {**dataclasses.asdict(FeatureConfig()), **_known(values, FeatureConfig)}

    def number(name: str, integer: bool = False) -> float:
        value = f[name]
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            raise ValueError(f"features.{name} {value!r}: not a finite {'whole ' if integer else ''}number")
        return value

    rate = number("sample_rate", integer=True)
    if rate < 1000:
        raise ValueError(f"features.sample_rate {rate}: not a usable sample rate (at least 1000 Hz)")
    if number("n_fft", integer=True) < 2 or number("n_mels", integer=True) < 1:
        raise ValueError(f"features.n_fft {f['n_fft']} / n_mels {f['n_mels']}: must be at least 2 / 1")
    if number("win_ms") <= 0 or round(rate * f["win_ms"] / 1000) < 1:
        raise ValueError(f"features.win_ms {f['win_ms']}: the window must hold at least one sample")
    if number("hop_ms") <= 0 or round(rate * f["hop_ms"] / 1000) < 1:
        raise ValueError(f"features.hop_ms {f['hop_ms']}: the hop must be at least one sample")
    nyquist = rate / 2
    top = nyquist if f["f_max"] is None else number("f_max")
    if not 0 <= number("f_min") < top <= nyquist:
        raise ValueError(
            f"features.f_min {f['f_min']} / f_max {f['f_max']}: need 0 <= f_min < f_max <= {nyquist:g} "
            "(half the sample rate)"
        )


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 is a zip archive
_WEIGHTS_ONLY = "Weights only load failed"


def read_torch_file(path: str | os.PathLike, what: str = "model file") -> Any:
    """``torch.load(path, weights_only=True)``, with every way it fails as one :class:`ModelFileError` line that
    tells the three apart: a file cut short (a download or copy that stopped: "truncated"), a pickle that holds
    code or objects other than tensors and plain values (refused, nothing run: a model file never has them),
    and bytes that are no PyTorch file at all. ``what`` names the file's kind in the messages."""
    path = str(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: {what} not found")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as e:
        raise ModelFileError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: a folder, not a {what}") from None
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
    ) as e:  # what torch's readers and the legacy unpickler raise on cut or arbitrary bytes
        raise _load_error(path, what, head, e) from None


def _load_error(path: str, what: str, head: bytes, e: BaseException) -> ModelFileError:
    text = str(e).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    size = os.path.getsize(path)
    if text.startswith(_WEIGHTS_ONLY) and re.search(r"\bglobal\b|\bclass\b", text, re.IGNORECASE):
        # torch's explanation, minus its preamble about weights_only=False (which would run the code) and its
        # pointer to the documentation: the line that names what the file holds, kept whole.
        named = [ln for ln in lines if re.search(r"\bGLOBAL\b", ln)] or [ln for ln in lines[1:] if "class" in ln]
        reason = named[0] if named else lines[0]
        reason = re.sub(r"^WeightsUnpickler error: ", "", reason)
        reason = re.split(r"(?<=[.]) (?=Please use)", reason)[0]  # not its advice to allow-list the class
        return ModelFileError(
            f"{path}: refused, it cannot be loaded safely: the {what} holds Python objects other than tensors and "
            f"plain values, which could run code when loaded; nothing of it was run ({reason})"
        )
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError):
            bad = "(no directory)"
        if bad is not None:
            return ModelFileError(
                f"{path}: {what} is truncated or damaged ({size} bytes; the archive "
                f"{'ends before its directory' if bad == '(no directory)' else f'member {bad} is damaged'}): "
                "a download or copy that stopped; fetch or copy it again"
            )
    elif isinstance(e, EOFError) or "truncated" in text:
        return ModelFileError(f"{path}: {what} is truncated ({size} bytes; the data ends early): copy it again")
    if head[:1] == b"\x80" and not text.startswith(_WEIGHTS_ONLY + " because") and "operand" in text:
        first = "a Python pickle, not one torch.save wrote"
    elif (
        text.startswith(_WEIGHTS_ONLY)
        or not lines
        or isinstance(e, (KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError))
    ):
        first = "not a PyTorch file"  # the unpicklers' errors on arbitrary bytes ("Unsupported operand 110") say nothing useful
    else:
        first = lines[0]
    return ModelFileError(f"{path}: not an asr {what} (not readable as a PyTorch file: {first})")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is the first GPU when there is one, else the CPU (the default of every command and of
    :func:`asr.load_model`); anything else is handed to :class:`torch.device` (``cpu``, ``cuda:1``, ...)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:1, ...") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model file of this or any older format version (migrated in memory; see the module docstring).

    ``path`` may also be a name in the model registry, an http(s):// or file:// URL, or ``hf://org/repo[/file]``:
    the file is then fetched into the cache first, checked against its SHA-256 (:mod:`asr.model.cache`).
    ``device`` may be ``"auto"`` (:func:`resolve_device`).
    """
    path = str(path)
    device = resolve_device(device)
    if not os.path.exists(path):
        from asr.model.cache import fetch_model, is_remote

        if is_remote(path):  # a registry name or a URL: fetched into the cache (asr.model.cache)
            path = str(fetch_model(path))
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, dict) and "pytorch-lightning_version" in obj:
            hint = " (this is a Lightning training checkpoint; pass the exported DIR/model.pt instead)"
        raise ModelFileError(f"{path}: not an asr model file{hint}")
    obj, stored_version = _migrate(path, obj)
    written_by = str(obj.get("asr_version", "?"))
    newer = "" if written_by == __version__ else f"; written by asr {written_by}, this is asr {__version__}"
    try:
        _warn_unknown(path, "top-level", set(obj) - set(TOP_LEVEL_FIELDS), written_by)
        for key, cls in (("features", FeatureConfig), ("model", ModelDimensions)):
            _warn_unknown(path, key, set(obj[key]) - {f.name for f in dataclasses.fields(cls)}, written_by)
        check_features(obj["features"])
        features = FeatureConfig(**_known(obj["features"], FeatureConfig))
        dims = ModelDimensions(**_known(obj["model"], ModelDimensions))
        tokenizer = tokenizer_from_dict(obj["tokenizer"])
        _warn_unknown(path, "tokenizer", set(obj["tokenizer"]) - set(tokenizer.to_dict()), written_by)
        if dims.vocab_size != len(tokenizer):
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} symbols (blank included) but the output layer has "
                f"{dims.vocab_size} (model.vocab_size): the alphabet does not belong to these weights"
            )
        expected = frame_seconds(features, dims)
        if not math.isclose(float(obj["frame_seconds"]), expected, rel_tol=1e-9):
            raise ValueError(f"frame_seconds {obj['frame_seconds']} but the dimensions give {expected}")
        model = ASRModel(dims, features, compute_filterbank=False)  # the saved filterbank is loaded below
        model.load_state_dict(obj["state_dict"])
        metadata = dict(obj.get("metadata") or {})
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, ZeroDivisionError, OverflowError) as e:
        why = f"missing field {e}" if isinstance(e, KeyError) else _first_lines(e)
        raise ModelFileError(f"{path}: model file is damaged or inconsistent ({why}{newer})") from None
    model.to(device).eval()
    created = obj.get("created")
    created = created if isinstance(created, str) else None
    return LoadedModel(model, tokenizer, metadata, created, stored_version, os.path.abspath(path))


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in chunks: what a report records to say which model it scored."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()
