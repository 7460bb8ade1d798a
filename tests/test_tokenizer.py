import pytest

from asr.data.tokenizer import CharTokenizer, OutOfVocabularyError, normalize_text


def test_round_trip():
    tok = CharTokenizer()
    text = "it's a test of the tokenizer"
    ids = tok.encode(text)
    assert 0 not in ids
    assert tok.decode(ids) == text
    assert len(tok) == 29


def test_normalisation():
    assert normalize_text("  Hello,   WORLD!  It’s  well-known.") == "hello world it's well known"


def test_out_of_vocabulary_names_the_characters():
    tok = CharTokenizer()
    with pytest.raises(OutOfVocabularyError, match=r"'3'.*'é'|'é'.*'3'"):
        tok.encode("café 3")
    assert tok.oov_chars("café 3") == ["3", "é"]


def test_serialisation():
    tok = CharTokenizer(" abc")
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.vocab == tok.vocab


# --- word pieces (tokenizer.type: bpe) ---------------------------------------------------------------------------
import torch  # noqa: E402

from asr.data.tokenizer import BPETokenizer, build_tokenizer, tokenizer_from_dict  # noqa: E402
from asr.training.config import ConfigError, TokenizerConfig, load_config  # noqa: E402

TEXTS = [
    "Go back six steps.",
    "put the brown ball next to the white chair",
    "how far is miami from lisbon",
    "navigate to one thousand eighty seven maple street",
    "turn the lights off in the kitchen",
] * 20


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TEXTS, vocab_size=48)


def test_bpe_round_trip_keeps_0_for_the_blank(bpe):
    assert len(bpe) == 49 and bpe.blank_id == 0 and bpe.pieces[0] == "<blank>"
    for text in TEXTS[:5]:
        ids = bpe.encode(text)
        assert 0 not in ids and max(ids) < len(bpe)
        assert bpe.decode(ids) == normalize_text(text)
    ids = bpe.encode("go back")
    assert len(ids) < len("go back")  # pieces, not characters
    assert bpe.decode([0, *ids, 0]) == "go back"  # blanks are ignored


def test_bpe_out_of_vocabulary_names_the_characters(bpe):
    with pytest.raises(OutOfVocabularyError, match="'é'"):
        bpe.encode("the café")
    assert bpe.oov_chars("the café 9") == ["9", "é"]


def test_bpe_word_ids_mark_word_starts(bpe):
    assert bpe.word_separator_id is None and CharTokenizer().word_separator_id == 1
    words = [bpe.word_ids(w) for w in "go back".split()]
    assert sum(words, []) == bpe.encode("go back")
    assert all(bpe.pieces[w[0]].startswith("\u2581") for w in words)
    assert bpe.word_ids("café") == bpe.word_ids("caf")  # what the pieces cannot spell is left out


def test_bpe_model_travels_in_a_weights_only_file(bpe, tmp_path):
    torch.save({"tokenizer": bpe.to_dict()}, tmp_path / "t.pt")
    d = torch.load(tmp_path / "t.pt", weights_only=True)["tokenizer"]
    again = tokenizer_from_dict(d)
    assert isinstance(again, BPETokenizer) and again.pieces == bpe.pieces
    assert len(d["model_proto"]) < 10_000  # no 240 kB normaliser table inside every model file
    assert isinstance(tokenizer_from_dict(CharTokenizer().to_dict()), CharTokenizer)
    with pytest.raises(ValueError, match="unknown tokenizer type 'wordpiece'"):
        tokenizer_from_dict({"type": "wordpiece"})


def test_build_tokenizer_from_config(bpe, tmp_path):
    assert isinstance(build_tokenizer(TokenizerConfig()), CharTokenizer)  # configs without `type` stay char
    (tmp_path / "sp.model").write_bytes(bpe.model_proto)
    given = build_tokenizer(TokenizerConfig(type="bpe", model_file=str(tmp_path / "sp.model")))
    assert given.pieces == bpe.pieces
    trained = build_tokenizer(TokenizerConfig(type="bpe", vocab_size=48), TEXTS)
    assert trained.pieces == bpe.pieces  # the same transcripts give the same pieces (a resumed run relies on it)
    with pytest.raises(ConfigError, match="tokenizer.type must be 'char' or 'bpe'"):
        load_config(None, ["tokenizer.type=wordpiece"])


@pytest.mark.parametrize(
    "setting, texts, message",
    [
        pytest.param(
            {"model_file": "{tmp}/missing.model"},
            [],
            r"tokenizer.model_file .*missing.model: file not found",
            id="model_file-missing",
        ),
        pytest.param(
            {"model_file": "{tmp}/garbage.model"},
            [],
            r"tokenizer.model_file .*garbage.model: not a sentencepiece model",
            id="model_file-unparsable",
        ),
        pytest.param(
            {"vocab_size": 5000},
            TEXTS,
            r"cannot train a 5000-piece sentencepiece model .*Vocabulary size too high",
            id="vocab_size-too-large",
        ),
        pytest.param(
            {"vocab_size": 8}, TEXTS, r"cannot train a 8-piece sentencepiece model", id="vocab_size-too-small"
        ),
        pytest.param({"vocab_size": 48}, ["", " . "], r"no training transcripts", id="no-transcripts"),
    ],
)
def test_bad_bpe_settings_are_one_line_config_errors(tmp_path, setting, texts, message):
    from asr.training.ctc_module import CTCModule

    (tmp_path / "garbage.model").write_bytes(b"not a sentencepiece model at all")
    setting = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in setting.items()}
    config = load_config(None, ["tokenizer.type=bpe", *(f"tokenizer.{k}={v}" for k, v in setting.items())])
    with pytest.raises(ConfigError, match=message) as e:
        CTCModule.from_config(config, train_texts=texts)
    assert "\n" not in str(e.value)


def test_bpe_alphabet_and_vocab_serve_character_checks(bpe):
    """LM tools check words against ``alphabet`` and name labels from ``vocab``, for either tokenizer."""
    assert bpe.alphabet[0] == " " and set(bpe.alphabet[1:]) == set("".join(normalize_text(t) for t in TEXTS)) - {" "}
    assert bpe.vocab == bpe.pieces and " " not in bpe.vocab  # no space label: LM decoding uses the blank there
