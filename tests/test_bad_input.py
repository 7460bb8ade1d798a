"""Each kind of bad input gets a clear message naming the file (and line); long jobs go on past it."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from asr.cli import main
from asr.data.audio import AudioError, load_audio
from asr.data.manifest import ManifestError, read_manifest
from asr.model.file import ModelFileError, load_model
from asr.training.config import ConfigError, load_config


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(range(200)))
    (tmp_path / "notes.txt").write_text("this is not audio\n")
    return tmp_path


@pytest.mark.parametrize(
    "name,reason",
    [
        ("missing.wav", "not found"),
        ("empty.wav", "empty"),
        ("corrupt.wav", "not a readable audio file"),
        ("notes.txt", "not a readable audio file"),
    ],
)
def test_bad_audio_files(bad_files, name, reason):
    path = bad_files / name
    with pytest.raises(AudioError, match=reason) as e:
        load_audio(path)
    assert str(path) in str(e.value)


def test_manifest_errors_name_file_and_line(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(
        '{"audio_filepath": "a.wav", "duration": 1.0, "text": "hi"}\nnot json\n'
        '{"audio_filepath": "b.wav", "text": "no duration"}\n'
    )
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not valid JSON"):
        read_manifest(m)
    errors = []
    utts = read_manifest(m, strict=False, errors=errors)
    assert len(utts) == 1 and utts[0].audio_filepath == str(tmp_path / "a.wav")
    assert errors[0].endswith("m.jsonl:2: not valid JSON (Expecting value at column 1)")
    assert "m.jsonl:3: missing key(s) duration" in errors[1]


def test_unknown_config_key(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text("model:\n  hiden_size: 12\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml: unknown config key 'model.hiden_size'; did you mean 'model.hidden_size'"
    ):
        load_config(conf)
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        load_config(None, ["modle.cell=gru"])
    rc = main(
        [
            "train",
            "--config",
            str(conf),
            "--train-manifest",
            "x",
            "--val-manifest",
            "y",
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "unknown config key 'model.hiden_size'" in capsys.readouterr().err


def test_bad_model_files(tmp_path, trained_model):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="junk.pt: not an asr model file"):
        load_model(junk)
    obj = torch.load(trained_model / "model.pt", weights_only=True)
    obj["format_version"] = 99
    future = tmp_path / "future.pt"
    torch.save(obj, future)
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model(future)
    with pytest.raises(ModelFileError, match="Lightning training checkpoint"):
        load_model(trained_model / "checkpoints" / "last.ckpt")
    # a pickle that would run code is refused, not executed
    evil = tmp_path / "evil.pt"
    torch.save({"format": "asr-rnn-ctc", "x": np.dtype("float32").__class__}, evil)
    with pytest.raises(ModelFileError, match="cannot be loaded safely"):
        load_model(evil)


def test_transcribe_reports_bad_files_and_goes_on(trained_model, tiny_corpus, bad_files, capsys):
    good = read_manifest(tiny_corpus["test"])[0].audio_filepath
    rc = main(
        [
            "transcribe",
            "--model",
            str(trained_model / "model.pt"),
            str(bad_files / "empty.wav"),
            good,
            str(bad_files / "missing.wav"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert good in captured.out
    assert "empty.wav: file is empty" in captured.err and "missing.wav: file not found" in captured.err


def test_training_skips_and_counts_bad_utterances(tiny_corpus, bad_files, tmp_path):
    train = read_manifest(tiny_corpus["train"])
    lines = [json.dumps(u.to_json()) for u in train]
    first = train[0]
    lines += [
        "this line is not json",
        json.dumps({"audio_filepath": first.audio_filepath, "duration": first.duration, "text": "naïve café 42"}),
        json.dumps(
            {
                "audio_filepath": first.audio_filepath,
                "duration": 0.2,
                "text": "a transcript far too long for two tenths of a second of audio",
            }
        ),
        json.dumps({"audio_filepath": str(bad_files / "corrupt.wav"), "duration": 1.0, "text": "corrupt"}),
    ]
    m = tmp_path / "train.jsonl"
    m.write_text("\n".join(lines) + "\n")
    out = tmp_path / "exp"
    rc = main(
        [
            "train",
            "--train-manifest",
            str(m),
            "--val-manifest",
            str(tiny_corpus["dev"]),
            "--output-dir",
            str(out),
            "--max-epochs",
            "1",
            *TINY_MODEL,
        ]
    )
    assert rc == 0
    skipped = (out / "skipped_train.txt").read_text()
    assert f"{m}:{len(train) + 1}: not valid JSON" in skipped
    assert "characters outside the vocabulary: '2', '4', 'é', 'ï'" in skipped
    assert "CTC frames but 0.20 s of audio gives only" in skipped
    # the corrupt file is only found when decoded: it is skipped in its batch and counted
    metadata = load_model(out / "model.pt").metadata
    assert metadata["skipped_train"] == 3
    assert metadata["skipped_while_decoding"] == 1


def test_evaluate_skips_bad_lines_and_files(trained_model, tiny_corpus, bad_files, tmp_path, capsys):
    test = read_manifest(tiny_corpus["test"])
    lines = [json.dumps(u.to_json()) for u in test] + [
        "{broken",
        json.dumps({"audio_filepath": str(bad_files / "empty.wav"), "duration": 1.0, "text": "empty"}),
    ]
    m = tmp_path / "test.jsonl"
    m.write_text("\n".join(lines) + "\n")
    report = tmp_path / "r.json"
    # the report lists both, the unreadable file counts as deletions, and the command fails (tests/test_evaluate.py)
    assert (
        main(["evaluate", "--model", str(trained_model / "model.pt"), "--manifest", str(m), "--report", str(report)])
        == 1
    )
    r = json.loads(report.read_text())
    assert r["num_utterances"] == len(test) + 1 and r["num_broken_lines"] == 1 and r["num_unreadable"] == 1
    assert f"test.jsonl:{len(test) + 1}: not valid JSON" in r["broken_lines"][0]
    assert "empty.wav: file is empty" in r["unreadable"][0]["error"]
