"""Output formats: every format round-trips, subtitles break at sensible places."""

import json
import re

import pytest

from asr.inference.formats import MAX_CUE_SECONDS, MAX_LINE_CHARS, MAX_LINES, subtitle_cues, wrap_lines, write_result


def make_result(texts_and_starts: list[tuple[str, float]], word_seconds: float = 0.3, gap: float = 0.05) -> dict:
    """Segments of evenly timed words: each word lasts ``word_seconds``, ``gap`` apart."""
    segments = []
    for text, t in texts_and_starts:
        words = []
        for w in text.split():
            words.append({"word": w, "start": round(t, 3), "end": round(t + word_seconds, 3), "confidence": 0.9})
            t += word_seconds + gap
        segments.append(
            {
                "start": words[0]["start"] if words else t,
                "end": words[-1]["end"] if words else t,
                "text": text,
                "words": words,
            }
        )
    end = max((s["end"] for s in segments), default=0.0)
    return {
        "path": "a.wav",
        "text": " ".join(t for t, _ in texts_and_starts),
        "duration": end + 1.0,
        "segments": segments,
    }


CLOCK = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def parse_cues(text: str) -> list[tuple[float, float, list[str]]]:
    """(start, end, lines) of every srt or vtt cue."""
    cues = []
    for block in re.split(r"\n\n+", text.strip()):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            m = re.fullmatch(CLOCK + " --> " + CLOCK, line)
            if m:
                g = [int(x) for x in m.groups()]
                cues.append(
                    (
                        g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000,
                        g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                        lines[i + 1 :],
                    )
                )
    return cues


LONG = (
    "the quick brown fox jumps over the lazy dog while seven wizards quietly hex the jovial "
    "brown bears of the northern woods"
)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_parse_back_to_the_cue_times(fmt):
    result = make_result([(LONG, 0.5), ("after a pause", 30.0)])
    out = write_result(result, fmt)
    parsed = parse_cues(out)
    cues = subtitle_cues(result)
    assert len(parsed) == len(cues) > 2
    for (start, end, lines), cue in zip(parsed, cues):
        assert start == pytest.approx(cue.start, abs=1e-3) and end == pytest.approx(cue.end, abs=1e-3)
        assert lines == cue.lines
    assert " ".join(" ".join(lines) for _, _, lines in parsed) == result["text"]  # no word lost or repeated
    if fmt == "vtt":
        assert out.startswith("WEBVTT\n\n")
    else:
        assert [int(b.splitlines()[0]) for b in out.strip().split("\n\n")] == list(range(1, len(cues) + 1))


def test_subtitle_cues_respect_length_duration_and_pauses():
    result = make_result([(LONG, 0.0)], word_seconds=0.2)
    # A long pause in the middle of one segment.
    for w in result["segments"][0]["words"][5:]:
        w["start"] += 2.0
        w["end"] += 2.0
    cues = subtitle_cues(result)
    for cue in cues:
        assert 1 <= len(cue.lines) <= MAX_LINES and all(len(line) <= MAX_LINE_CHARS for line in cue.lines)
    words = result["segments"][0]["words"]
    for cue, nxt in zip(cues, cues[1:]):
        assert cue.end <= nxt.start  # cues never overlap
    # The pause before word 5 ends a cue.
    assert any(c.start == words[5]["start"] for c in cues)
    # Every cue's words span at most MAX_CUE_SECONDS.
    spans = [(c.start, max(w["end"] for w in words if c.start <= w["start"] < c.end + 1e-9)) for c in cues]
    assert all(end - start <= MAX_CUE_SECONDS + 1e-9 for start, end in spans)


def test_srt_lines_are_balanced_and_short():
    assert wrap_lines("a short line".split()) == ["a short line"]
    lines = wrap_lines("the quick brown fox jumps over the lazy dog near a river bank".split())
    assert len(lines) == 2 and all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert abs(len(lines[0]) - len(lines[1])) <= 10
    assert wrap_lines(["x" * 50, "y"]) == ["x" * 50, "y"]  # an over-long word overflows its own line


def test_json_is_one_whisper_like_object():
    result = make_result([("hello world", 0.2), ("again", 3.0)])
    out = write_result(result, "json")
    assert out.count("\n") == 1
    back = json.loads(out)
    assert back == result
    assert set(back) >= {"path", "text", "duration", "segments"}
    assert set(back["segments"][0]["words"][0]) == {"word", "start", "end", "confidence"}


def test_tsv_is_milliseconds_per_segment_and_text_is_the_transcript():
    result = make_result([("hello world", 0.2), ("again", 3.0)])
    rows = write_result(result, "tsv").splitlines()
    assert rows[0] == "start\tend\ttext"
    assert rows[1:] == ["200\t850\thello world", "3000\t3300\tagain"]
    assert write_result(result, "text") == "hello world again\n"


@pytest.mark.parametrize("fmt", ["text", "json", "srt", "vtt", "tsv"])
def test_empty_transcript_gives_an_empty_but_valid_file(fmt):
    result = {"path": "silence.wav", "text": "", "duration": 3.0, "segments": []}
    out = write_result(result, fmt)
    expected = {"text": "\n", "srt": "", "vtt": "WEBVTT\n", "tsv": "start\tend\ttext\n"}
    if fmt == "json":
        assert json.loads(out) == result
    else:
        assert out == expected[fmt]


def test_segments_without_word_times_are_spread_over_their_span():
    result = {
        "path": "a.wav",
        "text": "one two",
        "duration": 4.0,
        "segments": [{"start": 1.0, "end": 3.0, "text": "one two"}],
    }
    (cue,) = subtitle_cues(result)
    assert cue.start == 1.0 and cue.end == pytest.approx(3.0, abs=0.3) and cue.lines == ["one two"]


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown output format 'docx'"):
        write_result({"text": ""}, "docx")
