"""Mini LibriSpeech (OpenSLR 31) end to end, offline: train-clean-5 and dev-clean-2 archives built here in the
upstream layout (``LibriSpeech/SPEAKERS.TXT`` + ``LibriSpeech/<part>/<spk>/<chapter>/``) are served by a local
HTTP server as ``31/<part>.tar.gz``; recipes/mini_librispeech/run.sh downloads, unpacks, prepares, holds
speakers out, trains, evaluates and decodes with an n-gram LM; the same from an unpacked copy with --local."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import soundfile as sf
from test_download import serve_directory
from test_recipes import SENTENCES, SR, TINY, synthesize

from asr.cli import main as asr_main
from asr.corpora import librispeech
from asr.data.manifest import read_manifest
from asr.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "recipes/mini_librispeech/run.sh"
# (speaker, sex, chapter, voice): six readers in train-clean-5, four in dev-clean-2, as in SPEAKERS.TXT.
TRAIN_SPEAKERS = [
    ("19", "F", "198", "en-us+f3"),
    ("32", "F", "21631", "en+f2"),
    ("118", "M", "47824", "en-us+m3"),
    ("163", "M", "121908", "en+m1"),
    ("226", "F", "122538", "en-us+f4"),
    ("332", "M", "128985", "en+m4"),
]
DEV_SPEAKERS = [
    ("84", "F", "121123", "en+f3"),
    ("174", "M", "50561", "en+m2"),
    ("251", "M", "136532", "en-us+m5"),
    ("422", "F", "122949", "en+f4"),
]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _mini_archive(work: Path, part: str, speakers: list[tuple[str, str, str, str]], out: Path) -> None:
    """``<part>.tar.gz`` as OpenSLR 31 ships it: ``LibriSpeech/{README,SPEAKERS,...}.TXT`` and the part folder."""
    corpus = work / part / "LibriSpeech"
    (corpus / part).mkdir(parents=True)
    for name in ("README.TXT", "LICENSE.TXT", "CHAPTERS.TXT"):
        (corpus / name).write_text(f"{name} (test copy)\n")
    table = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    table += [f"{spk:<5}| {sex} | {part:<16} | 25.00 | Reader {spk}" for spk, sex, _, _ in speakers]
    (corpus / "SPEAKERS.TXT").write_text("\n".join(table) + "\n")
    for i, (spk, _, chapter, voice) in enumerate(speakers):
        folder = corpus / part / spk / chapter
        folder.mkdir(parents=True)
        lines = []
        for j in range(2):
            text = SENTENCES[(i + j) % len(SENTENCES)]
            utt = f"{spk}-{chapter}-{j:04d}"
            sf.write(folder / f"{utt}.flac", synthesize(text, voice=voice), SR)
            lines.append(f"{utt} {text.upper()}")
        (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    with tarfile.open(out, "w:gz") as tar:
        tar.add(corpus, arcname="LibriSpeech")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """``31/train-clean-5.tar.gz`` and ``31/dev-clean-2.tar.gz`` on 127.0.0.1, with their MD5 sums."""
    work = tmp_path_factory.mktemp("openslr31")
    www = work / "www"
    (www / "31").mkdir(parents=True)
    _mini_archive(work, "train-clean-5", TRAIN_SPEAKERS, www / "31" / "train-clean-5.tar.gz")
    _mini_archive(work, "dev-clean-2", DEV_SPEAKERS, www / "31" / "dev-clean-2.tar.gz")
    with serve_directory(www) as server:
        yield server, {p: _md5(www / "31" / f"{p}.tar.gz") for p in ("train-clean-5", "dev-clean-2")}


def _env(tmp_path: Path, server, md5s: dict[str, str], **extra: str) -> dict[str, str]:
    """run.sh's environment: the local mirror, and the test archives' sums in place of the published ones.

    run.sh starts its own Python processes, which monkeypatch cannot reach; a ``sitecustomize`` first on their
    path swaps the two sums in as they start, so stage 0 runs the real download code against the real check.
    """
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(
        "import json, os\nfrom asr.corpora import librispeech\n"
        "librispeech.PARTS.update(json.loads(os.environ['ASR_TEST_PART_MD5S']))\n"
    )
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": f"{hook}{os.pathsep}{REPO}",
        "ASR_TEST_PART_MD5S": json.dumps(md5s),
        "ASR_OPENSLR_MIRROR": server.url,
        **extra,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN), *args], env=env, capture_output=True, text=True, timeout=600)


def _speakers(manifest: Path) -> set[str]:
    return {u.extra["speaker"] for u in read_manifest(manifest)}


def test_run_sh_downloads_prepares_trains_evaluates_and_decodes_with_the_lm(mirror, tmp_path):
    server, md5s = mirror
    data, exp, results = tmp_path / "data", tmp_path / "exp", tmp_path / "RESULTS.md"
    results.write_text("| date | commit | init | train h | steps | minutes | greedy | LM | utts | exp |\n|---|\n")
    env = _env(
        tmp_path, server, md5s, DATA=str(data), EXP=str(exp), RESULTS=str(results),
        LM_WEIGHTS="0.5:1:0.5", WORD_SCORES="0:0:1",
    )  # fmt: skip
    run = _run([*TINY, "trainer.max_minutes=2"], env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    for part in ("train-clean-5", "dev-clean-2"):
        assert (data / "downloads" / f"{part}.tar.gz").is_file()
        assert (f"31/{part}.tar.gz", None) in server.requests
    corpus = data / "LibriSpeech"
    assert len(read_manifest(corpus / "train-clean-5.jsonl")) == 12
    # dev-clean-2's four readers: two to tune on, two to score on, none in both, none from training.
    dev, test = _speakers(corpus / "dev-clean-2.dev.jsonl"), _speakers(corpus / "dev-clean-2.test.jsonl")
    assert len(dev) == len(test) == 2 and dev | test == {s for s, *_ in DEV_SPEAKERS}
    assert not (corpus / "dev-clean-2.train.jsonl").exists()
    split = json.loads((corpus / "dev-clean-2.split.json").read_text())
    assert sorted(split["dev"]["genders"]) == sorted(split["test"]["genders"]) == ["F", "M"]

    assert (exp / "model.pt").is_file()
    greedy = json.loads((exp / "report_test.json").read_text())
    with_lm = json.loads((exp / "lm" / "report_test.json").read_text())
    assert greedy["num_utterances"] == with_lm["num_utterances"] == 4
    assert (exp / "lm" / "char6.arpa").is_file() and (exp / "lm" / "params.json").is_file()
    assert "with the character 6-gram LM" in run.stdout
    row = results.read_text().splitlines()[-1]
    assert row.startswith("| ") and row.endswith(f"| 4 | {exp} |") and "| scratch |" in row
    assert f"{100 * greedy['wer']:.2f} / {100 * greedy['cer']:.2f}" in row

    # Run again: every stage finds its work done, nothing is fetched again, the row is replaced, not added.
    requests = len(server.requests)
    again = _run([], env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert len(server.requests) == requests
    assert "model.pt exists, skipping training" in again.stdout and "is up to date" in again.stdout
    assert results.read_text().splitlines()[-1] == row and len(results.read_text().splitlines()) == 3


def test_local_copy_with_split_holds_out_train_clean_5_speakers_and_downloads_nothing(mirror, tmp_path):
    server, md5s = mirror
    local = tmp_path / "copy"
    with tarfile.open(server.root / "31" / "train-clean-5.tar.gz") as tar:
        tar.extractall(local, filter="data")
    data = tmp_path / "data"
    env = _env(tmp_path, server, md5s, DATA=str(data), DEV_SPEAKERS="1", TEST_SPEAKERS="2", EXP=str(tmp_path / "e"))
    requests = len(server.requests)

    # Without --split the recipe wants dev-clean-2, which this copy lacks: one line saying what to do.
    run = _run(["--local", str(local / "LibriSpeech"), "--stop-stage", "2"], env)
    assert run.returncode == 2 and "no dev-clean-2 folder" in run.stderr and "--split" in run.stderr

    run = _run(["--local", str(local / "LibriSpeech"), "--split", "--stop-stage", "2"], env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(server.requests) == requests and not (data / "downloads").exists()
    corpus = data / "LibriSpeech"
    sets = {n: _speakers(corpus / f"train-clean-5.{n}.jsonl") for n in ("train", "dev", "test")}
    assert [len(sets[n]) for n in ("train", "dev", "test")] == [3, 1, 2]
    assert sets["train"] | sets["dev"] | sets["test"] == {s for s, *_ in TRAIN_SPEAKERS}
    assert not sets["train"] & (sets["dev"] | sets["test"]) and not sets["dev"] & sets["test"]
    # The audio is read where it lies: absolute paths into the copy, not copied into DATA.
    first = read_manifest(corpus / "train-clean-5.test.jsonl")[0]
    assert Path(first.audio_filepath).is_relative_to(local) and sf.info(first.audio_filepath).samplerate == SR
    assert "test " in run.stdout and "(M)" in run.stdout and "(F)" in run.stdout


def test_download_of_a_mini_part_checks_its_md5_and_resumes(mirror, tmp_path, monkeypatch, capsys):
    server, md5s = mirror
    monkeypatch.setenv("ASR_OPENSLR_MIRROR", server.url)
    data = tmp_path / "data"
    args = ["librispeech", "download", "--parts", "dev-clean-2", "--data-dir", str(data), "--no-progress"]
    # The published sum does not match the test archive: the download is kept aside and named, exit 2.
    assert asr_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("asr: error: ") and librispeech.PARTS["dev-clean-2"] in err and "31/dev-clean-2" in err
    assert (data / "downloads" / "dev-clean-2.tar.gz.bad-md5").is_file()

    # With the archive's own sum, a connection that drops half-way is resumed with a Range request.
    monkeypatch.setitem(librispeech.PARTS, "dev-clean-2", md5s["dev-clean-2"])
    size = (server.root / "31" / "dev-clean-2.tar.gz").stat().st_size
    server.cut_after["31/dev-clean-2.tar.gz"] = size // 2
    before = len(server.requests)
    assert asr_main(args) == 0
    assert server.requests[before:] == [
        ("31/dev-clean-2.tar.gz", None),
        ("31/dev-clean-2.tar.gz", f"bytes={size // 2}-"),
    ]
    assert _md5(data / "downloads" / "dev-clean-2.tar.gz") == md5s["dev-clean-2"]


def test_mini_parts_and_groups():
    assert librispeech.expand_parts(["mini"]) == ["train-clean-5", "dev-clean-2"]
    assert len(librispeech.expand_parts(["all"])) == 7 and "train-clean-5" not in librispeech.expand_parts(["all"])
    assert librispeech.PART_RESOURCES["train-clean-5"] == 31 and all(len(m) == 32 for m in librispeech.PARTS.values())


def _manifest(tmp_path: Path, speakers: list[str]) -> Path:
    from asr.data.manifest import Utterance, write_manifest

    audio = tmp_path / "a.wav"
    sf.write(audio, synthesize("hello"), SR)
    utts = [Utterance(str(audio), 1.0, "hello", {"id": f"{s}-1-{j}", "speaker": s}) for s in speakers for j in range(2)]
    path = tmp_path / "m.jsonl"
    write_manifest(path, utts)
    return path


def test_split_by_speaker_is_seeded_gender_balanced_and_disjoint(tmp_path):
    speakers = [str(s) for s in range(10, 30)]
    genders = {s: "F" if int(s) % 3 else "M" for s in speakers}
    a = librispeech.choose_speakers(speakers, 2, 4, seed=0, genders=genders)
    assert a == librispeech.choose_speakers(reversed(speakers), 2, 4, seed=0, genders=genders)
    assert a != librispeech.choose_speakers(speakers, 2, 4, seed=1, genders=genders)
    assert [len(a[n]) for n in ("train", "dev", "test")] == [14, 2, 4]
    assert sorted(genders[s] for s in a["dev"]) == ["F", "M"]
    assert sorted(genders[s] for s in a["test"]) == ["F", "F", "M", "M"]
    assert sorted(a["train"] + a["dev"] + a["test"], key=int) == speakers

    m = _manifest(tmp_path, ["1", "2", "3", "4"])
    written = librispeech.split_by_speaker(m, "25%", "1")
    assert sorted(written) == ["dev", "test", "train"]
    assert [len(_speakers(written[n])) for n in ("train", "dev", "test")] == [2, 1, 1]
    assert len(read_manifest(written["train"])) == 4
    written = librispeech.split_by_speaker(m, 2, "rest")
    assert sorted(written) == ["dev", "test"] and not librispeech.split_path(m, "train").exists()


@pytest.mark.parametrize(
    "dev, test, message",
    [
        ("3", "2", "cannot give 3 dev and 2 test speakers"),
        ("2", "2", "leave some to train on"),
        ("two", "1", "--dev-speakers must be a number of speakers"),
        ("1", "-1", "--test-speakers must be 0 or more"),
        ("rest", "1", "--dev-speakers cannot be 'rest'"),
    ],
)
def test_split_refuses_counts_that_cannot_be_met(tmp_path, capsys, dev, test, message):
    m = _manifest(tmp_path, ["1", "2", "3", "4"])
    assert asr_main(["librispeech", "split", "--manifest", str(m), "--dev-speakers", dev, "--test-speakers", test]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asr: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_split_and_prepare_name_what_is_missing(tmp_path, capsys):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"audio_filepath": "x.flac", "duration": 1.0, "text": "a"}) + "\n")
    assert asr_main(["librispeech", "split", "--manifest", str(m)]) == 2
    assert f"{m}:1: no speaker field" in capsys.readouterr().err
    assert asr_main(["librispeech", "split", "--manifest", str(tmp_path / "none.jsonl")]) == 2
    assert "no such manifest" in capsys.readouterr().err
    args = ["librispeech", "prepare", "--parts", "train-clean-5", "--data-dir", str(tmp_path)]
    assert asr_main([*args, "--source", str(tmp_path / "nowhere")]) == 2
    assert "--source" in capsys.readouterr().err
    (tmp_path / "LS" / "dev-clean-2").mkdir(parents=True)
    assert asr_main([*args, "--source", str(tmp_path / "LS")]) == 2
    err = capsys.readouterr().err
    assert "train-clean-5: not found in --source" in err and "it has: dev-clean-2" in err


def test_run_sh_is_valid_bash_and_documents_itself():
    assert subprocess.run(["bash", "-n", str(RUN)]).returncode == 0
    usage = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--stage" in usage.stdout and "--local" in usage.stdout
    assert subprocess.run(["bash", str(RUN), "--bogus"], capture_output=True, text=True).returncode == 2


@pytest.mark.parametrize("conf", sorted(p.name for p in (REPO / "recipes/mini_librispeech/conf").glob("*.yaml")))
def test_configs_bound_batches_in_seconds_and_utterances(conf):
    config = load_config(REPO / "recipes/mini_librispeech/conf" / conf)
    assert config.data.max_batch_size and isinstance(config.data.max_batch_seconds, float)
    # LibriSpeech utterances run to ~17 s: a batch must still hold several of the longest ones.
    assert config.data.max_batch_seconds / 17.5 >= 0.75 * config.data.max_batch_size
    assert config.augment.spec_augment and config.trainer.max_minutes
