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
