"""Bring-your-own-data manifests: the three layouts, and every kind of bad entry rejected with its reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_manifest import DATA_DIR_KINDS, assert_every_manifest_path_opens, data_dir_as

from asr.cli import main as asr_main
from asr.corpora import corpus_check as cc
from asr.data.manifest import read_manifest

SR = 16000


def _speech(text: str) -> np.ndarray:
    try:
        from asr.corpora.espeak import synthesize

        return synthesize(text, sample_rate=SR)
    except Exception:  # espeak-ng missing: a tone of the right length is as good for header checks
        t = np.arange(int(0.08 * SR * max(1, len(text)))) / SR
        return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _write(path, text=None, audio_text="hello world", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = _speech(audio_text)
    sf.write(path, audio, SR, format=fmt)
    if text is not None:
        path.with_suffix(".txt").write_text(text)
    return len(audio) / SR


def _rejects(path):
    with open(path, newline="") as f:
        return {row["path"].rsplit("/", 1)[-1]: row["reason"] for row in csv.DictReader(f, delimiter="\t")}


def test_folder_layout_keeps_good_files_and_rejects_bad_ones_with_reasons(tmp_path, capsys):
    src = tmp_path / "corpus"
    d1 = _write(src / "one.wav", "Hello, World!")
    d2 = _write(src / "sub" / "two.flac", "good  morning", "good morning")
    (src / "missing.txt").write_text("no audio for this one")
    (src / "empty.wav").write_bytes(b"")
    (src / "empty.txt").write_text("empty audio")
    (src / "notaudio.wav").write_text("this is not a RIFF file at all")
    (src / "notaudio.txt").write_text("not audio")
    _write(src / "oov.wav", "café au lait")
    _write(src / "untranscribed.wav")
    out = tmp_path / "out" / "train.jsonl"

    assert cc.main([str(src), "--output", str(out), "--workers", "4"]) == 0

    kept = read_manifest(out)
    assert [(u.audio_filepath.rsplit("/", 1)[-1], u.text) for u in kept] == [
        ("one.wav", "hello world"),
        ("two.flac", "good morning"),
    ]
    assert [u.duration for u in kept] == pytest.approx([d1, d2], abs=1e-3)
    rejects = _rejects(out.with_name("train.jsonl.rejects.tsv"))
    assert rejects == {
        "missing.wav": cc.MISSING,
        "empty.wav": cc.EMPTY,
        "notaudio.wav": cc.UNREADABLE,
        "oov.wav": cc.OOV,
        "untranscribed.wav": cc.NO_TRANSCRIPT,
    }
    summary = capsys.readouterr().out
    assert "kept 2" in summary and "rejected 5" in summary
    assert "'é'" in summary


def test_librispeech_style_tree(tmp_path):
    chapter = tmp_path / "tree" / "spk1" / "ch1"
    d = _write(chapter / "spk1-ch1-0000.flac", None, "first one")
    _write(chapter / "spk1-ch1-0001.flac", None, "second one")
    (chapter / "spk1-ch1.trans.txt").write_text(
        "spk1-ch1-0000 FIRST ONE\nspk1-ch1-0001 SECOND ONE\nspk1-ch1-0002 THIRD IS MISSING\n"
    )
    out = tmp_path / "m.jsonl"
    assert cc.main([str(tmp_path / "tree"), "-o", str(out)]) == 0
    kept = read_manifest(out)
    assert [(u.extra["id"], u.text) for u in kept] == [("spk1-ch1-0000", "first one"), ("spk1-ch1-0001", "second one")]
    assert kept[0].duration == pytest.approx(d, abs=1e-3)
    assert _rejects(tmp_path / "m.jsonl.rejects.tsv") == {"spk1-ch1-0002.flac": cc.MISSING}


def test_csv_with_header_relative_paths_and_extra_columns(tmp_path):
    _write(tmp_path / "data" / "clips" / "a.wav", None, "alpha")
    _write(tmp_path / "elsewhere" / "b.wav", None, "bravo")
    table = tmp_path / "data" / "list.csv"
    table.write_text(
        "path,text,speaker\n"
        'clips/a.wav,"Alpha, one",s1\n'
        f"{tmp_path / 'elsewhere' / 'b.wav'},bravo,s2\n"
        "clips/gone.wav,gone,s3\n"
    )
    out = tmp_path / "data" / "list.jsonl"
    assert cc.main([str(table), "-o", str(out)]) == 0
    kept = read_manifest(out)
    assert [(u.text, u.extra) for u in kept] == [("alpha one", {"speaker": "s1"}), ("bravo", {"speaker": "s2"})]
    # Inside the manifest's folder the path is stored relative, so the corpus can be moved.
    first = json.loads(out.read_text().splitlines()[0])
    assert first["audio_filepath"] == "clips/a.wav"
    assert _rejects(tmp_path / "data" / "list.jsonl.rejects.tsv") == {"gone.wav": cc.MISSING}


def test_tsv_without_header(tmp_path):
    _write(tmp_path / "x.flac", None, "x ray")
    (tmp_path / "list.tsv").write_text("x.flac\tX-ray\n")
    result = cc.check_corpus(cc.find_candidates(tmp_path / "list.tsv"))
    assert [u.text for u in result.kept] == ["x ray"] and not result.rejected


def test_duplicates_and_empty_transcripts(tmp_path):
    _write(tmp_path / "a.wav")
    _write(tmp_path / "b.wav")
    (tmp_path / "t.csv").write_text("a.wav,hello\na.wav,hello again\nb.wav,...\n")
    result = cc.check_corpus(cc.find_candidates(tmp_path / "t.csv"))
    assert len(result.kept) == 1
    assert sorted(r.reason for r in result.rejected) == [cc.DUPLICATE, cc.EMPTY_TEXT]


def test_nothing_usable_writes_no_manifest(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.wav").write_bytes(b"\x00" * 100)
    (tmp_path / "src" / "bad.txt").write_text("bad")
    out = tmp_path / "out.jsonl"
    assert asr_main(["manifest", str(tmp_path / "src"), "-o", str(out)]) == 2
    assert not out.exists()
    assert "asr: error: no usable utterance" in capsys.readouterr().err


def test_strict_fails_on_any_rejection_but_still_writes_the_good_part(tmp_path, capsys):
    _write(tmp_path / "src" / "ok.wav", "fine")
    _write(tmp_path / "src" / "no.wav", "naïve")
    out = tmp_path / "out.jsonl"
    assert asr_main(["manifest", str(tmp_path / "src"), "-o", str(out), "--strict"]) == 2
    assert "asr: error: 1 entry rejected (--strict)" in capsys.readouterr().err
    assert len(read_manifest(out)) == 1


def test_a_table_without_a_path_column_is_explained(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("utterance,transcript\nx,y\n")
    assert asr_main(["manifest", str(tmp_path / "t.csv"), "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asr: error: ") and "path column" in err


@pytest.mark.parametrize("kind", DATA_DIR_KINDS)
def test_manifests_from_any_data_folder_open_from_anywhere(tmp_path, monkeypatch, kind):
    """`asr manifest` with the corpus folder relative, `../`, symlinked or absolute, the manifest written inside
    the corpus and outside it: every path opens from another folder."""
    data = data_dir_as(kind, tmp_path, monkeypatch)
    _write(Path(data) / "corpus" / "a.wav", "alpha")
    _write(Path(data) / "corpus" / "sub" / "b.flac", "bravo")
    assert asr_main(["manifest", f"{data}/corpus", "-o", f"{data}/corpus/train.jsonl"]) == 0
    assert asr_main(["manifest", f"{data}/corpus", "-o", "out/train.jsonl"]) == 0
    assert [json.loads(line)["audio_filepath"] for line in (Path(data) / "corpus" / "train.jsonl").open()] == [
        "a.wav",
        "sub/b.flac",
    ]
    assert_every_manifest_path_opens(data, expected=2)
    assert_every_manifest_path_opens("out", expected=2)


def test_sample_rate_and_duration_limits(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name, sr, seconds in (
        ("ok16k", 16000, 0.5),
        ("odd22k", 22050, 0.5),
        ("low8k", 8000, 0.5),
        ("long", 16000, 3.0),
    ):
        sf.write(src / f"{name}.wav", np.zeros(int(sr * seconds), dtype=np.float32), sr)
        (src / f"{name}.txt").write_text(name.rstrip("0123456789k") or "x")
    out = tmp_path / "m.jsonl"
    assert asr_main(["manifest", str(src), "-o", str(out), "--min-sample-rate", "16000", "--max-duration", "2"]) == 0
    assert sorted(u.audio_filepath.rsplit("/", 1)[-1] for u in read_manifest(out)) == ["odd22k.wav", "ok16k.wav"]
    assert _rejects(tmp_path / "m.jsonl.rejects.tsv") == {"low8k.wav": cc.LOW_RATE, "long.wav": cc.TOO_LONG}
    assert "16000 Hz: 1, 22050 Hz: 1" in capsys.readouterr().out  # mixed rates are shown, and resampled on load


def test_a_table_that_is_not_utf8_names_its_line_and_a_bom_is_fine(tmp_path, capsys):
    _write(tmp_path / "a.wav")
    (tmp_path / "bom.csv").write_bytes("\ufeffpath,text\na.wav,hello\n".encode("utf-8"))
    assert [u.text for u in cc.check_corpus(cc.find_candidates(tmp_path / "bom.csv")).kept] == ["hello"]
    (tmp_path / "latin1.csv").write_bytes("path,text\na.wav,hello\na.wav,café\n".encode("latin-1"))
    assert asr_main(["manifest", str(tmp_path / "latin1.csv"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "asr: error: " + str(tmp_path / "latin1.csv") + ":3: not UTF-8 (byte 0xe9)" in capsys.readouterr().err


def test_a_transcript_file_that_is_not_utf8_costs_only_its_entry(tmp_path):
    chapter = tmp_path / "tree" / "s" / "c"
    _write(chapter / "s-c-0000.flac", None, "one")
    _write(chapter / "s-c-0001.flac", None, "two")
    (chapter / "s-c.trans.txt").write_bytes("s-c-0000 ONE\ns-c-0001 CAF\xc9\n".encode("latin-1"))
    result = cc.check_corpus(cc.find_candidates(tmp_path / "tree"))
    assert [u.text for u in result.kept] == ["one"]
    assert [(r.reason, r.origin.rsplit("/", 1)[-1]) for r in result.rejected] == [(cc.OOV, "s-c.trans.txt:2")]


def test_a_file_name_that_is_not_utf8_is_rejected_by_name_and_the_rest_kept(tmp_path, capsys):
    import os

    from asr.data.manifest import ManifestError, write_manifest

    src = tmp_path / "corpus"
    _write(src / "ok.wav", "hello world")
    latin1 = os.path.join(os.fsdecode(src), os.fsdecode(b"caf\xe9.wav"))  # a Latin-1 name on a UTF-8 system
    sf.write(os.fsencode(latin1), _speech("hello world"), SR)
    with open(os.fsencode(latin1[:-4] + ".txt"), "w") as f:
        f.write("hello world")
    out = tmp_path / "out" / "m.jsonl"
    assert cc.main([str(src), "--output", str(out)]) == 0  # was a UnicodeEncodeError traceback
    assert [Path(u.audio_filepath).name for u in read_manifest(out)] == ["ok.wav"]
    rejects = _rejects(out.parent / "m.jsonl.rejects.tsv")
    assert rejects == {"caf\\xe9.wav": cc.NOT_UTF8_NAME}
    with pytest.raises(ManifestError, match=r"caf\\xe9.wav: file name is not UTF-8"):
        write_manifest(tmp_path / "direct.jsonl", [{"audio_filepath": latin1, "duration": 1.0, "text": "x"}])
    assert not list(tmp_path.glob("direct.jsonl*"))  # no half-written file left
