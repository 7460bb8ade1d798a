"""One flag vocabulary across the commands: -o, -q anywhere, defaults in every --help, --print-config, and
reports that say how they were made."""

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asr.cli import DELEGATED, build_parser, main
from asr.help_format import shows_default

ROOT = Path(__file__).resolve().parent.parent


def walk(parser: argparse.ArgumentParser, name: str):
    """``parser`` and every sub-parser under it, with the command line that reaches each."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from walk(sub, f"{name} {sub_name}")


def delegated_parsers(monkeypatch):
    """The parsers the delegated commands (asr synth, manifest, lm, ...) build, caught at their --help."""
    seen = []
    original = argparse.ArgumentParser.print_help

    def record(self, file=None):
        seen.append(self)
        return original(self, open(os.devnull, "w"))

    monkeypatch.setattr(argparse.ArgumentParser, "print_help", record)
    for name in DELEGATED:
        seen.clear()
        try:
            main([name, "--help"])
        except SystemExit:
            pass
        if seen:
            yield from walk(seen[0], f"asr {name}")


def test_every_option_of_every_command_shows_its_default(monkeypatch):
    parsers = [*walk(build_parser(), "asr"), *delegated_parsers(monkeypatch)]
    names = {n for n, _ in parsers}
    assert {"asr train", "asr transcribe", "asr lm build", "asr lm tune", "asr synth", "asr manifest"} <= names
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest} (default {a.default!r})"
        for name, parser in parsers
        for a in parser._actions
        if not shows_default(parser, a)
    ]
    assert missing == []


def test_transcribe_help_shows_the_defaults_the_issue_named(capsys):
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: text)", "(default: energy)", "(default: 20.0)", "(default: auto)", "(default: 300.0)"):
        assert shown in text


def test_train_and_evaluate_options_have_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "training utterances: JSON lines" in text and "held-out utterances" in text
    assert "-o DIR, --output-dir DIR folder for model.pt" in text
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "utterances to score" in " ".join(capsys.readouterr().out.split())


def test_output_flags_are_one_vocabulary():
    p = build_parser()
    assert p.parse_args(["train", "-o", "exp/x", "--train-manifest", "t", "--val-manifest", "v"]).output_dir == "exp/x"
    assert p.parse_args(["transcribe", "--model", "m", "-o", "out", "a.wav"]).output_dir == "out"
    assert p.parse_args(["export", "--model", "m", "-o", "m.onnx"]).output == "m.onnx"
    from asr.cli import lm

    assert lm.build_parser().parse_args(["build", "t.txt", "-o", "lm.arpa"]).output == "lm.arpa"
    tune = lm.build_parser().parse_args(["tune", "--model", "m", "--manifest", "d", "--lm", "l", "-o", "p.json"])
    assert tune.output == "p.json" and tune.device == "auto"  # like every other command's --device
    from asr.corpora.corpus_check import build_parser as manifest_parser

    assert manifest_parser().parse_args(["dir", "-o", "m.jsonl"]).output == "m.jsonl"


def test_synth_takes_output_dir_and_still_the_old_out(tmp_path, capsys):
    pytest.importorskip("espeakng_loader")
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    help_text = capsys.readouterr().out
    assert "-o DIR, --output-dir DIR" in help_text and "--out " not in help_text  # the old spelling is hidden
    sizes = ["--train", "1", "--dev", "1", "--test", "1", "--jobs", "1"]
    assert main(["synth", "-o", str(tmp_path / "a"), *sizes]) == 0
    assert main(["synth", "--out", str(tmp_path / "b"), *sizes]) == 0  # recipes and scripts of before still run
    assert (tmp_path / "a" / "train.jsonl").exists() and (tmp_path / "b" / "train.jsonl").exists()
    with pytest.raises(SystemExit) as e:
        main(["synth", *sizes])
    assert e.value.code == 2 and "-o/--output-dir" in capsys.readouterr().err


def run_asr(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "asr", *args], capture_output=True, text=True, env=env, timeout=300)


def test_quiet_works_after_the_subcommand(trained_model, tiny_corpus):
    from asr.data.manifest import read_manifest

    files = [u.audio_filepath for u in read_manifest(tiny_corpus["test"])][:2]
    model = str(trained_model / "model.pt")
    loud = run_asr("transcribe", "--model", model, *files)
    assert loud.returncode == 0 and "transcribed 2 of 2 files" in loud.stderr
    for argv in (("-q", "transcribe", "--model", model, *files), ("transcribe", "--model", model, "-q", *files)):
        quiet = run_asr(*argv)
        assert quiet.returncode == 0 and "transcribed" not in quiet.stderr and quiet.stdout == loud.stdout


def test_quiet_after_a_delegated_command_is_taken_too(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("one two three\ntwo three four\n")
    assert main(["lm", "build", str(text), "-o", str(tmp_path / "lm.arpa"), "-q"]) == 0
    assert (tmp_path / "lm.arpa").exists()


def test_print_config_prints_the_merged_yaml_and_trains_nothing(tmp_path, capsys):
    conf = ROOT / "recipes" / "synth" / "conf.yaml"
    argv = [
        "train",
        "--config",
        str(conf),
        "--print-config",
        "--max-epochs",
        "3",
        "model.hidden_size=24",
        "optim.lr=0.01",
    ]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["hidden_size"] == 24 and printed["optim"]["lr"] == 0.01
    assert printed["trainer"]["max_epochs"] == 3  # the flags are merged in too: what the run would use
    assert set(printed) >= {"features", "model", "tokenizer", "data", "augment", "optim", "trainer"}
    assert main(["train", "--print-config", "model.hidden_sise=3"]) == 2  # a typo is the config's usual error
    assert "hidden_size" in capsys.readouterr().err


def test_train_without_its_manifests_names_them(capsys):
    assert main(["train", "-o", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "--train-manifest, --val-manifest" in err and "--print-config" in err


def test_reports_record_the_model_file_and_the_decoding(trained_model, tiny_corpus, tmp_path, capsys):
    model = trained_model / "model.pt"
    report = tmp_path / "r.json"
    argv = ["evaluate", "--model", str(model), "--manifest", str(tiny_corpus["test"]), "--report", str(report)]
    assert main(argv) == 0
    r = json.loads(report.read_text())
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert r["model"] == str(model.resolve()) and r["model_sha256"] == digest
    assert r["manifest"] == str(Path(tiny_corpus["test"]).resolve()) and r["decoding"] == {"name": "greedy"}
    page = (tmp_path / "r.html").read_text()
    assert digest in page and "decoding greedy" in page

    pytest.importorskip("flashlight.lib.text")
    lm = tmp_path / "lm.arpa"
    assert main(["lm", "build", str(tiny_corpus["train"]), "-o", str(lm), "--order", "2"]) == 0
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"lm_weight": 0.7, "word_score": 0.5}))
    capsys.readouterr()
    assert main([*argv, "--lm", str(lm), "--lm-params", str(params), "--beam-size", "8"]) == 0
    d = json.loads(report.read_text())["decoding"]
    assert d["name"] == "beam-search" and d["mode"] == "lexicon" and d["lm"] == str(lm.resolve())
    assert (d["lm_weight"], d["word_score"], d["beam_size"]) == (0.7, 0.5, 8)
    assert d["lm_params"] == str(params.resolve())
    page = (tmp_path / "r.html").read_text()
    assert str(lm.resolve()) in page and "lm_weight 0.7" in page
