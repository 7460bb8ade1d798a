"""LibriSpeech and Speech Commands end to end, offline: archives built here in the exact upstream layout (espeak-ng
speech) are served by a local HTTP server, then downloaded, unpacked, prepared, trained on and evaluated."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_download import serve_directory
from test_manifest import DATA_DIR_KINDS, assert_every_manifest_path_opens, data_dir_as

from asr.cli import main as asr_main
from asr.corpora import librispeech, speech_commands
from asr.data.manifest import read_manifest
from asr.training.config import load_config

SR = 16000
REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model.hidden_size=16",
    "model.num_layers=1",
    "model.conv_channels=4",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
    "data.num_workers=0",
    "data.pin_memory=false",
    "optim.warmup_steps=1",
]

try:
    from asr.corpora.espeak import synthesize

    synthesize("test")
except Exception:  # no espeak-ng: a tone per word keeps the pipeline tests meaningful, if less speech-like

    def synthesize(text: str, voice: str = "en-us+m3", **_: object) -> np.ndarray:
        t = np.arange(int(0.25 * SR * max(1, len(text.split())))) / SR
        return (0.3 * np.sin(2 * np.pi * (150 + 10 * len(voice)) * t)).astype(np.float32)


SENTENCES = [
    "the cat sat on the mat",
    "a quick brown fox",
    "it's a fine day",
    "hello there my friend",
    "we went home early",
    "she sells sea shells",
]
VOICES = ["en-us+m3", "en-us+f3", "en+m1", "en+f2"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _librispeech_archive(work: Path, split: str, speakers: list[tuple[str, str, str]], out: Path) -> None:
    """``<split>.tar.gz`` with members ``LibriSpeech/<split>/<spk>/<chapter>/...`` as OpenSLR ships them."""
    corpus = work / split / "LibriSpeech"
    (corpus / split).mkdir(parents=True)
    (corpus / "README.TXT").write_text("LibriSpeech ASR corpus (test copy)\n")
    for i, (spk, chapter, voice) in enumerate(speakers):
        folder = corpus / split / spk / chapter
        folder.mkdir(parents=True)
        lines = []
        for j in range(3):
            text = SENTENCES[(i + j) % len(SENTENCES)]
            utt = f"{spk}-{chapter}-{j:04d}"
            sf.write(folder / f"{utt}.flac", synthesize(text, voice=voice), SR)
            lines.append(f"{utt} {text.upper()}")
        (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    with tarfile.open(out, "w:gz") as tar:
        tar.add(corpus, arcname="LibriSpeech")


def _speech_commands_archive(work: Path, out: Path) -> dict[str, list[str]]:
    """The v0.02 layout: word folders of 1 s clips, the two list files and ``_background_noise_``."""
    root = work / "sc"
    speakers = {"0a7c2a8d": "en-us+m3", "1b4c9b89": "en-us+f3", "2c5d0e11": "en+m1"}
    words = ["yes", "no", "up", "backward", "marvin"]
    clips: dict[str, list[str]] = {}
    for word in words:
        (root / word).mkdir(parents=True)
        for spk, voice in speakers.items():
            audio = synthesize(word, voice=voice)[:SR]
            rel = f"{word}/{spk}_nohash_0.wav"
            sf.write(root / rel, np.pad(audio, (0, SR - len(audio))), SR, subtype="PCM_16")
            clips.setdefault(spk, []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(clips["1b4c9b89"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(clips["2c5d0e11"]) + "\n")
    (root / "_background_noise_").mkdir()
    rng = np.random.default_rng(0)
    for name in ("white_noise", "running_tap"):
        sf.write(root / "_background_noise_" / f"{name}.wav", 0.1 * rng.standard_normal(12 * SR), SR, subtype="PCM_16")
    (root / "_background_noise_" / "README.md").write_text("noise\n")
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    with tarfile.open(out, "w:gz") as tar:
        tar.add(root, arcname=".")
    return clips


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A local mirror: ``12/<part>.tar.gz`` (OpenSLR layout) and ``speech_commands_v0.02.tar.gz``."""
    work = tmp_path_factory.mktemp("upstream")
    www = work / "www"
    (www / "12").mkdir(parents=True)
    _librispeech_archive(
        work,
        "train-clean-100",
        [("19", "198", VOICES[0]), ("26", "495", VOICES[1])],
        www / "12" / "train-clean-100.tar.gz",
    )
    _librispeech_archive(
        work, "dev-clean", [("84", "121123", VOICES[2]), ("174", "50561", VOICES[3])], www / "12" / "dev-clean.tar.gz"
    )
    clips = _speech_commands_archive(work, www / speech_commands.ARCHIVE)
    with serve_directory(www) as server:
        yield server, clips


