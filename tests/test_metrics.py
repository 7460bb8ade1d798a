import jiwer
import pytest

from asr.evaluation.metrics import (
    ErrorBreakdown,
    ErrorRates,
    Errors,
    NoReferenceError,
    char_errors,
    word_edits,
    word_errors,
)

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


def test_a_rate_over_no_reference_is_an_error_not_zero():
    with pytest.raises(NoReferenceError):
        Errors().rate
    rates = ErrorRates()
    with pytest.raises(NoReferenceError):
        rates.wer
    with pytest.raises(NoReferenceError):
        rates.exact_match
    rates.add("", "noise")  # an empty reference: insertions over no words
    with pytest.raises(NoReferenceError):
        rates.cer


def test_unreadable_utterances_count_as_deletions():
    rates = ErrorRates()
    rates.add("one two", "one two")
    w, c = rates.add_unreadable("three four five")
    assert (w.deletions, c.deletions) == (3, 15)
    assert rates.wer == pytest.approx(3 / 5) and rates.cer == pytest.approx(15 / 22)
    assert rates.exact_match == 0.5 and rates.unreadable == 1 and rates.utterances == 2
    rates.add_unreadable("")  # nothing to delete, but still not an exact match
    assert rates.exact_match == pytest.approx(1 / 3)


def test_word_edits_and_breakdown():
    assert word_edits("a b c d", "a x c e f") == [("sub", "b", "x"), ("ins", "", "e"), ("sub", "d", "f")]
    assert word_edits("a b", "") == [("del", "a", ""), ("del", "b", "")]
    breakdown = ErrorBreakdown()
    for ref, hyp in [("the cat", "a cat"), ("the dog", "a dog"), ("to be", "be"), ("on", "on on")]:
        breakdown.add(ref, hyp)
    top = breakdown.top(1)
    assert top["top_substitutions"] == [{"reference": "the", "hypothesis": "a", "count": 2}]
    assert top["top_deletions"] == [{"word": "to", "count": 1}]
    assert top["top_insertions"] == [{"word": "on", "count": 1}]
