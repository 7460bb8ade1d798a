"""The manifest path contract (a path written resolves from the manifest's folder, wherever the writer ran) and
the encoding rules (UTF-8, a BOM accepted, a stray byte costs one named line)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data.manifest import ManifestError, manifest_path, read_manifest, write_manifest

DATA_DIR_KINDS = ["relative", "dotdot", "symlink", "absolute"]


def data_dir_as(kind: str, tmp_path, monkeypatch) -> str:
    """Work from ``tmp_path/repo`` (as from a repository root) with the data folder given as ``kind`` says;
    returns the ``--data-dir`` argument. The folder ends up at ``tmp_path/repo/data`` (relative, symlink, via a
    link into ``tmp_path/disk``), ``tmp_path/store`` (dotdot) or ``tmp_path/abs`` (absolute)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    if kind == "symlink":
        (tmp_path / "disk").mkdir()
        os.symlink("../disk", repo / "data")
    return {"relative": "data", "dotdot": "../store", "symlink": "data", "absolute": str(tmp_path / "abs")}[kind]


def assert_every_manifest_path_opens(root, expected: int | None = None) -> int:
    """From another folder than the writer's, every audio path of every manifest under ``root`` opens."""
    here = os.getcwd()
    os.chdir("/")
    try:
        paths = [u.audio_filepath for m in sorted(Path(here, root).rglob("*.jsonl")) for u in read_manifest(m)]
        for p in paths:
            sf.info(p)
    finally:
        os.chdir(here)
    assert paths and (expected is None or len(paths) == expected)
    return len(paths)


def _wav(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000)
    return path


def _utt(path):
    return {"audio_filepath": str(path), "duration": 0.01, "text": "x"}


def _stored(manifest):
    return [json.loads(line)["audio_filepath"] for line in manifest.read_text().splitlines()]


def test_paths_relative_to_the_current_folder_are_written_relative_to_the_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _wav(tmp_path / "data" / "corpus" / "a" / "x.wav")
    _wav(tmp_path / "elsewhere" / "y.wav")
    m = tmp_path / "data" / "corpus" / "train.jsonl"
    write_manifest("data/corpus/train.jsonl", [_utt("data/corpus/a/x.wav"), _utt("elsewhere/y.wav")])
    assert _stored(m) == ["a/x.wav", str(tmp_path / "elsewhere" / "y.wav")]
    for cwd in (tmp_path, tmp_path / "elsewhere", "/"):
        monkeypatch.chdir(cwd)
        assert [sf.info(u.audio_filepath).frames for u in read_manifest(m)] == [160, 160]


def test_a_symlinked_data_folder_keeps_manifests_relative_and_readable(tmp_path, monkeypatch):
    real = tmp_path / "disk" / "corpus"
    _wav(real / "x.wav")
    (tmp_path / "repo").mkdir()
    os.symlink(tmp_path / "disk", tmp_path / "repo" / "data")
    monkeypatch.chdir(tmp_path / "repo")
    write_manifest("data/corpus/m.jsonl", [_utt("data/corpus/x.wav"), _utt(real / "x.wav")])
    assert _stored(real / "m.jsonl") == ["x.wav", "x.wav"]
    monkeypatch.chdir(tmp_path)
    assert all(os.path.isfile(u.audio_filepath) for u in read_manifest("repo/data/corpus/m.jsonl"))


def test_dotdot_and_links_out_of_the_manifest_folder_are_judged_as_the_reader_follows_them(tmp_path):
    _wav(tmp_path / "a" / "x.wav")
    (tmp_path / "m").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "m" / "link")  # a link inside the folder, leading out of it
    os.symlink(tmp_path / "a", tmp_path / "alias")  # the manifest folder reached through a link
    assert manifest_path(tmp_path / "m" / "link" / "x.wav", tmp_path / "m") == "link/x.wav"
    assert manifest_path(tmp_path / "m" / ".." / "a" / "x.wav", tmp_path / "m") == str(tmp_path / "a" / "x.wav")
    assert manifest_path(tmp_path / "a" / "x.wav", tmp_path / "alias") == "x.wav"
    assert manifest_path(tmp_path / "alias" / ".." / "a" / "x.wav", tmp_path / "m") == str(tmp_path / "a" / "x.wav")


def test_absolute_paths_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _wav(tmp_path / "x.wav")
    write_manifest("m.jsonl", [_utt("x.wav")], relative_to_manifest=False)
    assert _stored(tmp_path / "m.jsonl") == [str(tmp_path / "x.wav")]


def test_a_manifest_read_and_written_again_elsewhere_still_points_at_the_same_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wav = _wav(tmp_path / "c" / "x.wav")
    write_manifest("c/m.jsonl", [_utt("c/x.wav")])
    write_manifest("out/copy.jsonl", read_manifest("c/m.jsonl"))
    assert [u.audio_filepath for u in read_manifest("out/copy.jsonl")] == [str(wav)]


LINE = '{"audio_filepath": "a.wav", "duration": 1.0, "text": "%s"}\n'


def test_a_line_that_is_not_utf8_is_named_and_only_that_line_is_lost(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_bytes((LINE % "one").encode() + (LINE % "caf\xe9").encode("latin-1") + (LINE % "three").encode())
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: not UTF-8 \(byte 0xe9 at column \d+\)"):
        read_manifest(m)
    errors: list[str] = []
    assert [u.text for u in read_manifest(m, strict=False, errors=errors)] == ["one", "three"]
    assert len(errors) == 1 and "m.jsonl:2: not UTF-8" in errors[0]


def test_a_byte_order_mark_does_not_cost_line_one(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_bytes(b"\xef\xbb\xbf" + (LINE % "one").encode() + (LINE % "two").encode().replace(b"\n", b"\r\n"))
    errors: list[str] = []
    assert [u.text for u in read_manifest(m, strict=False, errors=errors)] == ["one", "two"]
    assert errors == []


def test_evaluate_names_the_bad_line_instead_of_a_traceback(tiny_corpus, trained_model, tmp_path, capsys):
    from asr.cli import main

    lines = tiny_corpus["test"].read_bytes().splitlines(keepends=True)
    m = tiny_corpus["test"].with_name("bad_bytes.jsonl")  # beside the audio, so the relative paths resolve
    m.write_bytes(b"\xef\xbb\xbf" + lines[0] + b'{"audio_filepath": "x.wav", "text": "\xff"}\n' + b"".join(lines[1:]))
    try:
        rc = main(["evaluate", "--model", str(trained_model / "model.pt"), "--manifest", str(m), "--device", "cpu"])
        out, err = capsys.readouterr()
    finally:
        m.unlink()
    assert rc in (0, 1, 2)
    assert "bad_bytes.jsonl:2: not UTF-8 (byte 0xff" in err and "Traceback" not in err
    assert "UnicodeDecodeError" not in out + err
