"""`asr evaluate` accounting: what cannot be read counts against the model or fails the command, never flatters."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main
from asr.data.tokenizer import CharTokenizer
from asr.evaluation.evaluate import evaluate, write_report
from asr.evaluation.metrics import NoReferenceError
from asr.model.features import FeatureConfig
from asr.model.file import load_model, save_model
from asr.model.network import ASRModel, ModelDimensions

REF = "hello there world"  # three words, seventeen characters


def always(text):
    """A decoder that hears ``text`` in every utterance, so scores depend only on the accounting."""
    return lambda log_probs, lengths: [text] * log_probs.shape[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(vocab_size=len(tokenizer), hidden_size=8, num_layers=1, conv_channels=2)
    save_model(d / "model.pt", ASRModel(dims, FeatureConfig()), tokenizer)
    rng = np.random.default_rng(0)
    # noise that rises and falls like speech (steady noise is no speech to the detector, and never reaches the
    # decoder: an empty hypothesis)
    envelope = 0.05 + np.abs(np.sin(2 * np.pi * 3 * np.arange(8000) / 16000))
    for i in range(4):
        sf.write(d / f"{i}.wav", 0.1 * rng.standard_normal(8000) * envelope, 16000)
    (d / "empty.wav").write_bytes(b"")
    return d


def manifest(folder, lines, name="m.jsonl"):
    rows = [ln if isinstance(ln, str) else json.dumps(ln) for ln in lines]
    (folder / name).write_text("".join(r + "\n" for r in rows))
    return folder / name


def utt(audio, text=REF, **extra):
    return {"audio_filepath": audio, "duration": 0.5, "text": text, **extra}


def run(corpus, m, *flags, report=None):
    args = ["evaluate", "--model", str(corpus / "model.pt"), "--manifest", str(m), *flags]
    return main(args + (["--report", str(report)] if report else []))


def test_unreadable_audio_counts_as_all_deletions(corpus, tmp_path):
    m = manifest(
        tmp_path, [utt(f"{corpus}/0.wav"), utt("missing.wav"), utt(f"{corpus}/1.wav"), utt(f"{corpus}/empty.wav")]
    )
    result = evaluate(load_model(corpus / "model.pt"), m, decoder=always(REF))
    s = result.summary()
    assert (s["wer"], s["deletions"], s["reference_words"]) == (0.5, 6, 12)
    assert (s["cer"], s["reference_chars"]) == (0.5, 68)
    assert s["exact_match"] == 0.5 and s["num_utterances"] == 4 and s["num_unreadable"] == 2
    assert [u["source"] for u in result.unreadable] == [f"{m}:2", f"{m}:4"]
    assert "missing.wav: file not found" in result.unreadable[0]["error"]
    assert "2 of 4 utterances unreadable, counted as deletions" in result.summary_lines()


def test_every_file_missing_is_100_percent_and_exit_1(corpus, tmp_path, capsys):
    m = manifest(tmp_path, [utt(f"gone{i}.wav") for i in range(4)])
    report = tmp_path / "r.json"
    assert run(corpus, m, report=report) == 1
    out, err = capsys.readouterr()
    assert "WER 100.00 %  (0 sub, 12 del, 0 ins / 12 words)" in out
    assert "4 of 4 utterances unreadable, counted as deletions" in out
    assert "gone3.wav: file not found" in err and "--allow-unreadable" in err
    r = json.loads(report.read_text())
    assert r["wer"] == 1.0 and r["num_unreadable"] == 4 and not r["complete"]
    assert [u["hypothesis"] for u in r["utterances"]] == [None] * 4


def test_one_file_missing_fails_unless_allowed(corpus, tmp_path, capsys):
    m = manifest(tmp_path, [utt(f"{corpus}/{i}.wav") for i in range(3)] + [utt("missing.wav")])
    report = tmp_path / "r.json"
    assert run(corpus, m, report=report) == 1
    assert "1 of 4 utterances unreadable" in capsys.readouterr().out
    assert run(corpus, m, "--allow-unreadable", report=report) == 0
    r = json.loads(report.read_text())
    assert r["num_utterances"] == 4 and r["reference_words"] == 12
    assert r["unreadable"][0]["audio_filepath"] == str(tmp_path / "missing.wav")
    assert r["utterances"][3]["deletions"] == 3
    assert r["substitutions"] + r["deletions"] + r["insertions"] == sum(u["word_errors"] for u in r["utterances"])


def test_broken_lines_are_listed_and_fail_the_command(corpus, tmp_path, capsys):
    m = manifest(tmp_path, [utt(f"{corpus}/0.wav"), "{not json", {"audio_filepath": "x.wav", "text": "no duration"}])
    report = tmp_path / "r.json"
    assert run(corpus, m, "--allow-unreadable", report=report) == 1
    out, err = capsys.readouterr()
    assert "2 broken manifest lines, not scored" in out
    assert f"{m}:2: not valid JSON" in err
    r = json.loads(report.read_text())
    assert r["num_broken_lines"] == 2 and r["num_utterances"] == 1
    assert "m.jsonl:3: missing key(s) duration" in r["broken_lines"][1]


@pytest.mark.parametrize(
    "lines,why",
    [
        ([], "the manifest has no utterance"),
        (["{broken", "[]"], "all 2 lines are broken"),
        ([utt("a.wav", text=""), utt("b.wav", text=" ... ")], "all 2 references are empty"),
    ],
)
def test_nothing_to_score_is_an_error_never_0_percent(corpus, tmp_path, capsys, lines, why):
    m = manifest(tmp_path, lines)
    with pytest.raises(NoReferenceError, match=why):
        evaluate(load_model(corpus / "model.pt"), m)
    report = tmp_path / "r.json"
    assert run(corpus, m, "--allow-unreadable", report=report) == 2
    out, err = capsys.readouterr()
    assert "WER" not in out
    assert f"asr: error: {m}: nothing to score: {why}" in err
    assert not report.exists()


def test_report_is_strict_json_with_extra_fields_and_error_breakdown(corpus, tmp_path):
    m = manifest(
        tmp_path,
        [
            utt(f"{corpus}/0.wav", speaker="s1", id="u0", score=float("nan")),
            utt(f"{corpus}/1.wav", text="hello the world", speaker="s2", gain=float("inf")),
        ],
    )
    result = evaluate(load_model(corpus / "model.pt"), m, decoder=always(REF))
    report = tmp_path / "r.json"
    write_report(result, report, model="m.pt")

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    r = json.loads(report.read_text(), parse_constant=refuse)
    assert r["model"] == "m.pt" and r["complete"] and r["unreadable"] == [] and r["broken_lines"] == []
    assert r["utterances"][0]["extra"] == {"speaker": "s1", "id": "u0", "score": None}
    assert r["utterances"][1]["extra"] == {"speaker": "s2", "gain": None}
    assert r["utterances"][0]["source"] == f"{m}:1"
    assert r["top_substitutions"] == [{"reference": "the", "hypothesis": "there", "count": 1}]
    assert r["top_deletions"] == [] and r["top_insertions"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl", "r.json"]  # no temporary file left


def test_a_failed_report_write_keeps_the_previous_report(corpus, tmp_path, monkeypatch):
    m = manifest(tmp_path, [utt(f"{corpus}/0.wav")])
    result = evaluate(load_model(corpus / "model.pt"), m, decoder=always(REF))
    report = tmp_path / "r.json"
    report.write_text('{"previous": true}\n')

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("asr.evaluation.evaluate.os.replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_report(result, report)
    assert json.loads(report.read_text()) == {"previous": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl", "r.json"]


def test_audio_read_only_in_part_is_counted_listed_and_not_complete(corpus, tmp_path, capsys):
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "full.flac", (0.1 * rng.standard_normal(16000 * 6)).astype(np.float32), 16000)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])  # breaks off near 3 s of 6 s
    m = manifest(tmp_path, [utt(f"{corpus}/0.wav"), utt(str(tmp_path / "cut.flac"))])
    report = tmp_path / "r.json"
    assert run(corpus, m, report=report) == 1  # was 0, with `complete: true`
    out, err = capsys.readouterr()
    assert "1 of 2 utterances read only in part (the audio breaks off), scored on what was read" in out
    assert f"read in part: {m}:2: " in err and "cut.flac: audio breaks off at" in err
    assert "1 audio files were read only in part" in err and "--allow-unreadable" in err
    r = json.loads(report.read_text())
    assert r["num_read_warnings"] == 1 and r["complete"] is False and r["num_unreadable"] == 0
    assert r["read_warnings"][0]["source"] == f"{m}:2" and "breaks off" in r["read_warnings"][0]["warnings"][0]
    assert "breaks off" in r["utterances"][1]["warnings"][0] and "warnings" not in r["utterances"][0]
    page = report.with_suffix(".html").read_text()
    assert "1 read only in part" in page and "Audio read only in part" in page
    assert run(corpus, m, "--allow-unreadable", report=report) == 0
    result = evaluate(load_model(corpus / "model.pt"), m, decoder=always(REF))
    assert not result.complete and result.summary()["num_read_warnings"] == 1


def test_evaluate_gates_like_transcribe_and_vad_none_scores_utterances_whole(corpus, tmp_path):
    """A steady-noise utterance is no speech to the detector: an empty hypothesis (all deletions), as `asr
    transcribe` would give; ``vad="none"`` sends every utterance whole to the decoder, as before gating."""
    sf.write(tmp_path / "steady.wav", 0.1 * np.random.default_rng(5).standard_normal(8000), 16000)
    m = manifest(tmp_path, [utt(str(tmp_path / "steady.wav"))])
    loaded = load_model(corpus / "model.pt")
    gated = evaluate(loaded, m, decoder=always(REF)).summary()
    assert (gated["wer"], gated["deletions"]) == (1.0, 3)
    whole = evaluate(loaded, m, decoder=always(REF), vad="none").summary()
    assert whole["wer"] == 0.0
    assert main(["evaluate", "--model", str(corpus / "model.pt"), "--manifest", str(m), "--vad", "none"]) == 0
