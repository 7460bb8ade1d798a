"""CTC beam search with a KenLM n-gram (flashlight-text) on hand-made log-probs, its options through the CLI,
LM files that cannot be used, and the LibriSpeech LM download against a local server."""

import dataclasses
import functools
import gzip
import hashlib
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

pytest.importorskip("flashlight.lib.text.decoder")

from asr.cli import main  # noqa: E402
from asr.data.tokenizer import CharTokenizer  # noqa: E402
from asr.decoding.beam_search import BeamSearchDecoder, BeamSearchOptions, build_decoder, read_lexicon  # noqa: E402
from asr.decoding.ngram import LMError, build_kneser_ney, units, write_arpa  # noqa: E402
from asr.evaluation.lm_tuning import CapturingDecoder, corpus_wer, tune  # noqa: E402

TOK = CharTokenizer()
SENTENCES = [
    "the cat sat on the mat",
    "the cat ran",
    "a dog sat on the mat",
    "the dog ran to the cat",
    "my cat sat",
    "a cat sat on a mat",
] * 5


def emissions(spec: list[dict[str, float] | str], blank_frames: int = 1) -> np.ndarray:
    """(T, V) log-probs: each item is one frame of ``{char: prob}`` (or a char for certainty), then blanks."""
    frames = []
    for item in spec:
        probs = {item: 0.95} if isinstance(item, str) else item
        row = np.full(len(TOK), 1e-4)
        for c, p in probs.items():
            row[TOK.vocab.index(c)] = p
        row[0] = max(1e-4, 1 - sum(probs.values()))
        frames.append(row)
        frames += [np.eye(len(TOK))[0] * 0.99 + 1e-4] * blank_frames
    x = np.log(np.array(frames) / np.array(frames).sum(1, keepdims=True))
    return x.astype(np.float32)


def ambiguous_the_cat_sat() -> np.ndarray:
    """Greedy reads "the kat sat": "k" beats "c" by a hair, and "kat" is no word the LM knows."""
    spec = ["t", "h", "e", " ", {"k": 0.5, "c": 0.45}, "a", "t", " ", "s", "a", "t"]
    return emissions(spec)


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


def greedy(x: np.ndarray) -> str:
    from asr.decoding.greedy import greedy_decode

    return greedy_decode(torch.from_numpy(x)[None], torch.tensor([len(x)]), TOK)[0]


def test_word_lm_through_the_lexicon_fixes_what_greedy_gets_wrong(word_lm):
    x = ambiguous_the_cat_sat()
    assert greedy(x) == "the kat sat"
    decoder = BeamSearchDecoder(TOK, word_lm, options=BeamSearchOptions(lm_weight=1.0, beam_size=16))
    assert decoder.mode == "lexicon"
    hyp = decoder.decode_one(x)
    assert hyp.text == "the cat sat"
    # the best path: one start frame per emitted character, at the frames where they peak (every other frame)
    assert TOK.decode(hyp.tokens) == "the cat sat"
    assert hyp.frames == [2 * i for i in range(11)]
    # with no LM weight the acoustic evidence wins again, but only words of the lexicon can come out
    assert decoder.with_options(lm_weight=0.0).decode_one(x).text in ("the cat sat", "the mat sat")


def held(spelling: str, blank_prob: float = 0.02) -> np.ndarray:
    """(T, V) log-probs where each character of ``spelling`` is one frame and blanks are rare (``_`` = a blank
    frame): how a model that holds each letter over several frames looks, "ssiixxx||eeiigghhttt" for "six eight"."""
    rows = []
    for c in spelling:
        row = np.full(len(TOK), 1e-3)
        row[0] = 0.97 if c == "_" else blank_prob
        if c != "_":
            row[TOK.vocab.index(" " if c == "|" else c)] = 0.9
        rows.append(row / row.sum())
    return np.log(np.array(rows)).astype(np.float32)


