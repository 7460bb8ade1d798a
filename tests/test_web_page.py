"""The page `asr serve` serves, in headless Chromium: the microphone (an espeak wav fed as a fake capture device)
is recorded, sent, and the transcript shown; playback highlights the word being played; a chosen file is sent
too, and a bad one shows the server's message.

What is checked, and why it is honest without a trained model in CI: the audio the server received is the wav
Chromium was given as its microphone (cross-correlation), and the page shows exactly the text the server returned
for it, word by word with their times. That the text is *right* needs a model that recognises speech: with
``ASR_SERVE_TEST_MODEL=path/to/model.pt`` (e.g. the synth recipe's ``exp/synth/model.pt``, used when present) the
spoken sentence must also appear in the transcript. Skipped where Chromium or playwright is missing; CI installs
Chromium (``make browser``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("espeakng_loader")

CHROMIUM = os.environ.get("ASR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install chromium)")

SENTENCE = "move the blue bottle to the shelf"
TRAINED = os.environ.get("ASR_SERVE_TEST_MODEL") or str(Path(__file__).parents[1] / "exp/synth/model.pt")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """The sentence as the microphone will say it: 16-bit wav, silence either side, and the speech alone."""
    from asr.corpora.espeak import synthesize

    voice = synthesize(SENTENCE, voice="en-us+m3", rate=140)
    audio = np.concatenate([np.zeros(8000, np.float32), voice, np.zeros(16000, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path, voice


def record_calls(recognizer) -> tuple[list, list]:
    """Wrap the server's recogniser: keep what each request gave it (as 16 kHz samples) and got back, and each
    stream's final text."""
    calls, finals = [], []
    transcribe, open_stream = recognizer.transcribe, recognizer.open_stream

    def recorded(audio, name):  # the upload as the server decoded it: mono at the model's 16 kHz
        result = transcribe(audio, name)
        calls.append((audio.copy(), result))
        return result

    def recorded_stream(*args):
        session = open_stream(*args)
        finish = session.finish

        def recorded_finish():
            final = finish()
            finals.append(final.text)
            return final

        session.finish = recorded_finish
        return session

    recognizer.transcribe, recognizer.open_stream = recorded, recorded_stream
    return calls, finals


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server on a free loopback port, in a thread (the browser needs TCP)."""
    import uvicorn

    from asr.model.file import load_model
    from asr.serving.server import Recognizer, server_options

    trained = os.path.exists(TRAINED)
    if trained:
        model = TRAINED
    else:
        from test_server import random_model

        model = random_model(tmp_path_factory.mktemp("model") / "model.pt")
    recognizer = Recognizer(load_model(model))
    calls, finals = record_calls(recognizer)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # what `asr serve` runs: its Host/Origin checks and connection guard must let the page's own requests through
    options = server_options(recognizer, "127.0.0.1", port)
    config = uvicorn.Config(**{**options, "log_level": "warning"})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started
    yield f"http://127.0.0.1:{port}/", calls, finals, trained, recognizer.streaming_mode
    server.should_exit = True
    thread.join(10)
    sock.close()


def best_correlation(received: np.ndarray, speech: np.ndarray) -> float:
    """Peak normalised cross-correlation of ``speech`` against every position in ``received``."""
    n = len(received) + len(speech)
    size = 1 << (n - 1).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(speech, size)), size)[: len(received)]
    energy = np.convolve(received**2, np.ones(len(speech)), mode="full")[len(speech) - 1 :]
    return float(np.max(np.abs(xcorr) / np.sqrt(np.maximum(energy, 1e-12) * np.sum(speech**2))))


def test_page_records_the_microphone_and_shows_the_transcript(server, speech, tmp_path):
    url, calls, finals, trained, streaming = server
    wav, voice = speech
    seconds = sf.info(wav).duration
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox",
    ]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 620})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("body[data-ready]", timeout=10_000)
            # The header states what the look-ahead adds to the live text's delay (0 ms without one).
            assert ("look-ahead 0 ms" in page.inner_text("#model")) == (streaming == "exact")
            card = page.inner_text("#card")  # the model card's line, or that there is none
            assert card.startswith("model ") or card == "no model card", card
            page.click("#record")
            # The fake device plays the file from its start, then loops: stop within the next copy's 0.5 s of
            # silence, so the recording holds the sentence once.
            page.wait_for_function(
                f"() => Number(document.body.dataset.recordedSeconds || 0) >= {seconds + 0.1:.2f}", timeout=20_000
            )
            page.click("#stop")
            page.wait_for_selector("#transcript[data-done], #transcript[data-error]", timeout=20_000)
            assert page.get_attribute("#transcript", "data-error") is None, page.inner_text("#status")
            shown = page.get_attribute("#transcript", "data-text")
            spans = page.eval_on_selector_all(
                "#transcript .word",
                "els => els.map(e => [e.textContent, Number(e.dataset.start), Number(e.dataset.end)])",
            )
            assert calls, "the page never reached the server"
            received, result = calls[-1]
            # The page shows what the server returned, word by word with its times.
            assert shown == result["text"]
            words = [w for s in result["segments"] for w in s["words"]]
            assert spans == [[w["word"], w["start"], w["end"]] for w in words]
            # The server got the microphone's audio: the sentence, intact.
            assert len(received) / 16000 >= seconds
            assert best_correlation(received, voice) > 0.8
            if trained:  # the model hears the sentence (its own offline errors on padded audio are a few chars)
                import jiwer

                assert jiwer.cer(SENTENCE, shown) <= 0.15, shown
            # The live section ends with the stream's final text, a line per segment (one: no pause in it).
            page.wait_for_selector("#live[data-final]", timeout=20_000)
            assert finals and page.get_attribute("#live", "data-text") == finals[-1]
            lines = page.eval_on_selector_all("#segments li", "els => els.map(e => e.textContent)")
            assert " ".join(lines) == finals[-1] and page.inner_text("#partial") == ""
            note = page.inner_text("#stream-note")
            assert ("after each pause" in note) == (streaming == "segmented")
            if spans:  # playback highlights the word being played
                word, start, end = spans[len(spans) // 2]
                page.eval_on_selector("#player", f"p => {{ p.currentTime = {(start + end) / 2}; }}")
                page.wait_for_selector(".word.current", timeout=5_000)
                assert page.inner_text(".word.current") == word
            page.screenshot(path=str(tmp_path / "serve.png"))
            if os.environ.get("ASR_SERVE_SCREENSHOT"):
                page.screenshot(path=os.environ["ASR_SERVE_SCREENSHOT"])
            # A chosen file: one that is not audio shows the server's 400, the wav its transcript.
            page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}])
            page.wait_for_selector("#transcript[data-error]", timeout=20_000)
            assert "Error 400: notes.txt: not a readable audio file" in page.inner_text("#status")
            page.set_input_files("#file", str(wav))
            page.wait_for_selector("#transcript[data-done]", timeout=20_000)
            assert page.get_attribute("#transcript", "data-text") == calls[-1][1]["text"]
            assert calls[-1][1]["path"] == "mic.wav"
            assert not errors
        finally:
            browser.close()
