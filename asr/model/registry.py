"""Named models: a registry file mapping each name to where the model lives, its SHA-256, licence and card.

``asr.load_model("NAME")`` and ``asr models download NAME`` look names up here. The registry shipped in the
package (``asr/model/registry.json``) names the models the project publishes; ``$ASR_MODEL_REGISTRY`` adds files
of one's own (several, separated by ``os.pathsep``; their entries win over the shipped ones), e.g. a lab's
models on an internal server. The format, version 1 (docs/models.md)::

    {
      "format": "asr-model-registry",
      "version": 1,
      "models": {
        "synth-en-commands": {
          "url": "https://example.org/models/synth-en-commands/model.pt",   # http(s), file:// or hf://org/repo/file
          "sha256": "64 hex digits",                                          # required for http(s) and file
          "licence": "Apache-2.0",                                            # of the weights (and their data)
          "card": "https://example.org/models/synth-en-commands/MODEL_CARD.md",
          "description": "one line"                                           # optional
        }
      }
    }

A SHA-256 is required for every URL that is not on the Hugging Face Hub (whose own revision pinning covers it):
a name is a promise that it always means the same bytes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from asr.errors import RegistryError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

REGISTRY_ENV = "ASR_MODEL_REGISTRY"
FORMAT = "asr-model-registry"
VERSION = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    url: str
    sha256: str | None
    licence: str | None = None
    card: str | None = None
    description: str | None = None
    source: str = ""  # the registry file it came from


def is_model_name(text: str) -> bool:
    """True for something that can only be a registry name (no folder, no URL scheme, no file suffix)."""
    return bool(NAME_PATTERN.match(text)) and "://" not in text and not text.endswith((".pt", ".ckpt"))


def parse_registry(data: Any, where: str) -> dict[str, RegistryEntry]:
    """The entries of a registry document (already parsed JSON); every problem names ``where`` and the entry."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RegistryError(f'{where}: not a model registry (expected a JSON object with "format": "{FORMAT}")')
    version = data.get("version")
    if version != VERSION:
        raise RegistryError(f"{where}: registry version {version!r}; this asr reads version {VERSION}")
    models = data.get("models")
    if not isinstance(models, dict):
        raise RegistryError(f'{where}: "models" must be an object mapping names to entries')
    entries = {}
    for name, entry in models.items():
        at = f"{where}: model {name!r}"
        if not NAME_PATTERN.match(name):
            raise RegistryError(f"{at}: a name is letters, digits, '.', '_' and '-' (at most 100)")
        if not isinstance(entry, dict):
            raise RegistryError(f"{at}: expected an object with url, sha256, licence, card")
        unknown = set(entry) - {"url", "sha256", "licence", "card", "description"}
        if unknown:
            raise RegistryError(f"{at}: unknown field(s) {', '.join(sorted(unknown))}")
        url, sha = entry.get("url"), entry.get("sha256")
        if not isinstance(url, str) or not re.match(r"^(https?|file|hf)://", url):
            raise RegistryError(f'{at}: "url" must be an http(s)://, file:// or hf:// URL, got {url!r}')
        if sha is not None and (not isinstance(sha, str) or not SHA256_PATTERN.match(sha.lower())):
            raise RegistryError(f'{at}: "sha256" must be 64 hex digits, got {sha!r}')
        if sha is None and not url.startswith("hf://"):
            raise RegistryError(f'{at}: "sha256" is required for a {url.split(":", 1)[0]} URL')
        for key in ("licence", "card", "description"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise RegistryError(f'{at}: "{key}" must be a string')
        entries[name] = RegistryEntry(
            name,
            url,
            sha.lower() if sha else None,
            entry.get("licence"),
            entry.get("card"),
            entry.get("description"),
            where,
        )
    return entries


def read_registry(path: str | os.PathLike) -> dict[str, RegistryEntry]:
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise RegistryError(f"{path}: model registry not found (${REGISTRY_ENV} names it)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError(f"{path}: not a JSON model registry ({e})") from None
    return parse_registry(data, path)


def shipped_registry() -> dict[str, RegistryEntry]:
    """The registry inside the package."""
    text = resources.files("asr.model").joinpath("registry.json").read_text(encoding="utf-8")
    return parse_registry(json.loads(text), "asr/model/registry.json")


def registry() -> dict[str, RegistryEntry]:
    """Every known name: the shipped registry, then each file in ``$ASR_MODEL_REGISTRY`` (later ones win)."""
    entries = shipped_registry()
    for path in filter(None, os.environ.get(REGISTRY_ENV, "").split(os.pathsep)):
        entries.update(read_registry(path))
    return entries


def lookup(name: str) -> RegistryEntry:
    entries = registry()
    if name in entries:
        return entries[name]
    known = ", ".join(sorted(entries)) or f"none: the shipped registry is empty; ${REGISTRY_ENV} can add one"
    raise RegistryError(f"{name}: no such model file, nor a model of that name in the registry (known: {known})")