@pytest.mark.parametrize(
    "spelling, text",
    [
        ("ssiixxx||eeiigghhttt", "six eight"),
        ("eeiigghhttt||ssiixxx", "eight six"),
        ("__ssiixxx_||eeiigghhttt__", "six eight"),
        ("bbaall_lll|ssiixxx", "ball six"),
    ],
)
def test_lexicon_keeps_a_word_whose_last_letter_is_held_over_several_frames(tmp_path, spelling, text):
    # "six" and "eight" are prefixes of "sixty" and "eighty": the search must end them on their last letter
    # however long it is held (flashlight ends a word on its last letter's first frame unless the spelling
    # carries the word separator), and spell "ball"'s "ll" as two l's with a blank between.
    path = tmp_path / "numbers.arpa"
    lines = ["six eight", "eight six", "sixty eighty", "eighty sixty", "ball six", "six ball", "eighty six"]
    write_arpa(build_kneser_ney([s.split() for s in lines * 3], 3), path)
    x = held(spelling)
    assert greedy(x) == text
    decoder = BeamSearchDecoder(TOK, path, options=BeamSearchOptions(lm_weight=0.0, beam_size=16))
    for weight in (0.0, 1.0):
        hyp = decoder.with_options(lm_weight=weight).decode_one(x)
        assert hyp.text == text
        assert TOK.decode(hyp.tokens).strip() == text and len(hyp.frames) == len(hyp.tokens)


def test_char_lm_decodes_lexicon_free(char_lm):
    x = ambiguous_the_cat_sat()
    decoder = BeamSearchDecoder(TOK, char_lm, options=BeamSearchOptions(lm_weight=1.0))
    assert decoder.mode == "lexicon-free"
    assert decoder.decode_one(x).text == "the cat sat"
    assert decoder.with_options(lm_weight=0.0).decode_one(x).text == "the kat sat"
    # lexicon-free search can spell a word the LM never saw when the audio is clear
    assert decoder.decode_one(emissions(list("zebra"))).text == "zebra"


def test_decoder_protocol_on_a_padded_batch(word_lm):
    a, b = ambiguous_the_cat_sat(), emissions(list("my cat"))
    batch = torch.full((2, len(a), len(TOK)), -20.0)
    batch[:, :, 0] = 0.0  # padding frames are confident blanks, and must be ignored anyway
    batch[0, : len(a)] = torch.from_numpy(a)
    batch[1, : len(b)] = torch.from_numpy(b)
    decoder = BeamSearchDecoder(TOK, word_lm)
    assert decoder(batch, torch.tensor([len(a), len(b)])) == ["the cat sat", "my cat"]
    assert decoder(batch[:, :0], torch.tensor([0, 0])) == ["", ""]


