"""The general-English text of the synthetic corpus (asr/corpora/sentences.py) and `asr synth --text general`."""

import json

import numpy as np
import pytest

from asr.corpora import synthetic
from asr.corpora.numbers import number_to_words, ordinal_words, year_words
from asr.corpora.sentences import general_sentence, plural, vocabulary
from asr.data.tokenizer import CharTokenizer, normalize_text


def test_numbers_are_said_as_people_say_them():
    assert [year_words(y) for y in (1864, 1905, 1900, 2000, 2004, 2012)] == [
        "eighteen sixty four",
        "nineteen oh five",
        "nineteen hundred",
        "two thousand",
        "two thousand and four",
        "twenty twelve",
    ]
    assert [ordinal_words(d) for d in (1, 3, 12, 20, 21, 30, 31)] == [
        "first",
        "third",
        "twelfth",
        "twentieth",
        "twenty first",
        "thirtieth",
        "thirty first",
    ]
    assert number_to_words(4012) == "four thousand twelve"
    for bad, f in ((0, ordinal_words), (32, ordinal_words), (999, year_words), (2100, year_words)):
        with pytest.raises(ValueError, match="out of range"):
            f(bad)


def test_plurals():
    assert [plural(n) for n in ("box", "lady", "boy", "man", "knife", "church", "sheep")] == [
        "boxes",
        "ladies",
        "boys",
        "men",
        "knives",
        "churches",
        "sheep",
    ]


def test_general_sentences_are_normalised_varied_and_in_vocabulary():
    tok, vocab = CharTokenizer(), vocabulary()
    rng = np.random.default_rng(123)  # not the seed vocabulary() samples with
    texts = [general_sentence(rng) for _ in range(3000)]
    for text in texts:
        assert text and normalize_text(text) == text
        tok.encode(text)
        assert set(text.split()) <= vocab, set(text.split()) - vocab
    # Open-ended: almost no sentence repeats, and the words used are many times the command grammar's.
    assert len(set(texts)) > 0.97 * len(texts)
    used = {w for t in texts for w in t.split()}
    assert len(used) > 3 * len(synthetic.vocabulary())
    assert len(vocab) >= 1500
    # Lengths like read speech: short replies to run-on sentences.
    lengths = np.array([len(t.split()) for t in texts])
    assert lengths.min() <= 4 and lengths.max() >= 30 and 8 <= lengths.mean() <= 20


def test_articles_agree_with_the_word_that_follows():
    rng = np.random.default_rng(5)
    for _ in range(3000):
        words = general_sentence(rng).split()
        for a, nxt in zip(words, words[1:]):
            if a == "a":
                assert nxt[0] not in "aeiou", " ".join(words)
            elif a == "an":
                assert nxt[0] in "aeiou", " ".join(words)


def test_a_general_corpus_mixes_in_commands_and_keeps_test_text_out_of_train():
    specs = synthetic.draw_specs("/tmp/unused", {"train": 400, "dev": 50, "test": 50}, 0, 0.3, text="general")
    train = {s.text for s in specs["train"]}
    held_out = [s.text for split in ("dev", "test") for s in specs[split]]
    assert not train & set(held_out)
    command_vocab = synthetic.vocabulary()
    commands = sum(set(t.split()) <= command_vocab for t in train)
    assert 0.05 * len(train) < commands < 0.35 * len(train)  # GENERAL_COMMAND_SHARE = 0.15, plus chance
    # The commands corpus draws the same texts as before the option existed.
    old = synthetic.draw_specs("/tmp/unused", {"train": 20, "dev": 0, "test": 0}, 0, 0.3)
    rng = np.random.default_rng([0, 0])
    assert old["train"][0].text == synthetic.random_sentence(rng)


def test_unknown_text_is_an_error():
    with pytest.raises(ValueError, match="unknown corpus text 'poems'"):
        synthetic.build_corpus("/tmp/never-written", text="poems")
    with pytest.raises(SystemExit):
        synthetic.main(["-o", "/tmp/never-written", "--text", "poems"])


def test_the_text_is_stamped_and_a_corpus_of_the_other_kind_is_not_reused(tmp_path, capsys):
    pytest.importorskip("espeakng_loader")
    out = tmp_path / "synth"
    assert synthetic.main(["-o", str(out), "--tiny", "--text", "general", "--jobs", "1"]) == 0
    assert json.loads((out / "corpus.json").read_text())["text"] == "general"
    with pytest.raises(FileExistsError, match="other parameters"):
        synthetic.build_corpus(out, **synthetic.TINY_SIZES)  # commands, into the general corpus's folder
    # A commands corpus stamps no "text": folders built before the option existed are still up to date.
    old = tmp_path / "old"
    synthetic.build_corpus(old, **synthetic.TINY_SIZES)
    assert "text" not in json.loads((old / "corpus.json").read_text())
