import pytest

from asr.tokenizer import CharTokenizer, OutOfVocabularyError, normalize_text


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
