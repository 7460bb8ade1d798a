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
        cuts = srv.cut_after.get(name)
        cut = cuts.pop(0) if isinstance(cuts, list) and cuts else srv.cut_after.pop(name, None)
        self.wfile.write(body if not isinstance(cut, int) else body[:cut])
        self.wfile.flush()

    def log_message(self, *args) -> None:
        pass


class RangeServer(ThreadingHTTPServer):
    """Serves ``root``; ``cut_after[name] = n`` makes the next response for ``name`` stop after n body bytes
    (a list of n: the next responses, one each)."""

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


@pytest.mark.parametrize(
    "members, links",
    [
        ({"../escape.txt": b"evil"}, None),
        ({"/tmp/absolute-escape.txt": b"evil"}, None),
        ({}, {"Corpus/link": "../../escape-target"}),
    ],
)
def test_extract_refuses_paths_outside_the_destination(tmp_path, members, links):
    archive = _tarball(tmp_path / "evil.tar.gz", members, links)
    out = tmp_path / "out"
    with pytest.raises(dl.DownloadError, match="refusing"):
        dl.extract(archive, out)
    assert not (tmp_path / "escape.txt").exists()
    assert not list(out.glob(".*.extracted"))


def test_the_retry_count_restarts_after_a_try_that_brought_bytes(server, tmp_path):
    """Five drops with retries=2 still finish, because each try got further; only failures in a row count."""
    data, md5 = _publish(server, "a.tar.gz")
    server.cut_after["a.tar.gz"] = [40_000] * 5
    dest = tmp_path / "a.tar.gz"
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False, retries=2)
    assert dest.read_bytes() == data
    assert [r for _, r in server.requests] == [None] + [f"bytes={40_000 * i}-" for i in range(1, 6)]


def test_retries_in_a_row_without_progress_give_up_and_keep_the_part(server, tmp_path):
    data, md5 = _publish(server, "a.tar.gz")
    server.cut_after["a.tar.gz"] = [1000, 0, 0, 0]
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(dl.DownloadError, match=r"giving up after 2 retries .*next run resumes it"):
        dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False, retries=2)
    assert dest.with_name("a.tar.gz.part").read_bytes() == data[:1000] and not dest.exists()
    dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False)
    assert dest.read_bytes() == data and server.requests[-1] == ("a.tar.gz", "bytes=1000-")


def _hold_lock(dest: Path):
    """Take ``dest``'s download lock as another process would (a separate open file holding flock)."""
    fcntl = pytest.importorskip("fcntl")
    f = open(dest.with_name(dest.name + ".lock"), "a+")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write("4242\n")
    f.flush()
    return f


def test_a_second_download_of_the_same_file_waits_for_the_first_and_reuses_its_result(server, tmp_path, capsys):
    data, md5 = _publish(server, "a.tar.gz")
    dest = tmp_path / "a.tar.gz"
    holder = _hold_lock(dest)
    result: dict = {}
    waiter = threading.Thread(
        target=lambda: result.update(path=dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False))
    )
    waiter.start()
    # The waiter says why it waits (naming the holder's pid), and meanwhile touches neither .part nor the server.
    for _ in range(2000):
        if "waiting for it" in capsys.readouterr().err:
            break
        waiter.join(0.01)
    assert waiter.is_alive() and not server.requests and not dest.with_name("a.tar.gz.part").exists()
    # The "other process" finishes the file and lets go; the waiter then finds it done and fetches nothing.
    dl.download(f"{server.url}/a.tar.gz", tmp_path / "other" / "a.tar.gz", md5=md5, progress=False)
    (tmp_path / "other" / "a.tar.gz").rename(dest)
    holder.close()
    waiter.join(30)
    assert result["path"] == dest and dest.read_bytes() == data
    assert len(server.requests) == 1


def test_a_download_locked_by_another_process_can_give_up_with_a_clear_message(server, tmp_path):
    _, md5 = _publish(server, "a.tar.gz")
    dest = tmp_path / "a.tar.gz"
    holder = _hold_lock(dest)
    try:
        with pytest.raises(
            dl.DownloadError,
            match=r"a\.tar\.gz\.lock: another process \(pid 4242\) is downloading "
            r"a\.tar\.gz; gave up waiting after 0 s",
        ):
            dl.download(f"{server.url}/a.tar.gz", dest, md5=md5, progress=False, lock_timeout=0)
    finally:
        holder.close()
    assert not server.requests


