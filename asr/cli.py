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
    from asr.checkpointing import CheckpointWriteError
    from asr.config import load_config
    from asr.train import TrainingStopped, train

    overrides = list(args.overrides)
    epochs_given = args.max_epochs is not None or any(o.split("=", 1)[0].strip() == "trainer.max_epochs"
                                                      for o in args.overrides)
    if args.max_epochs is not None:
        overrides.append(f"trainer.max_epochs={args.max_epochs}")
    if args.max_minutes is not None:
        overrides.append(f"trainer.max_minutes={args.max_minutes}")
        if not epochs_given:  # a time budget given on the command line is the run's length
            overrides.append("trainer.max_epochs=-1")
    config = load_config(args.config, overrides)
    if args.max_minutes is not None and not epochs_given:
        capped = load_config(args.config, list(args.overrides)).trainer.max_epochs
        if capped != -1:
            logging.getLogger("asr").info("--max-minutes %g without --max-epochs: the config's epoch cap "
                                          "(trainer.max_epochs=%d) is lifted; training runs to the time budget",
                                          args.max_minutes, capped)
    resume = args.resume_from or args.resume
    try:
        path = train(config, args.train_manifest, args.val_manifest, args.output_dir, resume=resume,
                     init_from=args.init_from)
    except TrainingStopped as e:  # Ctrl-C (130) or SIGTERM (143), after saving last.ckpt
        print(f"asr: {e}", file=sys.stderr)
        return e.exit_code
    except CheckpointWriteError as e:
        raise UserError(str(e)) from None
    print(path)
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.model_file import load_model
    from asr.transcribe import transcribe

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.evaluate import evaluate, write_report
    from asr.metrics import NoReferenceError
    from asr.model_file import load_model

    loaded = load_model(args.model, _device(args.device))
    try:
        result = evaluate(loaded, args.manifest, max_batch_seconds=args.max_batch_seconds, bf16=args.bf16)
    except NoReferenceError as e:
        raise UserError(str(e)) from None
    for line in result.summary_lines():
        print(line)
    for line in result.broken_lines[:10]:
        print(f"broken line: {line}", file=sys.stderr)
    for u in result.unreadable[:10]:
        print(f"unreadable: {u['source']}: {u['error']}", file=sys.stderr)
    if len(result.broken_lines) > 10 or len(result.unreadable) > 10:
        print(f"... {len(result.skipped)} in all; --report lists every one", file=sys.stderr)
    if args.report:
        write_report(result, args.report, model=str(args.model), manifest=str(args.manifest))
        print(f"report: {args.report}")
    if result.broken_lines:
        print(f"asr: error: {args.manifest}: {len(result.broken_lines)} broken lines were not scored",
              file=sys.stderr)
        return 1
    if result.unreadable and not args.allow_unreadable:
        print(f"asr: error: {len(result.unreadable)} audio files could not be read (counted as deletions; "
              "--allow-unreadable to accept that)", file=sys.stderr)
        return 1
    return 0


EVALUATE_EPILOG = (
    "Audio that cannot be read counts as all deletions in WER/CER (the summary says how many, the report lists "
    "them) and makes the exit status 1 unless --allow-unreadable. Broken manifest lines are not scored and make "
    "it 1 always. A manifest with no reference word at all (empty, all lines broken, all references empty) is an "
    "error (exit status 2), never 0 %.")


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
    t.add_argument("--max-epochs", type=int, help="epochs in all, a resumed run included (-1: no cap; then "
                   "--max-minutes is needed)")
    t.add_argument("--max-minutes", type=float,
                   help="TOTAL training-time budget in minutes, summed over resumes (the time trained is kept in "
                        "the checkpoints); the learning-rate schedule ends at it. Given without --max-epochs it "
                        "lifts the config's epoch cap (trainer.max_epochs), so the run uses the whole budget "
                        "whatever the dataset's size; give --max-epochs too to keep a cap. Resuming with a larger "
                        "value spreads the rest of the schedule over the extra time without raising the "
                        "learning rate")
    t.add_argument("--init-from", metavar="MODEL.pt",
                   help="start from the weights of a trained model (fine-tuning): tensors whose names and shapes "
                        "match are loaded, the output layer is re-initialised if the vocabulary differs, and the "
                        "config's feature settings must be the model's. The config's optim.lr (usually lower) "
                        "applies; optim.freeze_layers/freeze_steps freeze the lowest layers for a while")
    t.add_argument("--resume", action="store_true",
                   help="resume from OUTPUT_DIR/checkpoints/last.ckpt (written at every epoch end and whenever "
                        "training stops: time budget, Ctrl-C, SIGTERM), with the next batch of the same epoch")
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
            s.add_argument("files", nargs="+")
            s.add_argument("--format", choices=("text", "json"), default="text")
        else:
            s.add_argument("--manifest", required=True)
            s.add_argument("--report", help="write a JSON report with per-utterance results")
            s.add_argument("--allow-unreadable", action="store_true",
                           help="exit 0 even if some audio could not be read (it still counts as deletions)")
            s.epilog = EVALUATE_EPILOG

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
