"""Load and abuse of `asr serve` on 127.0.0.1: does it stay up, answer /healthz, refuse other sites, bound memory?

Starts ``python -m asr serve`` itself on a free loopback port (with ``--model``, or a random-weight model it builds
in a temporary folder: the abuse is about the server, not the model) with its default limits, runs five attacks
one after another while probing ``GET /healthz`` on a fresh connection every 0.25 s and sampling the server's
resident memory (``/proc/PID/status``) every 50 ms, prints what held with figures, and stops the server. Every
attack is bounded in count and time (about two minutes in all with the defaults); nothing leaves 127.0.0.1.

1. idle connections: ``--idle`` TCP connections that send nothing, and a quarter as many that send a request's
   headers a byte every 2 s, held for up to ``--hold`` seconds;
2. slow WebSockets: ``--streams`` streams sending 2 bytes every 5 s, while a normal upload is tried every 2 s
   until one is served;
   and ``--streams`` uploads whose body trickles in (2 bytes every 2 s) the same way;
3. cross-origin: a POST and a WebSocket from ``Origin: https://evil.example``, a request for ``Host: evil.example``
   (DNS rebinding), and the same from the server's own origin;
4. many channels, high rate: ``--uploads`` concurrent uploads of a silent 8-channel 192 kHz FLAC of
   ``--long-seconds`` (tiny compressed, 96 times the samples of 16 kHz mono), and a 16-channel one;
5. request rate: ``--clients`` clients posting a 1-s WAV as fast as they can for ``--rate-seconds``.

Exit status 0 when everything held, 1 otherwise. Run it under ``flock /tmp/asr-heavy.lock`` on a shared machine:

    python scripts/abuse_server.py
    python scripts/abuse_server.py --model exp/synth/model.pt --long-seconds 599
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import httpx
import numpy as np
import soundfile as sf

EVIL = "https://evil.example"


def build_model(folder: str) -> str:
    """A random-weight model file (the one tests/test_server.py uses): recognises nothing, costs milliseconds."""
    import torch

    from asr.data.tokenizer import CharTokenizer
    from asr.model.features import FeatureConfig
    from asr.model.file import save_model
    from asr.model.network import ASRModel, ModelDimensions

    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(vocab_size=len(tokenizer), hidden_size=16, num_layers=1, conv_channels=4)
    path = os.path.join(folder, "model.pt")
    save_model(path, ASRModel(dims, FeatureConfig(normalize="per_utterance")), tokenizer)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Memory(threading.Thread):
    """The server's resident memory, sampled every 50 ms: peak since the last :meth:`reset`."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.now, self.stopped = pid, 0, 0, False

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.stopped:
            self.now = self.rss()
            self.peak = max(self.peak, self.now)
            time.sleep(0.05)

    def reset(self) -> int:
        self.peak = self.now = self.rss()
        return self.now


class Health:
    """``GET /healthz`` on a fresh connection every 0.25 s while an attack runs: statuses and latencies."""

    def __init__(self, url: str):
        self.url, self.results, self.task = url, [], None

    async def _probe(self) -> None:
        while True:
            start = time.perf_counter()
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    status = (await client.get(self.url)).status_code
            except httpx.TransportError as e:
                status = type(e).__name__
            self.results.append((status, time.perf_counter() - start))
            await asyncio.sleep(0.25)

    def __enter__(self) -> "Health":
        self.results = []
        self.task = asyncio.get_running_loop().create_task(self._probe())
        return self

    def __exit__(self, *exc) -> None:
        self.task.cancel()

    def summary(self) -> tuple[bool, str]:
        ok = [t for s, t in self.results if s == 200]
        statuses = Counter(str(s) for s, _ in self.results)
        if not self.results:
            return False, "no probe"
        held = len(ok) == len(self.results)
        latency = f", p50 {statistics.median(ok) * 1000:.0f} ms, max {max(ok) * 1000:.0f} ms" if ok else ""
        return held, f"/healthz {len(ok)}/{len(self.results)} answered 200{latency} ({dict(statuses)})"


def silent_flac(seconds: float, rate: int, channels: int, fmt: str = "FLAC") -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, format=fmt, subtype="PCM_16") as f:
        block = np.zeros((rate, channels), dtype=np.float32)
        for start in range(0, int(seconds * rate), rate):
            f.write(block[: min(rate, int(seconds * rate) - start)])
    return buf.getvalue()


def wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    audio = (np.random.default_rng(0).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    sf.write(buf, audio, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "a.wav", **headers: str) -> int | str:
    try:
        r = await client.post("/v1/transcribe", files={"file": (name, data)}, headers=headers)
        return r.status_code
    except httpx.TransportError as e:
        return type(e).__name__


class Report:
    def __init__(self):
        self.rows: list[tuple[str, bool, str]] = []

    def add(self, what: str, held: bool, figures: str) -> None:
        self.rows.append((what, held, figures))
        print(f"  [{'held' if held else 'FAILED'}] {what}: {figures}", flush=True)


async def idle_connections(args, port: int, health_url: str, memory: Memory, report: Report) -> None:
    print(f"1. {args.idle} idle connections + {args.idle // 4} slow headers, up to {args.hold:g} s", flush=True)
    base = memory.reset()
    opened = time.monotonic()
    closed_at: list[float] = []

    async def idle(slow: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: {'a' * 200}\r\n".encode()
        try:
            for i in range(10**6):
                if slow and i < len(request):
                    writer.write(request[i : i + 1])
                try:
                    if not await asyncio.wait_for(reader.read(65536), 2.0 if slow else args.hold):
                        closed_at.append(time.monotonic() - opened)
                        return
                except asyncio.TimeoutError:
                    if not slow:
                        return
                except ConnectionError:
                    closed_at.append(time.monotonic() - opened)
                    return
        finally:
            writer.close()

    with Health(health_url) as health:
        tasks = [asyncio.create_task(idle(slow=i < args.idle // 4)) for i in range(args.idle + args.idle // 4)]
        await asyncio.wait(tasks, timeout=args.hold + 5)
        for t in tasks:
            t.cancel()
    held, figures = health.summary()
    report.add("idle connections: /healthz answers", held, figures)
    total = len(tasks)
    close = (
        f", median after {statistics.median(closed_at):.1f} s, last after {max(closed_at):.1f} s" if closed_at else ""
    )
    report.add(
        "idle connections: closed by the server",
        len(closed_at) == total,
        f"{len(closed_at)}/{total} closed within {args.hold:g} s{close}; peak RSS {memory.peak / 1e6:.0f} MB "
        f"(+{(memory.peak - base) / 1e6:.0f})",
    )


async def slow_streams(args, port: int, health_url: str, memory: Memory, report: Report) -> None:
    from websockets.asyncio.client import connect

    print(f"2. {args.streams} WebSockets sending 2 bytes every 5 s, up to {args.hold:g} s", flush=True)
    memory.reset()
    start = time.monotonic()
    ended: list[float] = []
    refused = Counter()

    async def stream() -> None:
        try:
            async with connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=10) as ws:
                first = json.loads(await ws.recv())
                if first["type"] != "ready":
                    refused[first.get("message", "")[:30]] += 1
                    return

                async def trickle():
                    while True:
                        await ws.send(b"\x00\x00")
                        await asyncio.sleep(5)

                sender = asyncio.create_task(trickle())
                try:
                    while json.loads(await ws.recv())["type"] != "final":
                        pass
                    ended.append(time.monotonic() - start)
                finally:
                    sender.cancel()
        except Exception as e:  # closed, refused: counted by kind
            refused[type(e).__name__] += 1

    uploads: list[tuple[float, int | str]] = []

    async def legit() -> None:  # a normal upload every 2 s, until one is served (or the attack's time is up)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not uploads or uploads[-1][1] != 200:
                uploads.append((time.monotonic() - start, await upload(client, wav(1.0))))
                await asyncio.sleep(2)

    with Health(health_url) as health:
        tasks = [asyncio.create_task(stream()) for _ in range(args.streams)]
        prober = asyncio.create_task(legit())
        await asyncio.wait([*tasks, prober], timeout=args.hold, return_when=asyncio.ALL_COMPLETED)
        prober.cancel()
        for t in tasks:
            t.cancel()
    held, figures = health.summary()
    report.add("slow WebSockets: /healthz answers", held, figures)
    served = [t for t, s in uploads if s == 200]
    report.add(
        "slow WebSockets: ended by the server",
        len(ended) + sum(refused.values()) == args.streams and bool(ended),
        f"{len(ended)} ended with a final (median after {statistics.median(ended):.1f} s), refused {dict(refused)}"
        if ended
        else f"none ended within {args.hold:g} s; refused {dict(refused)}",
    )
    report.add(
        "slow WebSockets: uploads served again",
        bool(served),
        f"upload statuses {dict(Counter(str(s) for _, s in uploads))}, first 200 after {served[0]:.1f} s"
        if served
        else f"upload statuses {dict(Counter(str(s) for _, s in uploads))}, none served",
    )


async def slow_uploads(args, port: int, health_url: str, memory: Memory, report: Report) -> None:
    print(f"2b. {args.streams} uploads whose body trickles in (2 bytes every 2 s), up to {args.hold:g} s", flush=True)
    memory.reset()
    start = time.monotonic()
    ended: list[tuple[float, str]] = []

    async def slow() -> None:  # raw HTTP, so that the server's answer is read while the body is still being sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        writer.write(
            f"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode()
            + part
        )

        async def trickle():
            while True:
                await asyncio.sleep(2)
                writer.write(b"\x00\x00")

        sender = asyncio.create_task(trickle())
        try:
            line = await reader.readline()
            ended.append((time.monotonic() - start, line.split(b" ")[1].decode() if line else "closed"))
        except ConnectionError as e:
            ended.append((time.monotonic() - start, type(e).__name__))
        finally:
            sender.cancel()
            writer.close()

    uploads: list[tuple[float, int | str]] = []

    async def legit() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not uploads or uploads[-1][1] != 200:
                uploads.append((time.monotonic() - start, await upload(client, wav(1.0))))
                await asyncio.sleep(2)

    with Health(health_url) as health:
        tasks = [asyncio.create_task(slow()) for _ in range(args.streams)]
        await asyncio.sleep(0.5)  # the trickles take the slots first
        prober = asyncio.create_task(legit())
        await asyncio.wait([*tasks, prober], timeout=args.hold)
        prober.cancel()
        for t in tasks:
            t.cancel()
    held, figures = health.summary()
    report.add("slow uploads: /healthz answers", held, figures)
    statuses = Counter(s for _, s in ended)
    report.add(
        "slow uploads: ended by the server",
        len(ended) == args.streams and set(statuses) <= {"408", "503"},
        f"{len(ended)}/{args.streams} answered within {args.hold:g} s: {dict(statuses)}"
        + (f", the last after {max(t for t, _ in ended):.1f} s" if ended else ""),
    )
    served = [t for t, s in uploads if s == 200]
    report.add(
        "slow uploads: uploads served again",
        bool(served),
        f"upload statuses {dict(Counter(str(s) for _, s in uploads))}"
        + (f", first 200 after {served[0]:.1f} s" if served else ", none served"),
    )


async def cross_origin(args, port: int, report: Report) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    print("3. cross-origin and DNS rebinding", flush=True)
    own = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=own, timeout=30) as client:
        post_evil = await upload(client, wav(0.5), origin=EVIL)
        post_own = await upload(client, wav(0.5), origin=own)
        rebound = (await client.get("/healthz", headers={"host": "evil.example"})).status_code

    async def ws_status(origin: str) -> int | str:
        try:
            async with connect(f"ws://127.0.0.1:{port}/v1/stream", origin=origin, open_timeout=10) as ws:
                return json.loads(await ws.recv())["type"]
        except InvalidStatus as e:
            return e.response.status_code

    ws_evil, ws_own = await ws_status(EVIL), await ws_status(own)
    report.add(
        "cross-origin: refused",
        post_evil == 403 and rebound == 403 and ws_evil == 403 and post_own == 200 and ws_own == "ready",
        f"POST from {EVIL}: {post_evil}; WebSocket from {EVIL}: {ws_evil}; Host evil.example: {rebound}; "
        f"own origin POST {post_own}, WebSocket {ws_own}",
    )


async def many_channels(args, port: int, health_url: str, memory: Memory, report: Report) -> None:
    print(f"4. {args.uploads} uploads of 8-channel 192 kHz silence, {args.long_seconds:g} s each", flush=True)
    data = silent_flac(args.long_seconds, 192000, 8)
    wide = silent_flac(0.02, 192000, 16, fmt="WAV")
    base = memory.reset()
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        with Health(health_url) as health:
            statuses = await asyncio.gather(*(upload(client, data, "many.flac") for _ in range(args.uploads)))
        wide_status = await upload(client, wide, "wide.wav")
    seconds = time.perf_counter() - start
    held, figures = health.summary()
    report.add("many channels: /healthz answers", held, figures)
    decoded = args.long_seconds * 192000 * 8 * 4
    report.add(
        "many channels: memory bounded",
        all(s == 200 for s in statuses) and memory.peak - base < 400e6,
        f"{len(data) / 1e3:.0f} KB uploads x {args.uploads}: statuses {dict(Counter(map(str, statuses)))} in "
        f"{seconds:.1f} s; peak RSS {memory.peak / 1e6:.0f} MB (+{(memory.peak - base) / 1e6:.0f} over "
        f"{base / 1e6:.0f}; the file decoded whole would be {decoded / 1e9:.2f} GB each)",
    )
    report.add("many channels: 16 channels at 192 kHz", wide_status == 413, f"status {wide_status}")


async def request_rate(args, port: int, health_url: str, memory: Memory, report: Report) -> None:
    print(f"5. {args.clients} clients posting 1-s WAVs for {args.rate_seconds:g} s", flush=True)
    data = wav(1.0)
    base = memory.reset()
    statuses: Counter = Counter()
    deadline = time.monotonic() + args.rate_seconds

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            while time.monotonic() < deadline and sum(statuses.values()) < args.max_requests:
                statuses[str(await upload(client, data))] += 1

    with Health(health_url) as health:
        await asyncio.gather(*(client_loop() for _ in range(args.clients)))
    held, figures = health.summary()
    report.add("request rate: /healthz answers", held, figures)
    total = sum(statuses.values())
    report.add(
        "request rate: only 200 and 503",
        set(statuses) <= {"200", "503"} and statuses["200"] > 0,
        f"{total} requests in {args.rate_seconds:g} s ({statuses['200'] / args.rate_seconds:.1f} served/s): "
        f"{dict(statuses)}; peak RSS {memory.peak / 1e6:.0f} MB (+{(memory.peak - base) / 1e6:.0f})",
    )


async def attack(args, port: int, memory: Memory) -> Report:
    report = Report()
    health_url = f"http://127.0.0.1:{port}/healthz"
    await idle_connections(args, port, health_url, memory, report)
    await slow_streams(args, port, health_url, memory, report)
    await slow_uploads(args, port, health_url, memory, report)
    await cross_origin(args, port, report)
    await many_channels(args, port, health_url, memory, report)
    await request_rate(args, port, health_url, memory, report)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a model.pt (default: a random-weight model built in a temporary folder)")
    p.add_argument("--idle", type=int, default=150, help="idle TCP connections (default: %(default)s)")
    p.add_argument("--streams", type=int, default=40, help="slow WebSockets (default: %(default)s)")
    p.add_argument("--hold", type=float, default=30.0, help="seconds attacks 1 and 2 last at most")
    p.add_argument("--uploads", type=int, default=2, help="concurrent 8-channel uploads (default: %(default)s)")
    p.add_argument("--long-seconds", type=float, default=180.0, help="their length (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16, help="clients of the request-rate attack")
    p.add_argument("--rate-seconds", type=float, default=10.0, help="its length (default: %(default)s)")
    p.add_argument("--max-requests", type=int, default=5000, help="its bound on requests (default: %(default)s)")
    args = p.parse_args(argv)
    if not (args.idle <= 1000 and args.streams <= 200 and args.uploads <= 8 and args.hold <= 120):
        p.error("bounded: --idle <= 1000, --streams <= 200, --uploads <= 8, --hold <= 120")

    with tempfile.TemporaryDirectory(prefix="asr-abuse-") as folder:
        model = args.model or build_model(folder)
        port = free_port()
        cmd = [sys.executable, "-m", "asr", "-q", "serve", "--model", model, "--port", str(port), "--device", "cpu"]
        print("server:", " ".join(cmd[1:]), flush=True)
        log = open(os.path.join(folder, "server.log"), "wb")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        memory = Memory(proc.pid)
        try:
            for _ in range(600):
                if proc.poll() is not None:
                    log.flush()
                    raise SystemExit("server exited: " + open(log.name, errors="replace").read()[-2000:])
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                raise SystemExit("server did not answer /healthz within 60 s")
            memory.start()
            print(
                f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; server RSS {memory.reset() / 1e6:.0f} MB",
                flush=True,
            )
            report = asyncio.run(attack(args, port, memory))
            alive = proc.poll() is None and httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            report.add("server still up", alive, f"exit status {proc.poll()}" if not alive else "answers /healthz")
        finally:
            memory.stopped = True
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    failed = [what for what, held, _ in report.rows if not held]
    print(f"{len(report.rows) - len(failed)}/{len(report.rows)} held" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