def test_two_processes_downloading_the_same_file_at_once(server, tmp_path):
    """Real processes, real flock: both succeed, the bytes are right, and the server sends the file once."""
    import subprocess
    import sys

    data, md5 = _publish(server, "a.tar.gz", size=2_000_000)
    dest = tmp_path / "a.tar.gz"
    code = (
        "import sys; from asr.corpora.download import download; "
        "download(sys.argv[1], sys.argv[2], md5=sys.argv[3], progress=False)"
    )
    repo = str(Path(__file__).resolve().parents[1])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, f"{server.url}/a.tar.gz", str(dest), md5],
            env={**__import__("os").environ, "PYTHONPATH": repo},
        )
        for _ in range(2)
    ]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert dest.read_bytes() == data
    assert len([r for r in server.requests if r[0] == "a.tar.gz"]) == 1


def test_disk_full_during_extraction_is_a_clear_error_and_the_next_run_starts_over(tmp_path, monkeypatch):
    import errno

    archive = _tarball(tmp_path / "c.tar.gz", {"Corpus/a.txt": b"a", "Corpus/b.txt": b"b"})
    out = tmp_path / "out"
    real = tarfile.TarFile.extract

    def full(self, member, *args, **kwargs):
        if member.name.endswith("b.txt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", full)
    with pytest.raises(dl.DownloadError, match=r"c\.tar\.gz: cannot extract .*No space left on device"):
        dl.extract(archive, out)
    assert not list(out.glob(".*.extracted")), "a half-done extraction must not be marked done"
    monkeypatch.setattr(tarfile.TarFile, "extract", real)
    dl.extract(archive, out)
    assert (out / "Corpus/b.txt").read_bytes() == b"b"


@pytest.fixture
def no_data_filter(monkeypatch):
    """Python 3.10.0-3.10.11 / 3.11.0-3.11.3: no tarfile.data_filter, and extract() takes no ``filter``."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    real = tarfile.TarFile.extract

    def old_extract(self, member, path="", set_attrs=True, *, numeric_owner=False, **kwargs):
        if kwargs:
            raise TypeError(f"extract() got an unexpected keyword argument {next(iter(kwargs))!r}")
        return real(self, member, path, set_attrs, numeric_owner=numeric_owner, filter="fully_trusted")

    monkeypatch.setattr(tarfile.TarFile, "extract", old_extract)


def test_extract_without_the_data_filter_unpacks_plain_data_safely(tmp_path, no_data_filter):
    path = tmp_path / "c.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, mode in (("Corpus/setuid.sh", 0o4777), ("Corpus/x.txt", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 1, mode
            tar.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("Corpus/link.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "x.txt"
        tar.addfile(link)
    out = tmp_path / "out"
    dl.extract(path, out)
    assert (out / "Corpus/link.txt").read_bytes() == b"x"
    assert (out / "Corpus/setuid.sh").stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-out", "hardlink-out", "device", "fifo"])
def test_extract_without_the_data_filter_still_refuses_unsafe_members(tmp_path, no_data_filter, kind):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("Corpus/ok.txt"), io.BytesIO(b""))
        name = {"dotdot": "Corpus/../../escape.txt", "absolute": str(tmp_path / "escape.txt")}.get(kind, "Corpus/m")
        info = tarfile.TarInfo(name)
        if kind == "symlink-out":
            info.type, info.linkname = tarfile.SYMTYPE, "../../escape.txt"
        elif kind == "hardlink-out":
            info.type, info.linkname = tarfile.LNKTYPE, "../escape.txt"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        tar.addfile(info, io.BytesIO(b"") if info.isfile() else None)
    out = tmp_path / "out"
    with pytest.raises(dl.DownloadError, match="refusing"):
        dl.extract(path, out)
    assert not (tmp_path / "escape.txt").exists() and not (out / "Corpus/m").exists()
    assert not list(out.glob(".*.extracted"))
