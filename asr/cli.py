"""The `asr` command: train, transcribe, evaluate, and data preparation.

Heavy imports (Lightning, librosa) happen inside each subcommand, so `asr --help` and `asr transcribe` start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from asr import __version__


class UserError(Exception):
    """An error caused by the user's input; printed as one line, without a traceback."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from asr.audio import AudioError
    from asr.config import ConfigError
    from asr.manifest import ManifestError
    from asr.model_file import ModelFileError
    from asr.tokenizer import OutOfVocabularyError

    return (UserError, AudioError, ConfigError, ManifestError, ModelFileError, OutOfVocabularyError,
            FileNotFoundError)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def cmd_train(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.train import train

    overrides = list(args.overrides)
    if args.max_epochs is not None:
        overrides.append(f"trainer.max_epochs={args.max_epochs}")
    if args.max_minutes is not None:
        overrides.append(f"trainer.max_minutes={args.max_minutes}")
    config = load_config(args.config, overrides)
    resume = args.resume_from or args.resume
    path = train(config, args.train_manifest, args.val_manifest, args.output_dir, resume=resume)
    print(path)
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.model_file import load_model
    from asr.transcribe import transcribe

    if args.stream or args.mic:
        return cmd_transcribe_stream(args)
    if not args.files:
        raise UserError("transcribe: no input files")
    loaded = load_model(args.model, _device(args.device))
    failures = 0
    for t in transcribe(loaded, args.files, max_batch_seconds=args.max_batch_seconds, bf16=args.bf16):
        if t.error is not None:
            failures += 1
            print(f"asr: error: {t.error}", file=sys.stderr)
            if args.format == "json":
                print(json.dumps({"path": t.path, "error": t.error}, ensure_ascii=False))
            continue
        if args.format == "json":
            print(json.dumps({"path": t.path, "text": t.text, "duration": round(t.duration or 0, 3)},
                             ensure_ascii=False))
        else:
            print(f"{t.path}\t{t.text}")
    return 1 if failures else 0


def add_stream_options(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("streaming (see docs/streaming.md)")
    g.add_argument("--stream", action="store_true",
                   help="recognise one FILE, or raw s16le mono PCM from standard input (-), as it arrives, "
                        "printing partial results as they change; the last line is the final text")
    g.add_argument("--mic", action="store_true", help="stream from the default microphone (pip install 'asr[mic]')")
    g.add_argument("--realtime", action="store_true", help="feed the input no faster than real time")
    g.add_argument("--rate", type=int, help="sample rate of raw PCM on standard input (default: the model's)")
    g.add_argument("--chunk-ms", type=float, default=100.0, help="audio per step (default 100 ms)")
    g.add_argument("--threads", type=int, default=1,
                   help="torch threads for streaming (default 1: steps of a few frames gain nothing from more, "
                        "and on a busy CPU two threads were 20x slower)")


def cmd_transcribe_stream(args: argparse.Namespace) -> int:
    """``asr transcribe --stream FILE|-`` and ``--mic``: partial results while the audio arrives."""
    from asr import streaming
    from asr.model_file import load_model

    if args.mic == bool(args.files) or len(args.files) > 1:
        raise UserError("--stream takes exactly one FILE or - (standard input); --mic takes none")
    if args.rate is not None and not 1000 <= args.rate <= 384000:
        raise UserError(f"--rate {args.rate}: not a usable sample rate (1000-384000 Hz)")
    if args.chunk_ms <= 0:
        raise UserError(f"--chunk-ms {args.chunk_ms}: must be positive")
    import torch

    torch.set_num_threads(max(1, args.threads))
    loaded = load_model(args.model, _device(args.device))
    sr = loaded.model.sample_rate
    chunk = max(1, int(round(sr * args.chunk_ms / 1000)))
    try:
        recognizer, note = streaming.open_stream(loaded)
        if note:
            print(f"asr: {note}", file=sys.stderr)
        if args.mic:
            source = streaming.mic_chunks(sr, chunk)
        elif args.files[0] == "-":
            source = streaming.pcm_chunks(sys.stdin.buffer, args.rate or sr, sr, chunk,
                                          warn=lambda m: print(f"asr: warning: {m}", file=sys.stderr))
        else:
            source = streaming.file_chunks(args.files[0], sr, chunk)
        if args.realtime:
            source = streaming.paced(source, sr)
        show = _partial_printer(args.format)
        try:
            for chunk_audio in source:
                show(recognizer.accept(chunk_audio))
        except KeyboardInterrupt:
            pass  # Ctrl-C ends a live stream: what was heard still gets its final result
        show(recognizer.finish())
    except streaming.StreamingError as e:
        raise UserError(str(e)) from None
    return 0


def _partial_printer(fmt: str):
    """Prints a result when its text changes (on a terminal, rewriting one line) and the final one always."""
    import shutil

    from asr.streaming import Final

    tty = sys.stdout.isatty()
    last = [""]  # an empty partial is not worth a line

    def show(result) -> None:
        final = isinstance(result, Final)
        if result.text == last[0] and not final:
            return
        last[0] = result.text
        if fmt == "json":
            print(json.dumps({"final" if final else "partial": result.text, "time": round(result.seconds, 3)},
                             ensure_ascii=False), flush=True)
        elif tty:  # the line's tail, so that it never wraps and \r can rewrite it
            width = max(10, shutil.get_terminal_size().columns - 1)
            text = result.text if final else result.text[-width:]
            print(f"\r{text}\x1b[K", end="\n" if final else "", flush=True)
        else:
            print(result.text, flush=True)

    return show


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.evaluate import evaluate, write_report
    from asr.model_file import load_model

    loaded = load_model(args.model, _device(args.device))
    result = evaluate(loaded, args.manifest, max_batch_seconds=args.max_batch_seconds, bf16=args.bf16)
    s = result.summary()
    print(f"WER {100 * s['wer']:.2f} %  ({s['substitutions']} sub, {s['deletions']} del, {s['insertions']} ins "
          f"/ {s['reference_words']} words)")
    print(f"CER {100 * s['cer']:.2f} %  ({s['char_substitutions']} sub, {s['char_deletions']} del, "
          f"{s['char_insertions']} ins / {s['reference_chars']} chars)")
    print(f"utterances {s['num_utterances']}, exact match {100 * s['exact_match']:.2f} %, "
          f"skipped {s['num_skipped']}")
    for line in result.skipped[:10]:
        print(f"skipped: {line}", file=sys.stderr)
    if args.report:
        write_report(result, args.report, model=str(args.model), manifest=str(args.manifest))
        print(f"report: {args.report}")
    return 0


# Subcommands whose arguments are parsed by their own module's ``main(argv)``.
DELEGATED = {
    "synth": ("asr.corpora.synthetic", "build the offline synthetic-speech corpus (espeak-ng)"),
    "manifest": ("asr.corpora.corpus_check", "build a validated manifest from your own audio and transcripts"),
    "librispeech": ("asr.corpora.librispeech", "download and prepare LibriSpeech"),
    "speech-commands": ("asr.corpora.speech_commands", "download and prepare Speech Commands v2"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr", description="Recurrent-network CTC speech recognition.")
    p.add_argument("--version", action="version", version=f"asr {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from manifests")
    t.add_argument("--config", help="YAML config (sections: features, model, tokenizer, data, augment, optim, trainer)")
    t.add_argument("--train-manifest", required=True)
    t.add_argument("--val-manifest", required=True)
    t.add_argument("--output-dir", required=True, help="model.pt, checkpoints/ and logs/ are written here")
    t.add_argument("--max-epochs", type=int)
    t.add_argument("--max-minutes", type=float, help="stop training after this many minutes")
    t.add_argument("--resume", action="store_true", help="resume from OUTPUT_DIR/checkpoints/last.ckpt")
    t.add_argument("--resume-from", metavar="CKPT", help="resume from this Lightning checkpoint")
    t.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    t.set_defaults(func=cmd_train)

    for name, func, helptext in (("transcribe", cmd_transcribe, "transcribe audio files"),
                                 ("evaluate", cmd_evaluate, "WER/CER of a model on a manifest")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--model", required=True, help="a model.pt written by `asr train`")
        s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
        s.add_argument("--max-batch-seconds", type=float, default=300.0, help="padded audio seconds per batch")
        s.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPUs; CPUs with bf16 units)")
        s.set_defaults(func=func)
        if name == "transcribe":
            s.add_argument("files", nargs="*")
            s.add_argument("--format", choices=("text", "json"), default="text")
            add_stream_options(s)
        else:
            s.add_argument("--manifest", required=True)
            s.add_argument("--report", help="write a JSON report with per-utterance results")

    for name, (_, helptext) in DELEGATED.items():
        sub.add_parser(name, help=f"{helptext} (see `asr {name} --help`)", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet = bool(argv) and argv[0] in ("-q", "--quiet")
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lightning.pytorch").propagate = False  # it has its own handler
    rest = argv[1:] if quiet else argv
    try:
        if rest and rest[0] in DELEGATED:
            import importlib

            return int(importlib.import_module(DELEGATED[rest[0]][0]).main(rest[1:]) or 0)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except _user_errors() as e:
        print(f"asr: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
