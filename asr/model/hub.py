"""Models on the Hugging Face Hub: ``hf://org/repo[@revision][/path/in/repo]`` (default file ``model.pt``).

Fetching goes through ``huggingface_hub`` (the optional extra ``hub``: ``pip install 'asr-rnn-ctc[hub]'``), into
``CACHE/hf`` (:func:`asr.model.cache.cache_dir`), offline when ``ASR_OFFLINE=1`` (the Hub's own
``local_files_only``). :func:`push_model` publishes a model file with its card as the repository's README.md,
with the metadata a Hub page wants (library, licence, task) in its front matter, in one commit.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from asr.errors import DownloadError, UsageError

DEFAULT_FILE = "model.pt"
HUB_HINT = "the Hugging Face Hub needs the hub extra: pip install 'asr-rnn-ctc[hub]' (or pip install huggingface_hub)"
_HF_URL = re.compile(r"^hf://(?P<org>[\w.-]+)/(?P<repo>[\w.-]+)(?:@(?P<rev>[\w./-]+?))?(?:/(?P<file>.+))?$")


def parse_hf_url(url: str) -> tuple[str, str, str | None]:
    """``hf://org/repo[@rev][/file]`` -> (``org/repo``, file in the repository, revision or None)."""
    m = _HF_URL.match(url)
    if not m:
        raise UsageError(f"{url}: expected hf://ORG/REPO[@REVISION][/FILE]")
    return f"{m['org']}/{m['repo']}", m["file"] or DEFAULT_FILE, m["rev"]


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise UsageError(HUB_HINT) from None
    return huggingface_hub


def _hub_error(url: str, e: BaseException) -> DownloadError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    return DownloadError(f"{url}: {type(e).__name__}: {first}")


def hub_download(url: str, sha256: str | None = None, *, cache: Path, offline: bool = False) -> Path:
    """The local path of the Hub file ``url`` names, fetched into ``cache/hf`` unless it is there."""
    repo_id, filename, revision = parse_hf_url(url)
    hub = _hub()
    try:
        path = hub.hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=str(cache / "hf"), local_files_only=offline
        )
    except Exception as e:  # the Hub's errors are many classes (HTTP, missing entry, offline cache miss)
        if offline:
            raise DownloadError(f"{url}: not in the cache ({cache / 'hf'}) and ASR_OFFLINE=1 forbids downloading it")
        raise _hub_error(url, e) from None
    if sha256 is not None:
        digest = _sha256(path)
        if digest != sha256:
            raise DownloadError(f"{url}: SHA-256 mismatch, expected {sha256} but got {digest}")
    return Path(path)


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hub_readme(card: dict | None) -> str:
    """The repository's README.md: Hub front matter, then the card (:func:`asr.model.card.render_markdown`)."""
    from asr.model.card import render_markdown

    card = card or {"name": "asr model"}
    front = ["---", "library_name: asr", "pipeline_tag: automatic-speech-recognition", "tags:", "  - ctc", "  - rnn"]
    licence = card.get("data_licence")
    if licence:
        front.append(f"license: {licence.lower()}" if re.fullmatch(r"[\w.+-]+", licence) else "license: other")
    front.append("---")
    return "\n".join(front) + "\n\n" + render_markdown(card)


def push_model(
    model_path: str | os.PathLike,
    target: str,
    *,
    token: str | None = None,
    private: bool = False,
    message: str | None = None,
) -> dict[str, str]:
    """Publish ``model_path`` and its card to ``target`` (``hf://org/repo[/file]``) in one commit; returns the
    repository's URL and the file's SHA-256 (for a registry entry, or ``--sha256`` on the other side)."""
    from asr.model.card import card_of
    from asr.model.file import load_model

    repo_id, filename, revision = parse_hf_url(target)
    if revision is not None:
        raise UsageError(f"{target}: push to a repository, not a revision (drop @{revision})")
    loaded = load_model(model_path)  # only a model that loads is published
    digest = _sha256(model_path)
    hub = _hub()
    api = hub.HfApi(token=token)
    readme = hub_readme(card_of(loaded.metadata)).encode("utf-8")
    operations = [
        hub.CommitOperationAdd(path_in_repo=filename, path_or_fileobj=str(model_path)),
        hub.CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme),
    ]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.create_commit(
            repo_id,
            operations=operations,
            commit_message=message or f"asr model {filename} (sha256 {digest[:12]})",
            repo_type="model",
        )
    except Exception as e:  # authentication, permissions, network: the Hub's errors, one line
        raise _hub_error(target, e) from None
    return {"url": f"https://huggingface.co/{repo_id}", "file": filename, "sha256": digest}
