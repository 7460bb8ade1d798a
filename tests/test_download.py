"""Downloads against a local HTTP server (127.0.0.1, random port) that honours Range requests and can be told to
drop a connection mid-transfer or to ignore Range; nothing here reaches the network."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

import pytest

from asr.corpora import download as dl


class _RangeHandler(BaseHTTPRequestHandler):
    server: "RangeServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        name = unquote(urlparse(self.path).path).lstrip("/")
        srv.requests.append((name, self.headers.get("Range")))
        path = srv.root / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        cut = srv.cut_after.pop(name, None)
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()

    def log_message(self, *args) -> None:
        pass


class RangeServer(ThreadingHTTPServer):
    """Serves ``root``; ``cut_after[name] = n`` makes the next response for ``name`` stop after n body bytes."""

    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.root = Path(root)
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serve_directory(root: Path) -> Iterator[RangeServer]:
    server = RangeServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)


def _publish(server: RangeServer, name: str, size: int = 300_000) -> tuple[bytes, str]:
    data = bytes((i * 7919 + i // 256) % 251 for i in range(size))
    (server.root / name).write_bytes(data)
    return data, hashlib.md5(data).hexdigest()


def test_download_verifies_and_then_reuses_without_rehashing(server, tmp_path, monkeypatch):
    data, md5 = _publish(server, "a.tar.gz")
    dest = tmp_path / "dl" / "a.tar.gz"
    assert dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False) == dest
    assert dest.read_bytes() == data
    assert not dest.with_name("a.tar.gz.part").exists()

    monkeypatch.setattr(dl, "md5sum", lambda *a, **k: pytest.fail("a verified file was hashed again"))
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False)
    assert len(server.requests) == 1


def test_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    data, md5 = _publish(server, "a.tar.gz")
    dest = tmp_path / "a.tar.gz"
    dest.with_name("a.tar.gz.part").write_bytes(data[:123_456])
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False)
    assert dest.read_bytes() == data
    assert server.requests == [("a.tar.gz", "bytes=123456-")]


def test_a_dropped_connection_is_resumed_where_it_stopped(server, tmp_path):
    data, md5 = _publish(server, "a.tar.gz")
    server.cut_after["a.tar.gz"] = 100_000
    dest = tmp_path / "a.tar.gz"
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False)
    assert dest.read_bytes() == data
    assert server.requests == [("a.tar.gz", None), ("a.tar.gz", "bytes=100000-")]


def test_a_server_that_ignores_range_gets_a_clean_restart(server, tmp_path):
    data, md5 = _publish(server, "a.tar.gz")
    server.ignore_range = True
    dest = tmp_path / "a.tar.gz"
    dest.with_name("a.tar.gz.part").write_bytes(b"garbage that must not stay in front")
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False)
    assert dest.read_bytes() == data


def test_complete_part_file_is_finished_without_refetching(server, tmp_path):
    data, md5 = _publish(server, "a.tar.gz")
    dest = tmp_path / "a.tar.gz"
    dest.with_name("a.tar.gz.part").write_bytes(data)
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False)
    assert dest.read_bytes() == data


def test_checksum_mismatch_keeps_the_file_aside_and_says_why(server, tmp_path):
    data, actual = _publish(server, "a.tar.gz")
    expected = "0" * 32
    dest = tmp_path / "a.tar.gz"
    url = f"{server.url}/a.tar.gz"
    with pytest.raises(dl.ChecksumError) as err:
        dl.download(url, dest, md5=expected, progress=False)
    message = str(err.value)
    assert url in message and expected in message and actual in message
    assert not dest.exists() and not dest.with_name("a.tar.gz.part").exists()
    assert dest.with_name("a.tar.gz.bad-md5").read_bytes() == data


def test_a_corrupted_existing_file_is_never_reused(server, tmp_path):
    data, md5 = _publish(server, "a.tar.gz")
    dest = tmp_path / "a.tar.gz"
    dest.write_bytes(b"truncated by a crash long ago")
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False)
    assert dest.read_bytes() == data
    assert dest.with_name("a.tar.gz.bad-md5").read_bytes() == b"truncated by a crash long ago"


def test_missing_remote_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(dl.DownloadError, match=r"nope\.tar\.gz: HTTP 404"):
        dl.download(f"{server.url}/nope.tar.gz", tmp_path / "nope.tar.gz", progress=False)


def test_progress_goes_to_stderr(server, tmp_path, capsys):
    _, md5 = _publish(server, "a.tar.gz")
    dl.download(f"{server.url}/a.tar.gz", tmp_path / "a.tar.gz", md5=md5, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "a.tar.gz" in captured.err and "100.0%" in captured.err


def test_data_dir_and_mirror_come_from_flag_then_environment(monkeypatch):
    monkeypatch.delenv(dl.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(dl.OPENSLR_MIRROR_ENV, raising=False)
    assert dl.data_dir() == Path("data")
    assert dl.openslr_url(12, "dev-clean.tar.gz") == "https://www.openslr.org/resources/12/dev-clean.tar.gz"
    monkeypatch.setenv(dl.DATA_DIR_ENV, "/big/disk")
    monkeypatch.setenv(dl.OPENSLR_MIRROR_ENV, "https://us.openslr.org/resources/")
    assert dl.data_dir() == Path("/big/disk")
    assert dl.data_dir("here") == Path("here")
    assert dl.openslr_url(12, "x.tar.gz") == "https://us.openslr.org/resources/12/x.tar.gz"
    assert dl.openslr_url(12, "x.tar.gz", "http://m/r") == "http://m/r/12/x.tar.gz"


def _tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def test_extract_is_done_once(tmp_path):
    archive = _tarball(tmp_path / "c.tar.gz", {"Corpus/a/x.txt": b"x", "Corpus/b.txt": b"b"})
    out = tmp_path / "out"
    assert dl.extract(archive, out) == out
    assert (out / "Corpus/a/x.txt").read_bytes() == b"x"
    (out / "Corpus/b.txt").unlink()
    dl.extract(archive, out)
    assert not (out / "Corpus/b.txt").exists(), "a finished extraction must not run again"


@pytest.mark.parametrize("members, links", [
    ({"../escape.txt": b"evil"}, None),
    ({"/tmp/absolute-escape.txt": b"evil"}, None),
    ({}, {"Corpus/link": "../../escape-target"}),
])
def test_extract_refuses_paths_outside_the_destination(tmp_path, members, links):
    archive = _tarball(tmp_path / "evil.tar.gz", members, links)
    out = tmp_path / "out"
    with pytest.raises(dl.DownloadError, match="refusing"):
        dl.extract(archive, out)
    assert not (tmp_path / "escape.txt").exists()
    assert not list(out.glob(".*.extracted"))
