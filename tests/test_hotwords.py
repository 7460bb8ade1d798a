"""Hotwords: the list's format and its errors, CTC word spotting on hand-made posteriors (greedy and lexicon-free),
boosting through a word LM (a word the LM never saw comes out), and --hotwords through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.data.tokenizer import CharTokenizer
from asr.decoding.hotwords import DEFAULT_BOOST, HotwordDecoder, HotwordsError, as_hotwords, read_hotwords, spot

TOK = CharTokenizer()


def emissions(spec: list, blank_frames: int = 1) -> np.ndarray:
    """(T, V) log-probs: each item one frame of ``{char: prob}`` (or a char, nearly certain), then blank frames."""
    frames = []
    for item in spec:
        probs = {item: 0.95} if isinstance(item, str) else item
        row = np.full(len(TOK), 1e-4)
        for c, p in probs.items():
            row[TOK.vocab.index(c)] = p
        row[0] = max(1e-4, 1 - sum(probs.values()))
        frames.append(row)
        frames += [np.eye(len(TOK))[0] * 0.99 + 1e-4] * blank_frames
    x = np.array(frames)
    return np.log(x / x.sum(1, keepdims=True)).astype(np.float32)


def spelled(text: str, unsure: dict[int, dict[str, float]] | None = None) -> np.ndarray:
    """Frames spelling ``text``, with the characters at the given positions uncertain."""
    unsure = unsure or {}
    return emissions([unsure.get(i, c) for i, c in enumerate(text)])


def decode(decoder, x: np.ndarray) -> str:
    return decoder(torch.from_numpy(x)[None], torch.tensor([len(x)]))[0]


# "go to vienna now" where the model is unsure of the second n: greedy drops it ("viena").
VIENA = spelled("go to vienna now", {10: {"n": 0.3, "a": 0.35}})


def test_the_list_format_word_tab_boost_comments_and_default(tmp_path):
    f = tmp_path / "hot.tsv"
    f.write_text("# city names\nVienna\t7.5\nOslo\n\nsydney\t0  # not boosted\n", encoding="utf-8")
    assert read_hotwords(f) == {"Vienna": 7.5, "Oslo": DEFAULT_BOOST, "sydney": 0.0}
    words = as_hotwords(f, TOK)
    assert [w.text for w in words] == ["vienna", "oslo", "sydney"]
    assert words[0].ids == tuple(TOK.encode("vienna"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("vienna\tlots\n", r"hot.tsv:1: boost 'lots' is not a number"),
        ("ok\t1\nvienna\t-3\n", r"hot.tsv:2: boost -3.0 must be a finite number >= 0"),
        ("# nothing\n\n", r"hot.tsv: the hotword list is empty"),
        ("\t4\n", r"hot.tsv:1: no word on the line"),
    ],
)
def test_a_bad_list_names_the_file_and_line(tmp_path, text, message):
    f = tmp_path / "hot.tsv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(HotwordsError, match=message):
        read_hotwords(f)


def test_missing_list_and_unspellable_words_are_errors(tmp_path):
    with pytest.raises(HotwordsError, match="nope.tsv: hotword list not found"):
        read_hotwords(tmp_path / "nope.tsv")
    with pytest.raises(HotwordsError, match="'zürich' has characters the model cannot emit"):
        as_hotwords({"zürich": 5.0}, TOK)


def test_word_spotting_puts_a_boosted_word_in_place_of_what_greedy_heard():
    plain = HotwordDecoder(TOK, {"oslo": 5.0})  # a list without the word changes nothing
    assert decode(plain, VIENA) == "go to viena now"
    boosted = HotwordDecoder(TOK, {"vienna": 5.0})
    assert decode(boosted, VIENA) == "go to vienna now"
    (hit,) = boosted.last_spotted
    assert hit.word.text == "vienna" and hit.margin > 0
    assert decode(HotwordDecoder(TOK, {"vienna": 0.1}), VIENA) == "go to viena now"  # too small a boost


def test_word_spotting_leaves_clear_speech_alone_and_never_swallows_a_longer_word():
    x = spelled("turn on the television")
    assert decode(HotwordDecoder(TOK, {"tele": 8.0, "vision": 8.0, "on": 8.0}), x) == "turn on the television"


def test_a_phrase_can_be_spotted_across_words():
    x = spelled("go to new yxrk", {11: {"x": 0.4, "o": 0.35}})
    assert decode(HotwordDecoder(TOK, {"york": 0.0}), x) == "go to new yxrk"
    assert decode(HotwordDecoder(TOK, {"new york": 6.0}), x) == "go to new york"


def test_spot_is_empty_for_no_frames_and_no_words():
    assert spot(np.zeros((0, len(TOK)), dtype=np.float32), as_hotwords(["a"], TOK)) == []
    assert spot(VIENA, []) == []


# ------------------------------------------------------------------------------------------------- with an LM

flashlight = pytest.importorskip("flashlight.lib.text.decoder")

from asr.decoding.beam_search import BeamSearchOptions, build_decoder  # noqa: E402
from asr.decoding.ngram import build_kneser_ney, units, write_arpa  # noqa: E402

SENTENCES = ["go to paris now", "go to london now", "go to paris", "fly to london now", "go now"] * 4


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "word.arpa"
    write_arpa(build_kneser_ney([s.split() for s in SENTENCES], 3), path)
    return path


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "char.arpa"
    write_arpa(build_kneser_ney([units(s, "char") for s in SENTENCES], 5), path)
    return path


def test_a_word_lm_gets_the_missing_hotword_in_its_lexicon_and_boosted(word_lm):
    x = spelled("go to vienna now")
    options = dict(beam_size=32, lm_weight=1.0)
    without = build_decoder(TOK, word_lm, **options)
    assert "vienna" not in decode(without, x)  # the lexicon has no such word
    with_list = build_decoder(TOK, word_lm, **options, hotwords={"vienna": 6.0})
    assert with_list.hotwords_added == ["vienna"]
    assert decode(with_list, x) == "go to vienna now"
    assert with_list.info()["hotword_method"] == "lm-boost"
    # and a known word is boosted over the one the audio favours a little
    y = spelled("go to paris now", {6: {"p": 0.5, "l": 0.1}})
    assert decode(build_decoder(TOK, word_lm, **options), y) == "go to paris now"
    tuned = with_list.with_options(**{**BeamSearchOptions().__dict__, **options})
    assert decode(tuned, x) == "go to vienna now"


def test_a_phrase_is_refused_by_a_word_lm(word_lm):
    from asr.errors import LMError

    with pytest.raises(LMError, match="a word LM boosts single words"):
        build_decoder(TOK, word_lm, hotwords={"new york": 5.0})


def test_a_character_lm_boosts_by_word_spotting_after_its_search(char_lm):
    decoder = build_decoder(TOK, char_lm, lm_weight=0.5, hotwords={"vienna": 8.0})
    assert isinstance(decoder, HotwordDecoder) and decoder.info()["mode"] == "lexicon-free"
    assert decode(decoder, VIENA) == "go to vienna now"


def test_hotwords_through_the_cli(trained_model, tiny_corpus, tmp_path, capsys):
    from asr.cli import main

    hot = tmp_path / "hot.tsv"
    hot.write_text("hello\t4\n", encoding="utf-8")
    wav = tiny_corpus["test"].parent / "test"
    assert main(["transcribe", "--model", str(trained_model / "model.pt"), "--hotwords", str(hot), str(wav)]) == 0
    assert main(["transcribe", "--model", str(trained_model / "model.pt"), "--lexicon", str(hot), str(wav)]) == 2
    assert "--lexicon needs --lm" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\tx\n", encoding="utf-8")
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained_model / "model.pt"),
                "--manifest",
                str(tiny_corpus["test"]),
                "--hotwords",
                str(bad),
            ]
        )
        == 2
    )
    assert "bad.tsv:1: boost 'x' is not a number" in capsys.readouterr().err


def test_serve_says_which_hotwords_it_boosts(tmp_path):
    pytest.importorskip("fastapi")
    from test_server import random_model

    from asr.model.file import load_model
    from asr.serving.server import Recognizer, describe_decoding

    loaded = load_model(random_model(tmp_path / "model.pt"))
    info = Recognizer(loaded, HotwordDecoder(loaded.tokenizer, {"hello": 5.0, "world": 2.0})).decoder_info()
    assert info["hotwords"] == 2 and info["hotword_method"] == "ctc-word-spotting"
    assert describe_decoding(info) == "greedy decoding, 2 hotwords by word spotting"
