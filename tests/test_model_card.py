"""The model card: written by `asr train` (model.pt's metadata and MODEL_CARD.md), updated by `asr evaluate
--update-card`, shown by `asr transcribe` (one stderr line), /healthz and the page; and the low-confidence warning."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_MODEL
from test_server import random_model

from asr.cli import main
from asr.inference.transcribe import Transcriber
from asr.model.card import (
    LOW_CONFIDENCE_RATIO,
    build_card,
    card_of,
    dataset_summary,
    low_confidence_warning,
    render_markdown,
    summary_line,
    with_evaluation,
)
from asr.model.file import load_model, rewrite_metadata

CARD = build_card(
    name="synth-en",
    train=[{"manifest": "train.jsonl", "hours": 1.77, "utterances": 3000, "speakers": 102}],
    validation={"manifest": "dev.jsonl", "hours": 0.12, "utterances": 200, "speakers": 29},
    domain="synthetic espeak commands",
    data_licence="CC0-1.0",
    val_wer=0.0321,
    confidence={"mean": 0.9, "p05": 0.7, "utterances": 200},
    pretrained_from="synth-base",
    version="0.1.0",
    commit="abc1234",
)


def test_the_card_says_what_the_model_was_trained_on_and_how_well_it_did():
    line = summary_line(CARD)
    assert line == (
        "model synth-en: trained on train.jsonl (1.77 h, 3000 utterances, 102 speakers), domain: synthetic espeak "
        "commands; val WER 3.21 % on dev.jsonl; fine-tuned from synth-base; asr 0.1.0 (abc1234)"
    )
    tested = with_evaluation(CARD, "test.jsonl", 0.05, 0.02, 300, "greedy")
    assert "test WER 5.00 % on test.jsonl" in summary_line(tested)
    again = with_evaluation(tested, "test.jsonl", 0.04, 0.01, 300, "greedy")  # the same set and decoder: replaced
    assert [e["wer"] for e in again["evaluations"] if e["set"] == "test.jsonl"] == [0.04]
    md = render_markdown(with_evaluation(again, "test.jsonl", 0.03, 0.01, 300, "beam search with lm.arpa"))
    assert "| train.jsonl | 1.77 h | 3000 | 102 |" in md
    assert "| test.jsonl | test | 4.00 % | 1.00 % | 300 | greedy |" in md
    assert "| test.jsonl | test | 3.00 % | 1.00 % | 300 | beam search with lm.arpa |" in md
    assert "Licence of the data: CC0-1.0" in md and "Fine-tuned from: synth-base" in md


def test_dataset_summary_counts_speakers_only_when_the_manifest_has_them():
    from asr.data.manifest import Utterance

    with_speakers = [Utterance("a.wav", 3600.0, "x", {"speaker": s}) for s in ("a", "b", "a")]
    assert dataset_summary("/data/x/train.jsonl", with_speakers) == {
        "manifest": "train.jsonl",
        "hours": 3.0,
        "utterances": 3,
        "speakers": 2,
    }
    assert dataset_summary("t.jsonl", [Utterance("a.wav", 1.0, "x")])["speakers"] is None


def test_low_confidence_is_flagged_against_the_models_own_validation_average():
    low = [0.3, 0.5, 0.4]
    message = low_confidence_warning(CARD, low)
    assert message.startswith("low confidence (mean word confidence 0.40, against 0.90 on this model's validation")
    assert "this model was trained on train.jsonl (1.77 h" in message
    assert low_confidence_warning(CARD, [0.9 * LOW_CONFIDENCE_RATIO + 0.01] * 3) is None
    assert low_confidence_warning(CARD, [0.1]) is None  # one word is too few to judge by
    assert low_confidence_warning({**CARD, "confidence": None}, low) is None
    assert low_confidence_warning(None, low) is None


def test_transcribe_warns_when_a_file_is_far_less_confident_than_validation(tmp_path):
    path = random_model(tmp_path / "model.pt")
    rewrite_metadata(path, lambda m: {**m, "card": CARD})
    loaded = load_model(path)
    wav = tmp_path / "a.wav"
    # noise that rises and falls like speech (steady noise is no speech to the voice detector: no window, no text)
    envelope = 0.05 + np.abs(np.cos(2 * np.pi * 3 * np.arange(16000) / 16000))
    sf.write(wav, (np.random.default_rng(0).normal(0, 0.1, 16000) * envelope).astype(np.float32), 16000)

    def says_hello(log_probs, lengths):  # a random model's alignment of these words is far from confident
        return ["hello there world"] * len(lengths)

    (t,) = Transcriber(loaded, decoder=says_hello, word_timestamps=False).run([str(wav)])
    assert "low confidence" in t.low_confidence and "trained on train.jsonl" in t.low_confidence
    assert not t.warnings  # the audio was read whole: nothing for evaluate to count as read in part
    assert t.to_dict()["segments"][0]["words"] == []  # aligned for the check, not shown without word times
    sure = {**CARD, "confidence": {"mean": 1e-9}}
    rewrite_metadata(path, lambda m: {**m, "card": sure})
    (t,) = Transcriber(load_model(path), decoder=says_hello).run([str(wav)])
    assert t.low_confidence is None

    # evaluate reports it per utterance but does not count it as audio read in part (make demo exited 1 on that)
    import json

    from asr.evaluation.evaluate import evaluate

    rewrite_metadata(path, lambda m: {**m, "card": CARD})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(wav), "duration": 1.0, "text": "hello there world"}) + "\n")
    result = evaluate(load_model(path), manifest, decoder=says_hello)
    assert result.read_warnings == [] and result.complete
    assert "low confidence" in result.utterances[0]["low_confidence"]


def test_train_writes_the_card_and_transcribe_shows_it(trained_model, tiny_corpus, caplog):
    loaded = load_model(trained_model / "model.pt")
    card = card_of(loaded.metadata)
    assert card["name"] == trained_model.name
    (train,) = card["train_data"]
    assert train["manifest"] == "train.jsonl" and train["utterances"] == 16 and train["speakers"] >= 1
    assert card["validation_data"]["utterances"] == 4
    assert card["evaluations"][0]["split"] == "validation" and card["evaluations"][0]["decoder"] == "greedy"
    assert card["asr_version"] == __import__("asr").__version__ and card["pretrained_from"] is None
    assert (trained_model / "MODEL_CARD.md").read_text().startswith(f"# {trained_model.name}")
    with caplog.at_level("INFO", logger="asr"):
        wav = tiny_corpus["test"].parent / "test"
        assert main(["transcribe", "--model", str(trained_model / "model.pt"), str(wav)]) == 0
    assert f"model {trained_model.name}: trained on train.jsonl (" in caplog.text


def test_domain_licence_and_pretraining_source_reach_the_card(trained_model, tiny_corpus, tmp_path):
    out = tmp_path / "ft"
    args = ["train", "--train-manifest", str(tiny_corpus["train"]), "--val-manifest", str(tiny_corpus["dev"])]
    args += ["--output-dir", str(out), "--max-epochs", "1", "--domain", "synthetic espeak", "--data-licence", "yes"]
    args += ["--init-from", str(trained_model / "model.pt"), *TINY_MODEL, "trainer.max_steps=2"]
    assert main(args) == 0
    card = card_of(load_model(out / "model.pt").metadata)
    assert (card["domain"], card["data_licence"]) == ("synthetic espeak", "yes")  # a string, not YAML's True
    assert card["pretrained_from"] == trained_model.name
    assert "Domain: synthetic espeak" in (out / "MODEL_CARD.md").read_text()


def test_evaluate_update_card_records_the_held_out_figures(trained_model, tiny_corpus, tmp_path, capsys):
    model = tmp_path / "m" / "model.pt"
    model.parent.mkdir()
    shutil.copy(trained_model / "model.pt", model)
    before = torch.load(model, weights_only=True)["state_dict"]
    args = ["evaluate", "--model", str(model), "--manifest", str(tiny_corpus["test"]), "--update-card"]
    assert main(args) == 0
    assert "model card:" in capsys.readouterr().out
    card = card_of(load_model(model).metadata)
    (test,) = [e for e in card["evaluations"] if e["set"] == "test.jsonl"]
    assert test["split"] == "test" and test["utterances"] == 4 and test["decoder"] == "greedy"
    assert 0 <= test["cer"] and test["wer"] >= 0
    after = torch.load(model, weights_only=True)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert "| test.jsonl | test |" in (model.parent / "MODEL_CARD.md").read_text()


def test_update_card_needs_a_model_file_on_disk(tiny_corpus, tmp_path, capsys, monkeypatch, trained_model):
    from asr.errors import UsageError
    from asr.evaluation.evaluate import update_card

    with pytest.raises(UsageError, match="needs a model file on disk"):
        update_card("some-name", tiny_corpus["test"], None, "greedy")


def test_healthz_and_the_page_show_the_card(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from asr.serving.server import Recognizer, create_app

    path = random_model(tmp_path / "model.pt")
    with TestClient(create_app(Recognizer(load_model(path)))) as client:
        h = client.get("/healthz").json()
        assert h["model"]["card"] is None and h["model"]["card_summary"] is None
        assert 'id="card"' in client.get("/").text and "card_summary" in client.get("/app.js").text
    rewrite_metadata(path, lambda m: {**m, "card": CARD})
    with TestClient(create_app(Recognizer(load_model(path)))) as client:
        h = client.get("/healthz").json()
    assert h["model"]["card"]["name"] == "synth-en" and h["model"]["card_summary"] == summary_line(CARD)
