"""``asr lm build|tune`` and the ``--lm`` options that transcribe, evaluate and serve share.

The library side is :mod:`asr.decoding.ngram` (building ARPA files), :mod:`asr.decoding.beam_search` (the decoder)
and :mod:`asr.evaluation.lm_tuning` (the weight search); this module only turns flags into their arguments.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Sequence

from asr.errors import LMError
from asr.help_format import DefaultsHelpFormatter


def add_lm_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--lm`` options of ``asr transcribe``, ``asr evaluate`` and ``asr serve``: one definition for all three."""
    g = parser.add_argument_group("language-model decoding (CTC beam search with KenLM; default: greedy)")
    g.add_argument(
        "--lm", metavar="ARPA", help="n-gram LM (ARPA; word LM -> lexicon search, char LM -> lexicon-free search)"
    )
    g.add_argument("--lexicon", metavar="FILE", help="words the decoder may emit (default: the LM's vocabulary)")
    g.add_argument("--lm-params", metavar="FILE", help="weights found by `asr lm tune` (options below override)")
    g.add_argument("--beam-size", type=int, help="hypotheses kept per frame (default 32)")
    g.add_argument("--lm-weight", type=float, help="alpha, the LM's weight (default 1.0)")
    g.add_argument("--word-score", type=float, help="beta, bonus per word (default 0.0)")
    g.add_argument("--beam-threshold", type=float, help="prune hypotheses this far below the best (default 25)")
    g.add_argument(
        "--hotwords",
        metavar="FILE",
        help="words to favour, one WORD<TAB>BOOST per line (boost in log-probability, default 5): with a word LM "
        "added to the lexicon and boosted; greedy or with a character LM by CTC word spotting (docs/hotwords.md)",
    )


def decoder_from_args(args: argparse.Namespace, tokenizer: Any) -> Any:
    """A beam-search decoder if ``--lm`` was given, else None (greedy); LM options without ``--lm`` are errors."""
    explicit = {
        "beam_size": args.beam_size,
        "lm_weight": args.lm_weight,
        "word_score": args.word_score,
        "beam_threshold": args.beam_threshold,
    }
    hotwords = getattr(args, "hotwords", None)
    if args.lm is None and hotwords is not None:
        given = [k for k, v in explicit.items() if v is not None] + (["lexicon"] if args.lexicon else [])
        if given or args.lm_params:
            raise LMError(f"--{(given or ['lm_params'])[0].replace('_', '-')} needs --lm")
        from asr.decoding.hotwords import HotwordDecoder

        return HotwordDecoder(tokenizer, hotwords)
    if args.lm is None:
        given = (
            [k for k, v in explicit.items() if v is not None]
            + (["lexicon"] if args.lexicon else [])
            + (["lm_params"] if args.lm_params else [])
        )
        if given:
            raise LMError(f"--{given[0].replace('_', '-')} needs --lm")
        return None
    from asr.decoding.beam_search import build_decoder

    return build_decoder(tokenizer, args.lm, args.lexicon, args.lm_params, **explicit, hotwords=hotwords)


def _range(spec: str, what: str) -> list[float]:
    try:
        parts = [float(x) for x in spec.split(":")]
        if len(parts) == 1:
            return parts
        start, stop, step = parts
        if step <= 0 or stop < start:
            raise ValueError
    except ValueError:
        raise LMError(f"{what}: expected START:STOP:STEP with STEP > 0, got {spec!r}") from None
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + i * step, 6) for i in range(n)]


# Orders past this are refused: a 10-gram of words is already beyond what any corpus fills, and the model file
# grows with every order. (The decoder itself reads up to asr.decoding.beam_search.KENLM_MAX_ORDER = 6.)
MAX_ORDER = 10


def check_build(output: str, order: int, unit: str) -> str | None:
    """Refuse, before any counting, an order or an output that cannot work; returns a warning line or None.

    A character LM is used only by the lexicon-free decoder, which reads up to KENLM_MAX_ORDER-grams, so a longer
    one is an error; a longer word LM may be meant for another tool, so it is a warning."""
    from asr.decoding.beam_search import KENLM_MAX_ORDER

    if order < 1:
        raise LMError(f"--order {order}: must be at least 1 (1 = unigrams)")
    if order > MAX_ORDER:
        raise LMError(f"--order {order}: at most {MAX_ORDER} (asr's decoder reads up to {KENLM_MAX_ORDER}-grams)")
    if unit == "char" and order > KENLM_MAX_ORDER:
        raise LMError(
            f"--order {order} --unit char: the decoder reads character LMs up to {KENLM_MAX_ORDER}-grams "
            f"(flashlight-text's KenLM is built with KENLM_MAX_ORDER={KENLM_MAX_ORDER}); use --order {KENLM_MAX_ORDER}"
        )
    out = Path(output)
    if out.is_dir():
        raise LMError(f"{output}: is a folder; -o takes the ARPA file to write (e.g. {out / 'lm.arpa'})")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LMError(f"{output}: {parent} is a file, not a folder")
            break
    if order > KENLM_MAX_ORDER:
        return (
            f"a {order}-gram: asr's decoder (--lm) reads up to {KENLM_MAX_ORDER}-grams and will refuse this file; "
            f"--order {KENLM_MAX_ORDER} or less to decode with it"
        )
    return None