def test_lexicon_file_limits_the_words_and_keeps_the_lms_spelling(word_lm, tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    # bare words and flashlight's spelled format; a second spelling of a word is another path to it
    lexicon.write_text("THE\nCAT c a t |\nsat s a t |\nkat\nTHE t h e e |\n")
    entries = read_lexicon(lexicon, TOK)
    assert entries[0] == ("THE", TOK.encode("the")) and entries[1] == ("CAT", TOK.encode("cat"))
    decoder = BeamSearchDecoder(TOK, word_lm, lexicon=lexicon, options=BeamSearchOptions(lm_weight=0.0))
    # "kat" is in this lexicon but unknown to the LM: with no LM weight the acoustics pick it
    assert decoder.decode_one(ambiguous_the_cat_sat()).text == "the kat sat"
    assert decoder.words == ["THE", "CAT", "sat", "kat"]
    assert decoder.decode_one(emissions(list("thee kat"))).text == "the kat"


def test_upper_case_lm_like_librispeechs(tmp_path):
    path = tmp_path / "upper.arpa"
    write_arpa(build_kneser_ney([s.upper().split() for s in SENTENCES], 3), path)
    path.write_text(path.read_text().replace("<unk>", "<UNK>"))
    decoder = BeamSearchDecoder(TOK, path)
    assert "THE" in decoder.words and "<UNK>" not in decoder.words
    assert decoder.decode_one(ambiguous_the_cat_sat()).text == "the cat sat"


def test_threads_share_one_decoder_each_with_its_own_search(char_lm, word_lm):
    """``asr serve``'s pool shares a decoder between threads: each gets its own flashlight decoder (it keeps its
    beams in itself), and decoding at once in several threads gives what decoding one at a time gives."""
    inputs = [ambiguous_the_cat_sat(), emissions(list("zebra")), emissions(list("my cat")), emissions(list("a dog"))]
    for lm in (char_lm, word_lm):
        decoder = BeamSearchDecoder(TOK, lm, options=BeamSearchOptions(beam_size=8))
        expected = [decoder.decode_one(x).text for x in inputs]
        barrier, searches, results = threading.Barrier(4), {}, {}

        def work(i):
            barrier.wait()
            searches[i] = decoder._search()
            results[i] = [decoder.decode_one(x).text for x in inputs[i:] + inputs[:i]]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(results[i] == expected[i:] + expected[:i] for i in range(4))
        assert len({id(s) for s in searches.values()} | {id(decoder._search())}) == 5


def test_tune_finds_a_weight_that_helps(char_lm):
    x = [ambiguous_the_cat_sat(), emissions(list("the dog ran"))]
    refs = ["the cat sat", "the dog ran"]
    decoder = BeamSearchDecoder(TOK, char_lm)
    rows = tune(decoder, x, refs, lm_weights=[0.0, 1.0, 2.0], word_scores=[0.0, 1.0])
    assert len(rows) == 6 and rows[0]["wer"] == 0.0 and rows[0]["lm_weight"] > 0
    assert corpus_wer(decoder.with_options(lm_weight=rows[0]["lm_weight"]), x, refs) == 0.0
    random_rows = tune(decoder, x, refs, [0.0, 1.0, 2.0], [0.0, 1.0], search="random", trials=3)
    assert len(random_rows) == 3


def test_capturing_decoder_keys_follow_input_order():
    capture = CapturingDecoder()
    lp = torch.randn(2, 5, len(TOK)).log_softmax(-1)
    assert capture(lp, torch.tensor([5, 3])) == ["0", "1"]
    assert capture(lp[:1], torch.tensor([4])) == ["2"]
    assert [x.shape[0] for x in capture.log_probs] == [5, 3, 4]


def test_params_file_round_trip_and_bad_files(tmp_path):
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"lm_weight": 1.5, "word_score": -0.5, "dev_wer": 0.01, "lm": "x.arpa"}))
    o = BeamSearchOptions.from_file(good)
    assert (o.lm_weight, o.word_score, o.beam_size) == (1.5, -0.5, 32)
    bad = tmp_path / "bad.json"
    bad.write_text("lm_weight: [")
    with pytest.raises(LMError, match="bad.json: not a JSON LM parameters file"):
        BeamSearchOptions.from_file(bad)
    bad.write_text(json.dumps({"lm_weight": "high"}))
    with pytest.raises(LMError, match="bad.json: lm_weight must be a number"):
        BeamSearchOptions.from_file(bad)
    with pytest.raises(LMError, match="missing.json: LM parameters file not found"):
        BeamSearchOptions.from_file(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------ LM files gone wrong


def test_missing_lm_file(tmp_path):
    with pytest.raises(LMError, match="nope.arpa: file not found"):
        BeamSearchDecoder(TOK, tmp_path / "nope.arpa")


def test_arpa_that_kenlm_rejects_is_named(tmp_path, word_lm):
    broken = tmp_path / "broken.arpa"
    lines = word_lm.read_text().splitlines()
    at = lines.index("\\2-grams:") + 1
    lines[at] = "-0.5\tonly-one-word-and-no-tab"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(LMError, match=r"broken.arpa: KenLM cannot load this LM \(.+\)"):
        BeamSearchDecoder(TOK, broken)


def test_kenlm_binary_needs_a_lexicon_and_a_broken_one_is_named(tmp_path):
    fake = tmp_path / "lm.klm"
    fake.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0\0garbage")
    with pytest.raises(LMError, match="lm.klm: a binary LM needs --lexicon"):
        BeamSearchDecoder(TOK, fake)
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("the\ncat\n")
    with pytest.raises(LMError, match=r"lm.klm: KenLM cannot load this LM \(.+\)"):
        BeamSearchDecoder(TOK, fake, lexicon=lexicon)


def test_word_lm_with_characters_the_model_cannot_emit(tmp_path):
    path = tmp_path / "cafe.arpa"
    write_arpa(build_kneser_ney([["un", "café"], ["un", "thé"]], 2), path)
    with pytest.raises(LMError, match=r"cafe.arpa:\d+: word 'café' has characters the model cannot emit \('é'\)"):
        BeamSearchDecoder(TOK, path)


def test_lexicon_with_characters_the_model_cannot_emit(tmp_path, word_lm):
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("the\ncat\nnaïve\n")
    with pytest.raises(LMError, match=r"lex.txt:3: word 'naïve' has characters the model cannot emit \('ï'\)"):
        BeamSearchDecoder(TOK, word_lm, lexicon=lexicon)
    lexicon.write_text("the DH AH0\n")
    with pytest.raises(LMError, match=r"lex.txt:1: .*phone lexicon"):
        read_lexicon(lexicon, TOK)


def test_char_lm_with_a_character_the_model_cannot_emit_and_orders_kenlm_cannot_read(tmp_path):
    path = tmp_path / "c.arpa"
    write_arpa(build_kneser_ney([list("ab|ç")], 2), path)
    with pytest.raises(LMError, match=r"c.arpa:\d+: character 'ç' is not one the model can emit"):
        BeamSearchDecoder(TOK, path)
    write_arpa(build_kneser_ney([units(s, "char") for s in SENTENCES], 7), path)
    with pytest.raises(LMError, match=r"c.arpa: a 7-gram, but the KenLM inside flashlight-text reads up to 6"):
        BeamSearchDecoder(TOK, path)


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def fresh_model(tmp_path_factory):
    """An untrained tiny model file: the CLI paths need a model, not a good one."""
    from conftest import TINY_MODEL

    from asr.model.features import FeatureConfig
    from asr.model.file import save_model
    from asr.model.network import ASRModel
    from asr.training.config import load_config

    config = load_config(None, TINY_MODEL)
    dims = dataclasses.replace(config.model, vocab_size=len(TOK))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, ASRModel(dims, FeatureConfig(**dataclasses.asdict(config.features))), TOK)
    return path


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    import soundfile as sf

    d = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    lines = []
    for i, text in enumerate(["the cat sat", "a dog ran"]):
        sf.write(d / f"{i}.wav", (0.05 * rng.standard_normal(16000)).astype("float32"), 16000)
        lines.append(json.dumps({"audio_filepath": f"{i}.wav", "duration": 1.0, "text": text}))
    (d / "dev.jsonl").write_text("\n".join(lines) + "\n")
    return d / "dev.jsonl"


