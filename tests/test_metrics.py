import jiwer
import pytest

from asr.metrics import ErrorRates, char_errors, word_errors

PAIRS = [
    ("the cat sat on the mat", "the cat sat on mat"),
    ("turn on the lights", "turn of the light please"),
    ("four seven one", "four seven one"),
    ("a b c d", "x"),
]


def test_corpus_rates_agree_with_jiwer():
    rates = ErrorRates()
    for ref, hyp in PAIRS:
        rates.add(ref, hyp)
    refs, hyps = [r for r, _ in PAIRS], [h for _, h in PAIRS]
    assert rates.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert rates.cer == pytest.approx(jiwer.cer(refs, hyps))
    assert rates.exact_match == pytest.approx(0.25)


def test_error_kinds():
    e = word_errors("a b c", "a x c d")
    assert (e.substitutions, e.deletions, e.insertions, e.reference_length) == (1, 0, 1, 3)
    c = char_errors("abc", "ab")
    assert (c.deletions, c.reference_length) == (1, 3)


def test_empty_reference_and_hypothesis():
    assert word_errors("", "").total == 0
    assert word_errors("", "noise").insertions == 1
    assert word_errors("two words", "").deletions == 2