def cmd_build(args: argparse.Namespace) -> int:
    import sys

    from asr.decoding.ngram import build_kneser_ney, read_sentences, units, write_arpa

    warning = check_build(args.output, args.order, args.unit)
    if warning:
        print(f"asr: warning: {warning}", file=sys.stderr)
    tokenizer = None
    if args.model is not None:
        from asr.model.file import load_model

        tokenizer = load_model(args.model, "cpu").tokenizer
    sentences = [units(s, args.unit) for s in read_sentences(args.text, tokenizer)]
    model = build_kneser_ney(sentences, args.order)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_arpa(model, args.output)
    sizes = ", ".join(f"{len(model.probs[n])} {n}-grams" for n in range(1, args.order + 1))
    print(f"{args.output}: {args.unit} {args.order}-gram from {len(sentences)} sentences ({sizes})")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from asr.cli import device
    from asr.evaluation.lm_tuning import tune_lm
    from asr.model.file import load_model

    model = load_model(args.model, device(args.device))
    out = tune_lm(
        model,
        args.manifest,
        args.lm,
        args.output,
        lexicon=args.lexicon,
        lm_weights=_range(args.lm_weights, "--lm-weights"),
        word_scores=_range(args.word_scores, "--word-scores"),
        search=args.search,
        trials=args.trials,
        beam_size=args.beam_size,
        beam_threshold=args.beam_threshold,
        max_batch_seconds=args.max_batch_seconds,
        seed=args.seed,
    )
    print(
        f"greedy WER {100 * out['dev_greedy_wer']:.2f} %, best LM WER {100 * out['dev_wer']:.2f} % at lm_weight "
        f"{out['lm_weight']:g}, word_score {out['word_score']:g} ({out['points']} points) -> {args.output}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asr lm",
        description="n-gram language models for beam-search decoding.",
        formatter_class=DefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build", help="build an ARPA n-gram LM (modified Kneser-Ney) from text", formatter_class=DefaultsHelpFormatter
    )
    b.add_argument("text", nargs="+", help="text files, one sentence a line (.gz ok), or .jsonl manifests")
    b.add_argument("-o", "--output", required=True, metavar="FILE", help="the ARPA file to write (.arpa, or .arpa.gz)")
    b.add_argument(
        "--order",
        type=int,
        default=3,
        help="n-gram order: 3-5 suits --unit word, 5-6 --unit char; asr's decoder reads up to 6-grams, so a char LM "
        "above 6 is refused and a word LM above 6 is built with a warning (at most 10)",
    )
    b.add_argument(
        "--unit",
        choices=("word", "char"),
        default="word",
        help="word LM (for lexicon decoding) or character LM (for lexicon-free decoding)",
    )
    b.add_argument("--model", help="a model.pt: refuse text with characters this model cannot emit")
    b.set_defaults(func=cmd_build)

    t = sub.add_parser(
        "tune", help="search the LM weight and word score on a dev manifest", formatter_class=DefaultsHelpFormatter
    )
    t.add_argument("--model", required=True, help="a model.pt written by `asr train`")
    t.add_argument("--manifest", required=True, help="dev manifest (never the test set)")
    t.add_argument("--lm", required=True, help="ARPA file")
    t.add_argument("--lexicon", help="words the decoder may emit (default: the LM's vocabulary)")
    t.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="JSON file with the best parameters (--lm-params)"
    )
    t.add_argument(
        "--search", choices=("grid", "random"), default="grid", help="every point of the ranges, or --trials"
    )
    t.add_argument("--lm-weights", default="0.5:3:0.5", help="LM weight range START:STOP:STEP (inclusive)")
    t.add_argument("--word-scores", default="-1:3:1", help="word score range START:STOP:STEP (inclusive)")
    t.add_argument("--trials", type=int, default=40, help="points to try with --search random")
    t.add_argument("--beam-size", type=int, default=32, help="hypotheses kept per frame")
    t.add_argument("--beam-threshold", type=float, default=25.0, help="prune hypotheses this far below the best")
    t.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    t.add_argument("--max-batch-seconds", type=float, default=300.0, help="padded audio seconds per batch")
    t.add_argument("--seed", type=int, default=0, help="seed of --search random")
    t.set_defaults(func=cmd_tune)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