def test_cli_evaluate_and_transcribe_with_an_lm(fresh_model, tiny_manifest, word_lm, tmp_path, capsys):
    params = tmp_path / "params.json"
    assert (
        main(
            [
                "lm",
                "tune",
                "--model",
                str(fresh_model),
                "--manifest",
                str(tiny_manifest),
                "--lm",
                str(word_lm),
                "-o",
                str(params),
                "--lm-weights",
                "0:1:1",
                "--word-scores=-1:1:1",
            ]
        )
        == 0
    )
    best = json.loads(params.read_text())
    assert {"lm_weight", "word_score", "dev_wer", "dev_greedy_wer"} <= set(best) and best["points"] == 6
    assert "best LM WER" in capsys.readouterr().out
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(fresh_model),
                "--manifest",
                str(tiny_manifest),
                "--lm",
                str(word_lm),
                "--lm-params",
                str(params),
                "--beam-size",
                "4",
            ]
        )
        == 0
    )
    assert "utterances 2" in capsys.readouterr().out
    wav = str(tiny_manifest.parent / "0.wav")
    assert (
        main(
            [
                "transcribe",
                "--model",
                str(fresh_model),
                "--lm",
                str(word_lm),
                "--lm-weight",
                "3",
                "--format",
                "json",
                wav,
            ]
        )
        == 0
    )
    text = json.loads(capsys.readouterr().out)["text"]
    assert set(text.split()) <= {w for s in SENTENCES for w in s.split()}  # only the lexicon's words


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lm", "{tmp}/missing.arpa"], "missing.arpa: file not found"),
        (["--lm", "{tmp}/bad.arpa"], r"bad.arpa:1: not a valid ARPA file"),
        (["--lm-weight", "2"], "--lm-weight needs --lm"),
        (["--lm", "{lm}", "--lexicon", "{tmp}/lex.txt"], "lex.txt:1: word 'ñu' has characters the model cannot emit"),
    ],
)
def test_cli_lm_errors_are_one_line_and_exit_2(fresh_model, tiny_manifest, word_lm, tmp_path, capsys, args, message):
    (tmp_path / "bad.arpa").write_text("not an arpa file\n")
    (tmp_path / "lex.txt").write_text("ñu\n")
    args = [a.format(tmp=tmp_path, lm=word_lm) for a in args]
    assert main(["transcribe", "--model", str(fresh_model), *args, str(tiny_manifest.parent / "0.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("asr: error: ")
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--beam-size", "0", "--beam-size 0: must be a whole number >= 1"),
        ("--beam-size", "-5", "--beam-size -5: must be a whole number >= 1"),
        ("--lm-weight", "nan", "--lm-weight nan: must be a finite number"),
        ("--lm-weight", "inf", "--lm-weight inf: must be a finite number"),
        ("--word-score", "nan", "--word-score nan: must be a finite number"),
        ("--beam-threshold", "-1", "--beam-threshold -1: must be >= 0"),
    ],
)
def test_impossible_beam_options_are_one_line_errors(
    fresh_model, tiny_manifest, word_lm, tmp_path, capsys, flag, value, message
):
    """Were an empty transcript with exit 0 (transcribe, evaluate, serve); now refused wherever they come from."""
    wav = str(tiny_manifest.parent / "0.wav")
    for command in (["transcribe", wav], ["evaluate", "--manifest", str(tiny_manifest)]):
        rc = main([command[0], "--model", str(fresh_model), "--lm", str(word_lm), f"{flag}={value}", *command[1:]])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err == f"asr: error: {message}" + err.split(message, 1)[1], err
        assert len(err.splitlines()) == 1
    key = flag[2:].replace("-", "_")
    with pytest.raises(LMError, match=message):  # the Python API: the same check, in BeamSearchOptions itself
        BeamSearchOptions(**{key: float(value) if "." in value or value.isalpha() else int(value)})
    params = tmp_path / "p.json"
    params.write_text(json.dumps({key: float(value)}))
    with pytest.raises(LMError, match=f"p.json: {message.split(':')[0]}"):
        BeamSearchOptions.from_file(params)
    with pytest.raises(LMError, match=message):
        build_decoder(TOK, word_lm, **{key: float(value)})


def test_serve_refuses_an_impossible_beam_before_it_listens(fresh_model, word_lm, monkeypatch, capsys):
    pytest.importorskip("fastapi")
    import asr.serving.server as server

    monkeypatch.setattr(server, "serve", lambda *a, **k: pytest.fail("the server started"))
    assert main(["serve", "--model", str(fresh_model), "--lm", str(word_lm), "--beam-size", "0"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "asr: error: --beam-size 0: must be a whole number >= 1 (hypotheses kept per frame)"
    )


# ----------------------------------------------------------------------------------- LibriSpeech LM download


def test_librispeech_lm_download_verifies_sha256_and_gzip(tmp_path, word_lm, monkeypatch, capsys):
    from asr.corpora import librispeech_lm as ls

    www = tmp_path / "www" / "11"
    www.mkdir(parents=True)
    arpa_gz = gzip.compress(word_lm.read_bytes())
    (www / "3-gram.pruned.1e-7.arpa.gz").write_bytes(arpa_gz)
    (www / "librispeech-vocab.txt").write_text("THE\nCAT\n")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.server_address[1]}"
    sums = {"3-gram.pruned.1e-7.arpa.gz": hashlib.sha256(arpa_gz).hexdigest(), "librispeech-vocab.txt": None}
    try:
        arpa, vocab = ls.download_librispeech_lm(tmp_path / "data", mirror=mirror, progress=False, checksums=sums)
        assert arpa == tmp_path / "data" / "LibriSpeech" / "lm" / "3-gram.pruned.1e-7.arpa.gz"
        assert BeamSearchDecoder(TOK, arpa, lexicon=vocab).words == ["THE", "CAT"]
        # a second run trusts its stamp; a file changed on disk is checked again and moved aside
        monkeypatch.setattr(ls, "sha256sum", lambda p: pytest.fail("re-hashed a verified file"))
        ls.download_librispeech_lm(tmp_path / "data", mirror=mirror, progress=False, checksums=sums)
        monkeypatch.undo()
        arpa.write_bytes(arpa_gz[:-20])
        with pytest.raises(ls.ChecksumError, match="SHA-256 mismatch"):
            ls.download_librispeech_lm(tmp_path / "data", mirror=mirror, progress=False, checksums=sums)
        assert arpa.with_name(arpa.name + ".bad-sha256").exists()
        # no published sum: a truncated gzip is still caught
        (www / "3-gram.pruned.1e-7.arpa.gz").write_bytes(arpa_gz[:-20])
        arpa.with_name(arpa.name + ".bad-sha256").unlink()
        with pytest.raises(ls.DownloadError, match="not a complete gzip file"):
            ls.download_librispeech_lm(
                tmp_path / "data2",
                mirror=mirror,
                progress=False,
                checksums={**sums, "3-gram.pruned.1e-7.arpa.gz": None},
            )
        assert (
            main(
                [
                    "librispeech-lm",
                    "download",
                    "--data-dir",
                    str(tmp_path / "data3"),
                    "--mirror",
                    mirror,
                    "--files",
                    "3-gram.pruned.1e-7.arpa.gz",
                ]
            )
            == 2
        )
        assert "asr: error: " in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_word_pieces_take_a_word_lm_and_refuse_a_char_lm(word_lm, char_lm):
    from asr.data.tokenizer import BPETokenizer

    bpe = BPETokenizer.train(SENTENCES, vocab_size=20)
    assert BeamSearchDecoder(bpe, word_lm).mode == "lexicon"  # the lexicon is spelled in pieces
    with pytest.raises(LMError, match="character LM needs a character model"):
        BeamSearchDecoder(bpe, char_lm)


@pytest.mark.parametrize("blanks_between_words", [1, 2])
def test_word_pieces_through_the_lexicon_keep_a_word_whose_last_piece_is_held(tmp_path, blanks_between_words):
    # Word pieces have no space label: a word must still end after its last piece however long it is held, and
    # not run on into a longer lexicon word ("six" -> "sixty") to pay for the held frames.
    from asr.data.tokenizer import BPETokenizer

    lines = ["six eight", "eight six", "sixty eighty", "eighty sixty", "six six", "eighty six"]
    bpe = BPETokenizer.train(lines * 5, vocab_size=24)
    path = tmp_path / "numbers.arpa"
    write_arpa(build_kneser_ney([s.split() for s in lines * 3], 3), path)
    rows = []
    for n, word in enumerate("six eight six".split()):
        if n:
            rows += [bpe.blank_id] * blanks_between_words
        for piece in bpe.word_ids(word):
            rows += [piece] * 3  # each piece held for three frames, no blank inside the word
    x = np.full((len(rows), len(bpe)), np.log(1e-3 / len(bpe)), dtype=np.float32)
    x[np.arange(len(rows)), rows] = np.log(0.95)
    from asr.decoding.greedy import greedy_decode

    assert greedy_decode(torch.from_numpy(x)[None], torch.tensor([len(x)]), bpe)[0] == "six eight six"
    decoder = BeamSearchDecoder(bpe, path, options=BeamSearchOptions(lm_weight=0.0, beam_size=16))
    for weight in (0.0, 1.0):
        hyp = decoder.with_options(lm_weight=weight).decode_one(x)
        assert hyp.text == "six eight six"
        assert bpe.decode(hyp.tokens).strip() == "six eight six" and len(hyp.frames) == len(hyp.tokens)
