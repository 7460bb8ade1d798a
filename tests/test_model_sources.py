"""Models by name or URL: the registry format, the cache (ASR_CACHE_DIR, ASR_OFFLINE), downloads against a local
HTTP server (threads, 127.0.0.1) and file:// URLs (a wrong checksum, a cut download resumed, a stalled server),
`asr models download`, asr.load_model("NAME" | URL), and hf:// / `asr models push` with huggingface_hub mocked."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_download import serve_directory
from test_server import random_model

import asr
from asr.cli import main
from asr.data import fetch
from asr.errors import ChecksumError, DownloadError, UsageError
from asr.model import cache, hub, registry
from asr.model.file import load_model


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(cache.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(registry.REGISTRY_ENV, raising=False)
    monkeypatch.setattr(fetch.time, "sleep", lambda s: None)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = random_model(tmp_path_factory.mktemp("m") / "model.pt")
    data = open(path, "rb").read()
    return path, data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path, model_file):
    root = tmp_path / "www"
    root.mkdir()
    (root / "model.pt").write_bytes(model_file[1])
    with serve_directory(root) as srv:
        yield srv


def test_a_url_is_fetched_into_the_cache_checked_and_then_reused(server, model_file, isolated_cache):
    _, data, sha = model_file
    url = f"{server.url}/model.pt"
    path = cache.fetch_model(url, sha)
    assert path.read_bytes() == data and path.name == "model.pt"
    assert path.is_relative_to(isolated_cache / "models")
    assert cache.fetch_model(url, sha) == path
    assert len(server.requests) == 1  # the second call found it verified (the digest's sidecar), no request
    assert not path.with_name("model.pt.part").exists()


def test_a_wrong_checksum_is_an_error_and_the_bytes_are_kept_aside(server, model_file):
    url = f"{server.url}/model.pt"
    with pytest.raises(ChecksumError, match=r"SHA256 mismatch, expected 0{64} but got " + model_file[2]):
        cache.fetch_model(url, "0" * 64)
    dest = cache.cached_path(url)
    assert not dest.exists()
    assert dest.with_name("model.pt.bad-sha256").read_bytes() == model_file[1]


def test_a_cut_download_is_resumed_with_a_range_request(server, model_file):
    _, data, sha = model_file
    server.cut_after["model.pt"] = 5000
    path = cache.fetch_model(f"{server.url}/model.pt", sha)
    assert path.read_bytes() == data
    assert server.requests == [("model.pt", None), ("model.pt", "bytes=5000-")]


def test_a_partial_file_left_by_an_earlier_run_is_resumed(server, model_file):
    _, data, sha = model_file
    url = f"{server.url}/model.pt"
    dest = cache.cached_path(url)
    dest.parent.mkdir(parents=True)
    dest.with_name("model.pt.part").write_bytes(data[:777])
    assert cache.fetch_model(url, sha).read_bytes() == data
    assert server.requests == [("model.pt", "bytes=777-")]


class _Stalling(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        self.server.release.wait(10)  # sends nothing more until the test ends

    def log_message(self, *args) -> None:
        pass


def test_a_stalled_server_times_out_with_a_clear_error():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    srv.daemon_threads = True
    srv.release = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/model.pt"
        with pytest.raises(DownloadError, match=r"giving up after 1 retries \(the server sent nothing within the"):
            cache.fetch_model(url, "0" * 64, timeout=0.3, retries=1)  # the server holds on for 10 s: no hang
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def test_a_file_url_and_a_missing_one(tmp_path, model_file):
    path, data, sha = model_file
    got = cache.fetch_model(f"file://{path}", sha)
    assert got.read_bytes() == data
    with pytest.raises(DownloadError, match=r"nowhere\.pt: cannot read"):
        cache.fetch_model(f"file://{tmp_path}/nowhere.pt")


def test_without_a_checksum_the_digest_is_told(model_file, caplog):
    path, _, sha = model_file
    with caplog.at_level("WARNING"):
        cache.fetch_model(f"file://{path}")
    assert sha in caplog.text and "--sha256" in caplog.text


def test_offline_uses_the_cache_and_refuses_to_download(server, model_file, monkeypatch):
    _, data, sha = model_file
    url = f"{server.url}/model.pt"
    monkeypatch.setenv(cache.OFFLINE_ENV, "1")
    with pytest.raises(DownloadError, match="is not in the cache .* ASR_OFFLINE=1 forbids downloading it"):
        cache.fetch_model(url, sha)
    assert server.requests == []
    monkeypatch.setenv(cache.OFFLINE_ENV, "0")
    cache.fetch_model(url, sha)
    monkeypatch.setenv(cache.OFFLINE_ENV, "1")
    assert cache.fetch_model(url, sha).read_bytes() == data
    assert len(server.requests) == 1


def test_the_cache_folder_comes_from_the_environment_else_the_platform(monkeypatch, tmp_path):
    assert cache.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(cache.CACHE_ENV)
    import platformdirs

    assert str(cache.cache_dir()) == platformdirs.user_cache_dir("asr", appauthor=False)


def _registry(tmp_path, models: dict) -> str:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"format": "asr-model-registry", "version": 1, "models": models}))
    return str(path)


def test_the_shipped_registry_is_valid_and_a_user_registry_adds_names(tmp_path, monkeypatch, model_file):
    assert isinstance(registry.shipped_registry(), dict)
    path, _, sha = model_file
    monkeypatch.setenv(
        registry.REGISTRY_ENV,
        _registry(tmp_path, {"tiny-en": {"url": f"file://{path}", "sha256": sha, "licence": "CC0-1.0"}}),
    )
    entry = registry.lookup("tiny-en")
    assert (entry.sha256, entry.licence) == (sha, "CC0-1.0")
    loaded = asr.load_model("tiny-en")  # by name: fetched, checked, loaded
    assert loaded.model.dims.hidden_size == 16
    with pytest.raises(UsageError, match="differs from the registry's"):
        cache.fetch_model("tiny-en", "1" * 64)
    with pytest.raises(
        registry.RegistryError, match=r"nothing: no such model file, nor a model of that name .*tiny-en"
    ):
        load_model("nothing")


@pytest.mark.parametrize(
    "models, message",
    [
        ({"a b": {"url": "https://x/m.pt", "sha256": "0" * 64}}, "a name is letters"),
        ({"m": {"url": "ftp://x/m.pt", "sha256": "0" * 64}}, "must be an http"),
        ({"m": {"url": "https://x/m.pt"}}, '"sha256" is required for a https URL'),
        ({"m": {"url": "https://x/m.pt", "sha256": "abc"}}, "must be 64 hex digits"),
        ({"m": {"url": "https://x/m.pt", "sha256": "0" * 64, "size": 3}}, r"unknown field\(s\) size"),
        ({"m": "https://x/m.pt"}, "expected an object"),
    ],
)
def test_a_bad_registry_entry_names_the_file_and_the_model(tmp_path, monkeypatch, models, message):
    monkeypatch.setenv(registry.REGISTRY_ENV, _registry(tmp_path, models))
    with pytest.raises(registry.RegistryError, match=message):
        registry.registry()


def test_a_registry_that_is_not_one(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text('{"models": {}}')
    with pytest.raises(registry.RegistryError, match="not a model registry"):
        registry.read_registry(bad)
    bad.write_text("{")
    with pytest.raises(registry.RegistryError, match="not a JSON model registry"):
        registry.read_registry(bad)


def test_asr_models_download_prints_the_cached_path(server, model_file, capsys):
    _, data, sha = model_file
    assert main(["models", "download", f"{server.url}/model.pt", "--sha256", sha]) == 0
    out = capsys.readouterr().out.strip()
    assert open(out, "rb").read() == data
    assert main(["models", "download", f"{server.url}/model.pt", "--sha256", "zz"]) == 2
    assert "expected 64 hex digits" in capsys.readouterr().err
    assert main(["models", "download", f"{server.url}/model.pt", "--sha256", "0" * 64]) == 2
    assert "mismatch" in capsys.readouterr().err


def test_transcribe_takes_a_url_as_the_model(server, model_file, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000, dtype=np.float32), 16000)
    assert main(["transcribe", "--model", f"{server.url}/model.pt", str(wav)]) == 0
    assert str(wav) in capsys.readouterr().out


# ------------------------------------------------------------------------------ Hugging Face Hub, mocked


@pytest.fixture
def fake_hub(monkeypatch, model_file):
    """A stand-in for huggingface_hub that records what it was asked (no network)."""
    calls = []
    mod = types.ModuleType("huggingface_hub")

    def hf_hub_download(repo_id, filename, revision=None, cache_dir=None, local_files_only=False):
        calls.append(("download", repo_id, filename, revision, local_files_only))
        if local_files_only:
            raise FileNotFoundError("not cached")
        if filename != "model.pt":
            raise RuntimeError("404 Client Error: Entry Not Found")
        return model_file[0]

    class CommitOperationAdd:
        def __init__(self, path_in_repo, path_or_fileobj):
            self.path_in_repo, self.path_or_fileobj = path_in_repo, path_or_fileobj

    class HfApi:
        def __init__(self, token=None):
            calls.append(("api", token))

        def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def create_commit(self, repo_id, operations, commit_message, repo_type=None):
            calls.append(("commit", repo_id, {op.path_in_repo: op.path_or_fileobj for op in operations}))

    mod.hf_hub_download, mod.HfApi, mod.CommitOperationAdd = hf_hub_download, HfApi, CommitOperationAdd
    monkeypatch.setitem(sys.modules, "huggingface_hub", mod)
    return calls


def test_hf_urls_go_through_huggingface_hub(fake_hub, model_file, monkeypatch):
    assert hub.parse_hf_url("hf://org/repo") == ("org/repo", "model.pt", None)
    assert hub.parse_hf_url("hf://org/repo@v2/exp/model.pt") == ("org/repo", "exp/model.pt", "v2")
    assert cache.fetch_model("hf://org/repo", model_file[2]) == hub.Path(model_file[0])
    assert fake_hub[-1] == ("download", "org/repo", "model.pt", None, False)
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        cache.fetch_model("hf://org/repo", "0" * 64)
    with pytest.raises(DownloadError, match="hf://org/repo/other.pt: RuntimeError: 404"):
        cache.fetch_model("hf://org/repo/other.pt")
    monkeypatch.setenv(cache.OFFLINE_ENV, "1")
    with pytest.raises(DownloadError, match="ASR_OFFLINE=1 forbids"):
        cache.fetch_model("hf://org/repo")
    with pytest.raises(UsageError, match="expected hf://ORG/REPO"):
        hub.parse_hf_url("hf://just-one")


def test_without_huggingface_hub_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(UsageError, match=r"pip install 'asr-rnn-ctc\[hub\]'"):
        cache.fetch_model("hf://org/repo")


def test_push_publishes_the_model_and_its_card_in_one_commit(fake_hub, tmp_path, capsys):
    from asr.model.card import build_card
    from asr.model.file import rewrite_metadata

    path = random_model(tmp_path / "model.pt")
    card = build_card(
        name="tiny", train=[{"manifest": "t.jsonl", "hours": 1.0, "utterances": 9}], data_licence="CC0-1.0"
    )
    rewrite_metadata(path, lambda m: {**m, "card": card})
    assert main(["models", "push", path, "hf://me/tiny", "--private"]) == 0
    out = capsys.readouterr().out
    assert "https://huggingface.co/me/tiny" in out and hashlib.sha256(open(path, "rb").read()).hexdigest() in out
    assert ("create_repo", "me/tiny", True, True) in fake_hub
    (commit,) = [c for c in fake_hub if c[0] == "commit"]
    files = commit[2]
    assert files["model.pt"] == path
    readme = files["README.md"].decode()
    assert readme.startswith("---\nlibrary_name: asr") and "license: cc0-1.0" in readme
    assert "# tiny" in readme and "| t.jsonl | 1.00 h | 9 |" in readme


def test_push_refuses_what_is_not_a_model(fake_hub, tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    assert main(["models", "push", str(bad), "hf://me/tiny"]) == 2
    assert "not an asr model file" in capsys.readouterr().err
    assert not [c for c in fake_hub if c[0] == "commit"]
