"""`asr transcribe` on many inputs and on inputs that go wrong: directories, lists, output files and formats; silence,
tiny files, headers that lie, non-audio and corrupt files. Each bad input gets one line naming it; the rest go on."""

import json
import struct

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.data.manifest import read_manifest


@pytest.fixture
def model(trained_model):
    return str(trained_model / "model.pt")


@pytest.fixture
def speech(tiny_corpus):
    return [u.audio_filepath for u in read_manifest(tiny_corpus["test"])]


def _json_lines(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.strip().splitlines()]


def test_directories_lists_and_output_dir(model, speech, tmp_path, capsys):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    audio, sr = sf.read(speech[0])
    sf.write(d / "a.wav", audio, sr)
    sf.write(d / "sub" / "b.flac", np.stack([audio, audio], axis=1), sr)  # stereo flac, found recursively
    (d / "notes.txt").write_text("not audio\n")
    (d / "sub" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    listed = tmp_path / "list.txt"
    listed.write_text(f"# one per line\n{speech[1]}\n\n")
    out = tmp_path / "out"
    rc = main(
        [
            "transcribe",
            "--model",
            model,
            str(d),
            "--input-list",
            str(listed),
            "--output-dir",
            str(out),
            "--format",
            "json",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    skipped = [ln for ln in err.splitlines() if "not an audio file" in ln]
    assert len(skipped) == 2 and any("notes.txt" in ln for ln in skipped) and any("cover.jpg" in ln for ln in skipped)
    name = speech[1].rsplit("/", 1)[-1].rsplit(".", 1)[0]
    for rel in ("a.json", "sub/b.json", f"{name}.json"):
        r = json.loads((out / rel).read_text())
        assert {"path", "text", "duration", "segments"} <= set(r)
        assert all({"start", "end", "text", "words"} <= set(s) for s in r["segments"])
    assert json.loads((out / "a.json").read_text())["duration"] == pytest.approx(len(audio) / sr, abs=1e-3)


def test_subtitle_formats(model, speech, tmp_path, capsys):
    for fmt, head in (("srt", ""), ("vtt", "WEBVTT"), ("tsv", "start\tend\ttext")):
        assert main(["transcribe", "--model", model, "--format", fmt, speech[0]]) == 0
        assert capsys.readouterr().out.startswith(head)
    assert main(["transcribe", "--model", model, "--format", "srt", speech[0], speech[1]]) == 2
    assert "needs --output-dir" in capsys.readouterr().err
    assert main(["transcribe", "--model", model]) == 2
    assert "no input files" in capsys.readouterr().err


def test_long_file_segments_in_file_time(model, speech, tmp_path, capsys):
    """A file longer than the window limit is cut into segments whose times run through the whole file."""
    parts = []
    for p in speech * 4:
        a, sr = sf.read(p, dtype="float32")
        parts += [np.zeros(int(0.6 * sr), np.float32), a]
    long = np.concatenate(parts)
    sf.write(tmp_path / "long.wav", long, sr)
    assert (
        main(
            [
                "transcribe",
                "--model",
                model,
                "--format",
                "json",
                "--max-segment-seconds",
                "4",
                str(tmp_path / "long.wav"),
            ]
        )
        == 0
    )
    (r,) = _json_lines(capsys.readouterr().out)
    assert r["duration"] == pytest.approx(len(long) / sr, abs=1e-3)
    times = [t for s in r["segments"] for t in (s["start"], s["end"])]
    assert times == sorted(times) and (not times or times[-1] <= r["duration"])


def _wav_bytes(tmp_path, seconds: float) -> bytes:
    x = (0.3 * np.sin(np.arange(int(seconds * 16000)) / 5)).astype(np.float32)
    sf.write(tmp_path / "tmp.wav", x, 16000, subtype="PCM_16")
    return (tmp_path / "tmp.wav").read_bytes()


def test_silence_and_a_twentieth_of_a_second(model, tmp_path, capsys):
    sf.write(tmp_path / "silence.wav", np.zeros(16000 * 25, np.float32), 16000)
    sf.write(tmp_path / "blip.wav", 0.1 * np.random.default_rng(0).standard_normal(800).astype(np.float32), 16000)
    assert (
        main(
            [
                "transcribe",
                "--model",
                model,
                "--format",
                "json",
                str(tmp_path / "silence.wav"),
                str(tmp_path / "blip.wav"),
            ]
        )
        == 0
    )
    silence, blip = _json_lines(capsys.readouterr().out)
    assert silence["text"] == "" and silence["segments"] == [] and silence["duration"] == 25.0
    assert isinstance(blip["text"], str) and blip["duration"] == 0.05


def test_header_that_lies_about_its_length(model, tmp_path, capsys):
    data = _wav_bytes(tmp_path, 3.0)
    (tmp_path / "truncated.wav").write_bytes(data[: len(data) // 2])  # header says 3 s, 1.5 s is there
    i = data.find(b"data")
    (tmp_path / "zero.wav").write_bytes(data[: i + 4] + struct.pack("<I", 0) + data[i + 8 :])  # says 0 samples
    audio = (0.3 * np.sin(np.arange(16000 * 30) / 7)).astype(np.float32)
    sf.write(tmp_path / "full.flac", audio, 16000)
    flac = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    rc = main(
        [
            "transcribe",
            "--model",
            model,
            "--format",
            "json",
            *(str(tmp_path / n) for n in ("truncated.wav", "zero.wav", "truncated.flac")),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1  # zero.wav failed; the others were transcribed
    results = {r["path"].rsplit("/", 1)[-1]: r for r in _json_lines(captured.out)}
    assert results["truncated.wav"]["duration"] == pytest.approx(1.5, abs=0.01)
    assert "declares no audio samples" in results["zero.wav"]["error"]
    assert 0 < results["truncated.flac"]["duration"] < 30
    assert "truncated.flac: audio breaks off at" in captured.err and "asr: warning:" in captured.err


def test_missing_and_corrupt_files_do_not_stop_the_others(model, speech, tmp_path, capsys):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(range(200)))
    rc = main(
        [
            "transcribe",
            "--model",
            model,
            str(tmp_path / "missing.wav"),
            speech[0],
            str(tmp_path / "corrupt.wav"),
            speech[1],
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert [ln.split("\t")[0] for ln in captured.out.strip().splitlines()] == [speech[0], speech[1]]
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("asr: error:")]
    assert len(errors) == 2
    assert "missing.wav: file not found" in errors[0] and "corrupt.wav: not a readable audio file" in errors[1]


def unknown_length_flac(path, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """A FLAC whose STREAMINFO says total_samples = 0 ("unknown"), as encoders writing to a pipe leave it;
    libsndfile then reports 2**63 - 1 frames."""
    sf.write(path, audio, sample_rate, format="FLAC")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    # STREAMINFO starts at byte 8; total_samples is its 36 bits after 108 bits of block sizes, rate, channels, bps.
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames > 2**62


def test_flac_of_unknown_length_is_read_to_its_end(model, tmp_path, capsys):
    sr = 16000
    tone = (0.3 * np.sin(np.arange(int(2.5 * sr)) / 7)).astype(np.float32)
    unknown_length_flac(tmp_path / "piped.flac", tone, sr)
    unknown_length_flac(tmp_path / "stereo.flac", np.stack([tone, tone], axis=1), sr)
    rc = main(
        [
            "transcribe",
            "--model",
            model,
            "--format",
            "json",
            str(tmp_path / "piped.flac"),
            str(tmp_path / "stereo.flac"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for r in _json_lines(captured.out):
        assert r["duration"] == 2.5  # not 2.0: the last partial second is read too
    assert "warning" not in captured.err
    assert main(["transcribe", "--model", model, "--stream", "--format", "json", str(tmp_path / "piped.flac")]) == 0
    final = _json_lines(capsys.readouterr().out)[-1]
    assert "final" in final and final["time"] == 2.5  # streamed to the end as well

    from asr.data.audio import audio_info, load_audio

    info = audio_info(tmp_path / "piped.flac")
    assert (info.frames, info.declared, info.duration) == (int(2.5 * sr), False, 2.5)
    assert load_audio(tmp_path / "piped.flac").shape == (int(2.5 * sr),)

    # `asr manifest`: the real duration, not 576460752303423.5 s
    from asr.corpora import corpus_check

    (tmp_path / "piped.txt").write_text("a tone")
    (tmp_path / "stereo.txt").write_text("a tone")
    out = tmp_path / "m.jsonl"
    assert corpus_check.main([str(tmp_path), "--output", str(out)]) == 0
    assert [u.duration for u in read_manifest(out)] == [2.5, 2.5]
    capsys.readouterr()

    # cut short as well: read to the break, with the warning that says the header gave no length
    data = (tmp_path / "piped.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) * 2 // 3])
    rc = main(["transcribe", "--model", model, "--format", "json", str(tmp_path / "cut.flac")])
    captured = capsys.readouterr()
    assert rc == 0 and 1.0 < _json_lines(captured.out)[0]["duration"] < 2.5
    assert "cut.flac: audio breaks off at" in captured.err and "declares no length" in captured.err


def _feed_fifo(path, data: bytes):
    """A thread that writes ``data`` into the FIFO at ``path`` once a reader opens it; returns its stopper."""
    import os
    import threading

    os.mkfifo(path)

    def write():
        with open(path, "wb") as f:
            f.write(data)

    t = threading.Thread(target=write, daemon=True)
    t.start()

    def stop():
        if t.is_alive():  # nobody read it: open the other end so that the writer is released
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            t.join(5)
            os.close(fd)

    return stop


def test_a_pipe_is_transcribed_and_odd_file_names_keep_one_line_each(model, speech, tmp_path, capsys):
    import os
    import shutil

    wav = _wav_bytes(tmp_path, 0.75)  # < 64 KiB: fits in a pipe's buffer
    stop = _feed_fifo(tmp_path / "fifo.wav", wav)
    try:
        rc = main(["transcribe", "--model", model, "--format", "json", "--progress", str(tmp_path / "fifo.wav")])
    finally:
        stop()
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert _json_lines(captured.out)[0]["duration"] == 0.75
    from asr.data.audio import AudioError, audio_info

    os.mkfifo(tmp_path / "other.wav")
    with pytest.raises(AudioError, match="a pipe or device, not a file"):  # said plainly, not "file is empty"
        audio_info(tmp_path / "other.wav")

    # names with a tab, a newline, a backslash, and bytes that are not UTF-8
    from asr.inference.formats import unescape_path

    names = ["tab\there.wav", "new\nline.wav", "back\\slash.wav", os.fsdecode(b"caf\xe9-latin1.wav")]
    paths = [os.path.join(str(tmp_path), n) for n in names]
    for p in paths:
        shutil.copy(speech[0], p)
    rc = main(["transcribe", "--model", model, *paths])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == len(paths) and all(ln.count("\t") == 1 for ln in lines)
    assert [unescape_path(ln.split("\t")[0]) for ln in lines] == paths
    assert lines[3].split("\t")[0].endswith("caf\\xe9-latin1.wav")
    rc = main(["transcribe", "--model", model, "--format", "json", paths[3]])
    assert rc == 0 and _json_lines(capsys.readouterr().out)[0]["path"].endswith("caf\\xe9-latin1.wav")


def test_silence_noise_and_padding_around_real_clips(model, speech, tmp_path, capsys):
    """The trained model through the CLI: 2 s of silence and 5 s of white noise give empty transcripts; a clip
    with 1.5 s of silence on each side is transcribed from its speech, with a no-speech probability per segment."""
    sf.write(tmp_path / "silence.wav", np.zeros(2 * 16000, np.float32), 16000)
    sf.write(
        tmp_path / "white.wav", 0.1 * np.random.default_rng(1).standard_normal(5 * 16000).astype(np.float32), 16000
    )
    audio, sr = sf.read(speech[0], dtype="float32")
    side = np.zeros(int(1.5 * sr), np.float32)
    sf.write(tmp_path / "padded.wav", np.concatenate([side, audio, side]), sr)
    files = [str(tmp_path / n) for n in ("silence.wav", "white.wav", "padded.wav")]
    assert main(["transcribe", "--model", model, "--format", "json", *files]) == 0
    silence, white, padded = _json_lines(capsys.readouterr().out)
    assert (silence["text"], silence["segments"], white["text"], white["segments"]) == ("", [], "", [])
    assert white["duration"] == 5.0
    assert padded["text"] and padded["segments"]
    seg = padded["segments"][0]
    assert 1.5 - 0.2 <= seg["start"] and padded["segments"][-1]["end"] <= 1.5 + len(audio) / sr + 0.2
    assert all(0.0 <= s["no_speech_prob"] <= 1.0 for s in padded["segments"])
    # a threshold below every segment's no-speech probability drops them all; one above keeps them
    assert main(["transcribe", "--model", model, "--format", "json", "--no-speech-threshold", "0", files[2]]) == 0
    (dropped,) = _json_lines(capsys.readouterr().out)
    assert (dropped["text"], dropped["segments"]) == ("", [])
    assert main(["transcribe", "--model", model, "--format", "json", "--no-speech-threshold", "1", files[2]]) == 0
    assert _json_lines(capsys.readouterr().out)[0]["text"] == padded["text"]
    assert main(["transcribe", "--model", model, "--no-speech-threshold", "1.5", files[2]]) == 2
    assert "--no-speech-threshold must be a probability in [0, 1], got 1.5" in capsys.readouterr().err
