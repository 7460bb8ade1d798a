"""Word pieces end to end: `asr train` learns a sentencepiece model from the transcripts, stores it in model.pt,
and evaluation, transcription and word alignment use it; an old character model file still loads."""

import json

import torch
from conftest import TINY_MODEL

from asr.cli import main
from asr.data.manifest import read_manifest
from asr.data.tokenizer import BPETokenizer, CharTokenizer
from asr.decoding.alignment import align_words
from asr.model.file import load_model


def test_bpe_train_evaluate_transcribe_align(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "exp"
    rc = main(
        [
            "train",
            "--train-manifest",
            str(tiny_corpus["train"]),
            "--val-manifest",
            str(tiny_corpus["dev"]),
            "--output-dir",
            str(out),
            "--max-epochs",
            "1",
            *TINY_MODEL,
            "tokenizer.type=bpe",
            "tokenizer.vocab_size=40",
            "model.subsampling=6",
        ]
    )
    assert rc == 0
    obj = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert obj["tokenizer"]["type"] == "bpe" and isinstance(obj["tokenizer"]["model_proto"], bytes)
    assert obj["model"]["vocab_size"] == 41 and obj["model"]["subsampling"] == 6
    loaded = load_model(out / "model.pt")
    assert isinstance(loaded.tokenizer, BPETokenizer) and len(loaded.tokenizer) == 41
    # the same pieces as the sentencepiece model written beside it for LM and lexicon tools
    assert BPETokenizer.from_file(out / "tokenizer.model").pieces == loaded.tokenizer.pieces
    assert loaded.frame_seconds == 0.06

    report = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(out / "model.pt"),
                "--manifest",
                str(tiny_corpus["test"]),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    assert json.loads(report.read_text())["num_utterances"] == 4
    utt = read_manifest(tiny_corpus["test"])[0]
    capsys.readouterr()
    assert main(["transcribe", "--model", str(out / "model.pt"), utt.audio_filepath]) == 0
    assert capsys.readouterr().out.startswith(utt.audio_filepath + "\t")

    # forced alignment of the reference with the word pieces: every word, in order, within the audio
    import soundfile as sf

    audio, _ = sf.read(utt.audio_filepath, dtype="float32")
    with torch.no_grad():
        lp, n = loaded.model(torch.from_numpy(audio)[None], torch.tensor([len(audio)]))
    words = align_words(lp[0, : n.item()], utt.text, loaded.tokenizer, loaded.frame_seconds)
    assert [w.word for w in words] == utt.text.split()
    assert all(a.end <= b.start for a, b in zip(words, words[1:])) and words[-1].end <= utt.duration + 0.06


def test_char_model_files_load_as_before(trained_model):
    """A model.pt written before word pieces existed (tokenizer {"type": "char", "alphabet": ...}) loads as char."""
    obj = torch.load(trained_model / "model.pt", map_location="cpu", weights_only=True)
    assert obj["tokenizer"] == {"type": "char", "alphabet": CharTokenizer().alphabet}
    assert isinstance(load_model(trained_model / "model.pt").tokenizer, CharTokenizer)


def test_damaged_word_piece_model_in_a_model_file(tmp_path):
    import pytest

    from asr.model.features import FeatureConfig
    from asr.model.file import ModelFileError, save_model
    from asr.model.network import ASRModel, ModelDimensions

    tok = BPETokenizer.train(["go back six steps", "put the ball back"] * 5, vocab_size=20)
    model = ASRModel(
        ModelDimensions(vocab_size=len(tok), hidden_size=8, num_layers=1, conv_channels=2, subsampling=8),
        FeatureConfig(),
    )
    save_model(tmp_path / "ok.pt", model, tok)
    assert load_model(tmp_path / "ok.pt").tokenizer.pieces == tok.pieces
    obj = torch.load(tmp_path / "ok.pt", weights_only=True)
    obj["tokenizer"]["model_proto"] = obj["tokenizer"]["model_proto"][:40]
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"bad.pt: model file is damaged .*not a sentencepiece model"):
        load_model(tmp_path / "bad.pt")
