"""The command line end to end (train -> transcribe -> evaluate) on tiny synthesised data, and bad input."""

import json

import numpy as np
import soundfile as sf
import torch
from conftest import TINY_MODEL

from asr.cli import main
from asr.data.manifest import read_manifest
from asr.model.file import FORMAT_VERSION, load_model


def test_train_writes_a_self_contained_model(trained_model):
    path = trained_model / "model.pt"
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert obj["format_version"] == FORMAT_VERSION
    assert obj["tokenizer"]["alphabet"].startswith(" abc")
    assert obj["features"]["n_mels"] == 80 and obj["model"]["hidden_size"] == 24
    assert any(k.startswith("features.mel_fb") for k in obj["state_dict"])
    assert (trained_model / "checkpoints" / "last.ckpt").exists()
    assert (trained_model / "config.yaml").exists()
    assert (trained_model / "logs" / "csv" / "metrics.csv").exists()
    loaded = load_model(path)
    assert loaded.metadata["epochs"] >= 1


def test_transcribe_text_and_json(trained_model, tiny_corpus, tmp_path, capsys):
    utts = read_manifest(tiny_corpus["test"])
    # the same audio as stereo 44.1 kHz flac: any rate and channel count is accepted
    audio, sr = sf.read(utts[0].audio_filepath)
    import soxr

    stereo = np.stack([soxr.resample(audio, sr, 44100)] * 2, axis=1)
    odd = tmp_path / "odd.flac"
    sf.write(odd, stereo, 44100)
    files = [u.audio_filepath for u in utts] + [str(odd)]
    assert main(["transcribe", "--model", str(trained_model / "model.pt"), *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == files
    assert main(["transcribe", "--model", str(trained_model / "model.pt"), "--format", "json", *files]) == 0
    objs = [json.loads(ln) for ln in capsys.readouterr().out.strip().splitlines()]
    assert [o["path"] for o in objs] == files
    assert abs(objs[-1]["duration"] - objs[0]["duration"]) < 0.01
    # resampled stereo gives nearly the same frames, so (usually) the same text as the original
    assert all(isinstance(o["text"], str) for o in objs)


def test_evaluate_report(trained_model, tiny_corpus, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained_model / "model.pt"),
                "--manifest",
                str(tiny_corpus["test"]),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "WER" in out and "CER" in out and "utterances 4" in out
    r = json.loads(report.read_text())
    assert 0 <= r["cer"] and r["wer"] >= 0 and r["num_utterances"] == 4
    u = r["utterances"][0]
    assert {"reference", "hypothesis", "word_errors", "char_errors"} <= set(u)
    assert r["substitutions"] + r["deletions"] + r["insertions"] == sum(x["word_errors"] for x in r["utterances"])


def test_resume_continues_training(tiny_corpus, tmp_path):
    args = [
        "train",
        "--train-manifest",
        str(tiny_corpus["train"]),
        "--val-manifest",
        str(tiny_corpus["dev"]),
        "--output-dir",
        str(tmp_path),
        *TINY_MODEL,
    ]
    assert main([*args[:7], "--max-epochs", "1", *args[7:]]) == 0
    assert main([*args[:7], "--max-epochs", "2", "--resume", *args[7:]]) == 0
    assert load_model(tmp_path / "model.pt").metadata["epochs"] == 2


def test_train_help_says_what_max_minutes_means_across_resumes(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "TOTAL training-time budget in minutes, summed over resumes" in text
    assert "written at every epoch end and whenever training stops" in text


def test_a_cuda_device_that_is_not_there_is_one_line(trained_model, tiny_corpus, monkeypatch, capsys):
    """Was 27 lines of traceback from inside torch on a CPU-only build."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    wav = read_manifest(tiny_corpus["test"])[0].audio_filepath
    model = str(trained_model / "model.pt")
    for command in (
        ["transcribe", "--model", model, wav],
        ["evaluate", "--model", model, "--manifest", str(tiny_corpus["test"])],
    ):
        for name in ("cuda", "cuda:1"):
            assert main([command[0], "--device", name, *command[1:]]) == 2
            err = capsys.readouterr().err.strip()
            assert (
                err == f"asr: error: --device {name}: CUDA is not available (this torch is built without CUDA); "
                "use --device cpu, or auto"
            )
    assert main(["transcribe", "--model", model, "--device", "tpu9", wav]) == 2
    assert "--device tpu9: not a device" in capsys.readouterr().err
    assert main(["transcribe", "--model", model, "--device", "auto", wav]) == 0  # auto: the CPU