@pytest.fixture
def local_md5s(mirror, monkeypatch):
    server, _ = mirror
    for part in ("train-clean-100", "dev-clean"):
        monkeypatch.setitem(librispeech.PARTS, part, _md5(server.root / "12" / f"{part}.tar.gz"))
    monkeypatch.setattr(speech_commands, "MD5", _md5(server.root / speech_commands.ARCHIVE))
    monkeypatch.setenv("ASR_OPENSLR_MIRROR", server.url)
    monkeypatch.setenv(speech_commands.MIRROR_ENV, server.url)
    return server


def test_librispeech_download_prepare_train_evaluate_and_run_sh(local_md5s, tmp_path, monkeypatch, capsys):
    server = local_md5s
    monkeypatch.setenv("ASR_DATA_DIR", str(tmp_path / "data"))
    parts = ["--parts", "train-clean-100", "dev-clean", "--no-progress"]
    assert librispeech.main(["download", *parts]) == 0
    assert librispeech.main(["extract", *parts]) == 0
    assert librispeech.main(["prepare", *parts, "--workers", "4"]) == 0
    out = capsys.readouterr().out
    assert "train-clean-100" in out and "dev-clean" in out

    corpus = tmp_path / "data" / "LibriSpeech"
    dev = read_manifest(corpus / "dev-clean.jsonl")
    assert [u.extra["id"] for u in dev] == sorted(u.extra["id"] for u in dev) and len(dev) == 6
    first = next(u for u in dev if u.extra["id"] == "84-121123-0000")
    assert first.extra == {"id": "84-121123-0000", "speaker": "84", "chapter": "121123"}
    assert first.text == "the cat sat on the mat"
    assert first.duration == pytest.approx(sf.info(first.audio_filepath).duration, abs=1e-3)
    summary = json.loads((corpus / "dev-clean.summary.json").read_text())
    assert summary["utterances"] == 6 and summary["speakers"] == 2
    assert summary["longest"]["seconds"] == max(u.duration for u in dev)
    assert json.loads((corpus / "dev-clean.jsonl").read_text().splitlines()[0])["audio_filepath"].startswith(
        "dev-clean/"
    )

    # A second full run finds everything done: nothing is fetched again.
    requests = len(server.requests)
    assert librispeech.main(["all", *parts]) == 0
    assert len(server.requests) == requests

    cli = pytest.importorskip("asr.cli")
    exp = tmp_path / "exp"
    assert (
        cli.main(
            [
                "train",
                "--config",
                str(REPO / "recipes/librispeech/conf/train_100h.yaml"),
                "--train-manifest",
                str(corpus / "train-clean-100.jsonl"),
                "--val-manifest",
                str(corpus / "dev-clean.jsonl"),
                "--output-dir",
                str(exp),
                "augment.speed_perturb=false",
                *TINY,
            ]
        )
        == 0
    )
    assert (exp / "model.pt").is_file()
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(exp / "model.pt"),
                "--manifest",
                str(corpus / "dev-clean.jsonl"),
                "--report",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_utterances"] == 6
    assert {"wer", "cer", "exact_match"} <= report.keys()

    # The recipe script on the same data and model: stages 2-3 find their work done, stage 4 fills RESULTS.md.
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "| size | dev-clean | dev-other | test-clean | test-other | model |\n|---|---|---|---|---|---|\n"
    )
    # DATA relative, as the default `data` is: run.sh resolves it from the repository root.
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DATA": os.path.relpath(tmp_path / "data", REPO),
        "EXP": str(exp),
        "RESULTS": str(results),
        "PYTHONPATH": str(REPO),
        "EVAL_SETS": "dev-clean",
    }
    run = subprocess.run(
        ["bash", str(REPO / "recipes/librispeech/run.sh"), "--stage", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "manifests exist, skipping" in run.stdout and "model.pt exists, skipping training" in run.stdout

    # A manifest an older release wrote with paths relative to the current folder is not taken as done.
    dev_lines = (corpus / "dev-clean.jsonl").read_text()
    (corpus / "dev-clean.jsonl").write_text(dev_lines.replace('"dev-clean/', f'"{env["DATA"]}/LibriSpeech/dev-clean/'))
    run = subprocess.run(
        ["bash", str(REPO / "recipes/librispeech/run.sh"), "--stage", "2", "--stop-stage", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and "prepare dev-clean" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert (corpus / "dev-clean.jsonl").read_text() == dev_lines
    assert len(read_manifest(corpus / "train-100h.jsonl")) == 6
    last = results.read_text().splitlines()[-1]
    assert last.startswith("| 100h | ") and last.endswith(f"| - | - | - | {exp} |")
    assert f"{100 * report['wer']:.2f}" in last


def test_librispeech_checksum_mismatch_is_reported_and_file_kept(mirror, tmp_path, monkeypatch, capsys):
    server, _ = mirror
    monkeypatch.setenv("ASR_OPENSLR_MIRROR", server.url)
    data = tmp_path / "data"
    assert asr_main(["librispeech", "download", "--parts", "dev-clean", "--data-dir", str(data), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("asr: error: ")
        and "MD5 mismatch" in err
        and librispeech.PARTS["dev-clean"] in err
        and "/12/dev-clean.tar.gz" in err
    )
    assert (data / "downloads" / "dev-clean.tar.gz.bad-md5").is_file()
    assert not (data / "downloads" / "dev-clean.tar.gz").exists()


def test_librispeech_part_names_and_groups():
    assert librispeech.expand_parts(["eval", "dev-clean", "100h"]) == [
        "dev-clean",
        "dev-other",
        "test-clean",
        "test-other",
        "train-clean-100",
    ]
    assert len(librispeech.expand_parts(["all"])) == 7
    with pytest.raises(ValueError, match="unknown LibriSpeech part"):
        librispeech.expand_parts(["train-clean-50"])


@pytest.mark.parametrize("kind", DATA_DIR_KINDS)
def test_prepare_stages_write_manifests_whose_paths_open_with_any_data_folder(mirror, tmp_path, monkeypatch, kind):
    """Both recipes' extract + prepare stages as `asr` runs them, with the data folder relative (the default
    `data`, from a repository root), `../`, a symlink or absolute; then every manifest path opens from `/`."""
    server, _ = mirror
    data = data_dir_as(kind, tmp_path, monkeypatch)
    (Path(data) / "downloads").mkdir(parents=True)
    shutil.copy(server.root / "12" / "dev-clean.tar.gz", Path(data) / "downloads")
    shutil.copy(server.root / speech_commands.ARCHIVE, Path(data) / "downloads")
    for argv in (
        ["librispeech", "extract", "--parts", "dev-clean"],
        ["librispeech", "prepare", "--parts", "dev-clean", "--workers", "2"],
        ["speech-commands", "extract"],
        ["speech-commands", "prepare", "--protocol", "35"],
        ["speech-commands", "prepare", "--protocol", "12"],
    ):
        assert asr_main([*argv, "--data-dir", data]) == 0, argv
    # dev-clean 6; 35 words: 15 clips; 12 classes: 3 x (3 words + 1 unknown + 1 silence); noise 2.
    assert_every_manifest_path_opens(data, expected=6 + 15 + 15 + 2)
    stored = json.loads((Path(data) / "LibriSpeech" / "dev-clean.jsonl").read_text().splitlines()[0])
    assert stored["audio_filepath"].startswith("dev-clean/")


def test_speech_commands_35_words_and_12_classes(local_md5s, tmp_path):
    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--no-progress"]
    assert speech_commands.main(["download", *common]) == 0
    assert speech_commands.main(["extract", *common]) == 0
    assert speech_commands.main(["prepare", *common, "--protocol", "35"]) == 0
    corpus = data / speech_commands.CORPUS_DIR

    def ids(name):
        return {(u.extra["id"], u.text) for u in read_manifest(corpus / name)}

    words = ["yes", "no", "up", "backward", "marvin"]
    assert ids("validation_35words.jsonl") == {(f"{w}/1b4c9b89_nohash_0", w) for w in words}
    assert ids("test_35words.jsonl") == {(f"{w}/2c5d0e11_nohash_0", w) for w in words}
    assert ids("train_35words.jsonl") == {(f"{w}/0a7c2a8d_nohash_0", w) for w in words}
    noise = read_manifest(corpus / "noise.jsonl")
    assert sorted(u.extra["id"] for u in noise) == ["running_tap", "white_noise"]
    assert all(u.duration == pytest.approx(12.0) for u in noise)

    assert speech_commands.main(["prepare", *common, "--protocol", "12"]) == 0
    train = read_manifest(corpus / "train_12class.jsonl")
    texts = sorted(u.text for u in train)
    # 3 core words; 10% of that (rounded up) each for "unknown" (backward or marvin) and silence.
    assert texts == ["", "no", "unknown", "up", "yes"]
    silence = next(u for u in train if u.text == "")
    info = sf.info(silence.audio_filepath)
    assert info.frames == SR and info.samplerate == SR
    unknown = next(u for u in train if u.text == "unknown")
    assert unknown.extra["word"] in ("backward", "marvin")
    assert sorted(u.text for u in read_manifest(corpus / "test_12class.jsonl")) == ["", "no", "unknown", "up", "yes"]


def test_speech_commands_run_sh_prepares_trains_and_fills_results(local_md5s, tmp_path):
    """The recipe script itself, from the downloaded archive to the RESULTS.md row, with a tiny model.

    Stage 0 (download) checks the real published MD5, so the archive is put in place as stage 0 would leave it.
    """
    data, exp, results = tmp_path / "data", tmp_path / "exp", tmp_path / "RESULTS.md"
    (data / "downloads").mkdir(parents=True)
    shutil.copy(local_md5s.root / speech_commands.ARCHIVE, data / "downloads")
    results.write_text(
        "| protocol | model | clips | accuracy % | WER % | CER % |\n|---|---|---|---|---|---|\n"
        "| 12class | - | - | - | - | - |\n"
    )
    # DATA relative, as the default `data` is: run.sh resolves it from the repository root.
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DATA": os.path.relpath(data, REPO),
        "EXP": str(exp),
        "RESULTS": str(results),
        "PYTHONPATH": str(REPO),
    }
    # The 12-class protocol, so that empty (silence) targets go through training and scoring too.
    run = subprocess.run(
        ["bash", str(REPO / "recipes/speech_commands/run.sh"), "--stage", "1", "--protocol", "12", *TINY],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (exp / "model.pt").is_file()
    report = json.loads((exp / "report_test.json").read_text())
    assert report["num_utterances"] == 5
    rows = results.read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith(f"| 12class | {exp} | 5 |")
    assert "test accuracy (exact match)" in run.stdout
    assert_every_manifest_path_opens(data / speech_commands.CORPUS_DIR, expected=15 + 2)


@pytest.mark.parametrize(
    "conf",
    sorted(
        str(p.relative_to(REPO)) for p in [*REPO.glob("recipes/*/conf/*.yaml"), *REPO.glob("recipes/synth/conf*.yaml")]
    ),
)
def test_recipe_configs_load(conf):
    config = load_config(REPO / conf)
    if conf.startswith("recipes/librispeech/"):
        # word pieces are fewer targets per second than characters, so the BPE variant uses a coarser frame rate
        assert config.model.subsampling == (6 if config.tokenizer.type == "bpe" else 4)
        assert config.model.num_layers == 5 and config.model.bidirectional
    assert config.tokenizer.type == ("bpe" if "bpe" in conf else "char")


def test_the_real_speech_streaming_config_takes_every_tensor_of_the_synth_streaming_model():
    """--init-from copies tensors whose names and shapes match: the two configs must build the same network."""
    real = load_config(REPO / "recipes/mini_librispeech/conf/train_streaming.yaml")
    synth = load_config(REPO / "recipes/synth/conf_streaming.yaml")
    shape = {k: v for k, v in vars(real.model).items() if k != "dropout"}  # dropout has no tensor
    assert shape == {k: v for k, v in vars(synth.model).items() if k != "dropout"}
    assert not real.model.bidirectional and real.model.lookahead_frames > 0
    assert real.features == synth.features
    # everything but the network and its features is the bidirectional recipe's: a change there reaches both
    base = load_config(REPO / "recipes/mini_librispeech/conf/train.yaml")
    for section in ("data", "augment", "optim", "trainer", "card"):
        assert getattr(real, section) == getattr(base, section), section


@pytest.mark.parametrize("script", ["recipes/librispeech/run.sh", "recipes/speech_commands/run.sh"])
def test_run_sh_is_valid_bash_and_documents_itself(script):
    assert subprocess.run(["bash", "-n", str(REPO / script)]).returncode == 0
    usage = subprocess.run(["bash", str(REPO / script), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--stage" in usage.stdout
    bad = subprocess.run(["bash", str(REPO / script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2
