"""Load test of `asr serve` on 127.0.0.1: C concurrent clients send N uploads; latency, throughput, errors.

Starts the server itself (``python -m asr serve`` on a free loopback port; stopped at the end), transcribes each
distinct file once first, one at a time, then runs the load. A request counts as an error if its status is not 200,
if it gets no answer, or if its text differs from that file's sequential result (a sign of requests crossing under
concurrency); every request sent must come back exactly once. Exit status 1 on any error.

With ``--lm`` (and ``--lm-params``) the same load runs twice, against a greedy server and then against one started
with those LM options, and the sequential pass's texts are compared: how many change, and the WER of each against
the manifest's references.

    python scripts/bench_server.py --model exp/synth/model.pt --manifest data/synth/test.jsonl \\
        --clients 32 --requests 320
    python scripts/bench_server.py --model exp/synth/model.pt --manifest data/synth/test.jsonl \\
        --clients 1 --requests 64 --lm exp/synth/lm/char6.arpa --lm-params exp/synth/lm/params.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np


def audio_files(manifest: str, limit: int) -> tuple[list[Path], list[str]]:
    """The first ``limit`` files of ``manifest`` and their reference texts."""
    root = Path(manifest).parent
    files, refs = [], []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                files.append(root / item["audio_filepath"])
                refs.append(item.get("text", ""))
            if len(files) == limit:
                break
    return files, refs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "asr",
        "-q",
        "serve",
        "--model",
        args.model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-concurrent",
        str(args.max_concurrent),
        "--max-queue",
        str(args.max_queue),
        "--device",
        "cpu",
        *extra,
    ]
    print("server:", " ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):  # up to 60 s to load the model
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("server did not answer /healthz within 60 s")


async def transcribe(client: httpx.AsyncClient, name: str, data: bytes) -> tuple[int, str | None, float]:
    start = time.perf_counter()
    r = await client.post("/v1/transcribe", files={"file": (name, data, "audio/wav")})
    text = r.json().get("text") if r.status_code == 200 else None
    return r.status_code, text, time.perf_counter() - start


async def load(url: str, files: list[Path], clients: int, requests: int) -> dict:
    payloads = [(f.name, f.read_bytes()) for f in files]
    timeout = httpx.Timeout(300.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=clients)) as client:
        reference = {}
        for name, data in payloads:  # sequential pass: each file's own result
            status, text, _ = await transcribe(client, name, data)
            if status != 200:
                raise SystemExit(f"sequential pass: {name} got {status}")
            reference[name] = text
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)
        answers: dict[int, tuple[int, str | None, float]] = {}

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                name, data = payloads[i % len(payloads)]
                try:
                    answers[i] = await transcribe(client, name, data)
                except httpx.HTTPError as e:
                    answers[i] = (-1, f"{type(e).__name__}: {e}", 0.0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    statuses = Counter(a[0] for a in answers.values())
    wrong = sum(1 for i, a in answers.items() if a[0] == 200 and a[1] != reference[payloads[i % len(payloads)][0]])
    latencies = np.array([a[2] for a in answers.values() if a[0] == 200])
    return {
        "requests": requests,
        "answered": len(answers),
        "statuses": dict(statuses),
        "wrong_text": wrong,
        "wall_s": wall,
        "latencies": latencies,
        "texts": [reference[name] for name, _ in payloads],
    }


def run(args: argparse.Namespace, files: list[Path], audio_seconds: float, extra: list[str]) -> tuple[dict, int]:
    """One server (``asr serve`` with ``extra`` options) under the load; its results and its error count."""
    port = free_port()
    proc = start_server(args, port, extra)
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        r = asyncio.run(load(f"http://127.0.0.1:{port}", files, args.clients, args.requests))
    finally:
        proc.terminate()
        proc.wait(30)
    lat = r["latencies"]
    ok = r["statuses"].get(200, 0)
    errors = args.requests - ok + r["wrong_text"]
    print(f"decoder: {json.dumps(health.get('decoder'))}")
    print(
        f"answered {r['answered']}/{args.requests}; statuses {r['statuses']}; wrong text {r['wrong_text']}; "
        f"errors {errors}"
    )
    if len(lat):
        print(
            f"latency p50 {np.percentile(lat, 50) * 1000:.0f} ms, p95 {np.percentile(lat, 95) * 1000:.0f} ms, "
            f"max {lat.max() * 1000:.0f} ms"
        )
    print(
        f"throughput {ok / r['wall_s']:.1f} requests/s, {audio_seconds / r['wall_s']:.1f} audio-s/s "
        f"(wall {r['wall_s']:.1f} s)"
    )
    return r, errors + (r["answered"] != args.requests)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, help="JSON-lines manifest whose audio is sent")
    p.add_argument("--files", type=int, default=32, help="distinct files taken from the manifest")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=320)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--max-queue", type=int, default=32)
    p.add_argument("--lm", help="also run the load against a server started with --lm LM, and compare texts")
    p.add_argument("--lm-params", help="passed to that server as --lm-params")
    args = p.parse_args(argv)
    files, refs = audio_files(args.manifest, args.files)
    import soundfile as sf

    from asr.data.tokenizer import normalize_text
    from asr.evaluation.metrics import ErrorRates

    seconds = [sf.info(f).duration for f in files]
    audio_seconds = sum(seconds[i % len(files)] for i in range(args.requests))
    print(f"host: {platform.node()} {os.cpu_count()} cores; python {platform.python_version()}")
    print(
        f"{len(files)} files ({np.mean(seconds):.2f} s mean), {args.clients} clients, {args.requests} requests, "
        f"server --max-concurrent {args.max_concurrent} --max-queue {args.max_queue}"
    )
    servers = [("greedy", [])]
    if args.lm:
        servers.append(("lm", ["--lm", args.lm] + (["--lm-params", args.lm_params] if args.lm_params else [])))
    texts, failures = {}, 0
    for label, extra in servers:
        print(f"--- {label}")
        r, errors = run(args, files, audio_seconds, extra)
        failures += errors
        texts[label] = r["texts"]
        if any(refs):
            rates = ErrorRates()
            for ref, hyp in zip(refs, r["texts"]):
                rates.add(normalize_text(ref), hyp or "")
            print(f"WER of the {len(files)} files' texts against the manifest: {100 * rates.wer:.2f} %")
    if args.lm:
        changed = sum(a != b for a, b in zip(texts["greedy"], texts["lm"]))
        print(f"texts changed by the LM: {changed} of {len(files)} files")
        for ref, a, b in zip(refs, texts["greedy"], texts["lm"]):
            if a != b:
                print(f"  ref    {normalize_text(ref)}\n  greedy {a}\n  lm     {b}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
