"""`asr lm build`: modified Kneser-Ney estimates, the ARPA it writes, and text or ARPA files that cannot be used."""

import gzip
import json
import random

import pytest

from asr.cli import main
from asr.data.tokenizer import CharTokenizer
from asr.decoding.ngram import BOS, EOS, UNK, LMError, build_kneser_ney, load_arpa, read_arpa_info, units, write_arpa

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "she", "he"]
VERBS = ["sat on", "looked at", "ran to", "found", "likes"]
OBJECTS = ["the mat", "a red ball", "the door", "her house", "the big tree", "it"]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}" for _ in range(n)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_distributions_sum_to_one(order):
    model = build_kneser_ney([s.split() for s in corpus()], order)
    vocab = [g[0] for g in model.probs[1] if g[0] != BOS]
    assert UNK in vocab and EOS in vocab
    for context in ([BOS], [BOS, "the"], ["the", "old"], ["sat", "on", "the"], ["never", "seen"], []):
        total = sum(10 ** model.logprob(w, context) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-6), context


def test_kneser_ney_prefers_seen_continuations_and_discounts_by_count():
    model = build_kneser_ney([s.split() for s in corpus()], 3)
    assert model.logprob("mat", ["on", "the"]) > model.logprob("house", ["on", "the"])  # "her house" only
    assert model.logprob("ball", ["a", "red"]) > -0.1  # almost certain after "a red"
    # back-off weights exist exactly for contexts that were extended
    assert model.probs[2][("a", "red")][1] != 0.0
    assert model.probs[2][("ball", EOS)][1] == 0.0


def test_arpa_round_trip_and_perplexity(tmp_path):
    model = build_kneser_ney([s.split() for s in corpus()], 3)
    path = tmp_path / "lm.arpa.gz"
    write_arpa(model, path)
    info = read_arpa_info(path)
    assert info.order == 3 and info.counts[0] == len(model.probs[1]) and not info.is_char_level
    again = load_arpa(path)
    held_out = [s.split() for s in corpus(50, seed=1)]
    assert again.perplexity(held_out) == pytest.approx(model.perplexity(held_out), rel=1e-4)
    assert again.perplexity(held_out) < 6  # a small grammar: far below the 25-word vocabulary


def test_cli_build_from_text_and_manifest(tmp_path, capsys):
    text = tmp_path / "train.txt"
    text.write_text("\n".join(s.upper() + "." for s in corpus(100)) + "\n")
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(
        "".join(json.dumps({"audio_filepath": "x.wav", "duration": 1.0, "text": s}) + "\n" for s in corpus(100, seed=2))
    )
    out = tmp_path / "lm" / "word.arpa"
    assert main(["lm", "build", str(text), str(manifest), "-o", str(out), "--order", "2"]) == 0
    assert "200 sentences" in capsys.readouterr().out
    info = read_arpa_info(out)
    assert "the" in info.words and "THE" not in info.words  # normalised like the model's transcripts

    char = tmp_path / "char.arpa"
    assert main(["lm", "build", str(text), "-o", str(char), "--order", "5", "--unit", "char"]) == 0
    info = read_arpa_info(char)
    assert info.is_char_level and info.order == 5 and "|" in info.words
    assert units("to be", "char") == ["t", "o", "|", "b", "e"]


def test_build_refuses_text_the_model_cannot_emit(tmp_path, capsys):
    from asr.decoding.ngram import read_sentences

    text = tmp_path / "t.txt"
    text.write_text("fine line\nun café noir\n")
    with pytest.raises(LMError, match=r"t\.txt:2: characters the model cannot emit: 'é'"):
        list(read_sentences([text], CharTokenizer()))
    assert main(["lm", "build", str(text), "-o", str(tmp_path / "x.arpa")]) == 0  # no --model: no check
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(LMError, match=r'm\.jsonl:2: not a manifest line with a "text" field'):
        list(read_sentences([manifest]))


def test_build_with_missing_or_empty_text_exits_2(tmp_path, capsys):
    assert main(["lm", "build", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "x.arpa")]) == 2
    assert "nope.txt: file not found" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n...\n")
    assert main(["lm", "build", str(empty), "-o", str(tmp_path / "x.arpa")]) == 2
    assert "no text" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ("hello world\n", r"bad\.arpa:1: not a valid ARPA file \(expected \\data\\"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\t-0.5\nfoo bar baz qux\n", r"bad\.arpa:6: .*unigram line"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\nx.y\tfoo\n", r"bad\.arpa:6: .*not a number"),
        ("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\n-0.5\tfoo\n\n\\end\\\n", r"header says 3 unigrams, found 2"),
        ("\\data\\\nngram x=3\n", r"bad\.arpa:2: .*bad count line"),
    ],
)
def test_broken_arpa_files_are_named_with_their_line(tmp_path, content, message):
    path = tmp_path / "bad.arpa"
    path.write_text(content)
    with pytest.raises(LMError, match=message):
        read_arpa_info(path)


def test_arpa_that_is_not_text(tmp_path):
    path = tmp_path / "bin.arpa.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t\xff\xfe\n")
    with pytest.raises(LMError, match="bin.arpa.gz: not UTF-8"):
        read_arpa_info(path)


def test_build_checks_order_and_output_before_building_and_leaves_no_tmp(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat\nthe dog ran\n")
    (tmp_path / "folder").mkdir()
    cases = [
        (["--order", "0", "-o", str(tmp_path / "a.arpa")], "--order 0: must be at least 1"),
        (["--order", "-2", "-o", str(tmp_path / "a.arpa")], "--order -2: must be at least 1"),
        (["--order", "100", "-o", str(tmp_path / "a.arpa")], "--order 100: at most 10"),
        (["--order", "7", "--unit", "char", "-o", str(tmp_path / "a.arpa")], "the decoder reads character LMs up to 6"),
        (["-o", str(tmp_path / "folder")], "folder: is a folder; -o takes the ARPA file to write"),
        (["-o", str(text / "x.arpa")], "t.txt is a file, not a folder"),
    ]
    for args, message in cases:
        assert main(["lm", "build", str(text), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("asr: error: ") and message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "t.txt"]  # no a.arpa, no folder.tmp
    assert not any((tmp_path / "folder").iterdir())

    # a word LM above the decoder's order is built, with a warning that says the decoder will refuse it
    assert main(["lm", "build", str(text), "--order", "7", "-o", str(tmp_path / "w7.arpa")]) == 0
    assert "asr: warning: a 7-gram: asr's decoder (--lm) reads up to 6-grams" in capsys.readouterr().err
    assert read_arpa_info(tmp_path / "w7.arpa").order == 7


def test_build_help_recommends_orders_the_decoder_reads(capsys):
    from asr.decoding.beam_search import KENLM_MAX_ORDER

    with pytest.raises(SystemExit):
        main(["lm", "build", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "6-10" not in help_text and "5-6 --unit char" in help_text
    assert f"reads up to {KENLM_MAX_ORDER}-grams" in help_text


def test_a_failed_arpa_write_leaves_no_tmp(tmp_path, monkeypatch):
    model = build_kneser_ney([units("the cat", "word")], 2)
    (tmp_path / "lm.arpa").mkdir()  # os.replace onto a folder fails after the text was written
    with pytest.raises(OSError):
        write_arpa(model, tmp_path / "lm.arpa")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.arpa"]
