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
from asr.errors import ASRError, UsageError
from asr.help_format import DefaultsHelpFormatter

QUIET_FLAGS = ("-q", "--quiet")


def device(name: str) -> str:
    """``--device``: auto picks CUDA when there is a GPU; a CUDA device that is not there is a one-line error
    here, not a 27-line traceback from inside torch."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.split(":", 1)[0] == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise UsageError(f"--device {name}: CUDA is not available ({why}); use --device cpu, or auto")
        index = name.split(":", 1)[1] if ":" in name else "0"
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 ...)")
    else:
        try:
            torch.device(name)
        except (RuntimeError, ValueError):
            raise UsageError(f"--device {name}: not a device (auto, cpu, cuda, cuda:1, ...)") from None
    return name


def cmd_export(args: argparse.Namespace) -> int:
    from asr.model.export import export_model

    paths = export_model(args.model, args.format, args.output, int8=args.int8)
    for path in paths:
        print(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from asr import openmp

    openmp.set_for_training()  # first: torch reads it when it loads (asr.openmp says why)
    from asr.training.config import load_config
    from asr.training.train import TrainingStopped, train

    overrides = list(args.overrides)
    epochs_given = args.max_epochs is not None or any(
        o.split("=", 1)[0].strip() == "trainer.max_epochs" for o in args.overrides
    )
    if args.max_epochs is not None:
        overrides.append(f"trainer.max_epochs={args.max_epochs}")
    if args.max_minutes is not None:
        overrides.append(f"trainer.max_minutes={args.max_minutes}")
        if not epochs_given:  # a time budget given on the command line is the run's length
            overrides.append("trainer.max_epochs=-1")
    config = load_config(args.config, overrides)
    if args.train_shards:  # set here, not as an override: a pipe: command is no YAML value
        config.data.train_shards = args.train_shards
    if args.print_config:  # the configuration this run would use, as YAML: to check it, or to start a recipe from
        import yaml

        sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    missing = [
        flag
        for flag, value in (
            ("--train-manifest", args.train_manifest),
            ("--val-manifest", args.val_manifest),
            ("-o/--output-dir", args.output_dir),
        )
        if value is None
    ]
    if missing:
        raise UsageError(f"asr train needs {', '.join(missing)} (or --print-config to show the configuration)")
    if args.max_minutes is not None and not epochs_given:
        capped = load_config(args.config, list(args.overrides)).trainer.max_epochs
        if capped != -1:
            logging.getLogger("asr").info(
                "--max-minutes %g without --max-epochs: the config's epoch cap "
                "(trainer.max_epochs=%d) is lifted; training runs to the time budget",
                args.max_minutes,
                capped,
            )
    card = {k: v for k, v in (("domain", args.domain), ("data_licence", args.data_licence)) if v is not None}
    if card:  # set directly, not as YAML overrides: a licence name like "yes" or "1.0" stays a string
        import dataclasses

        config = dataclasses.replace(config, card=dataclasses.replace(config.card, **card))
    resume = args.resume_from or args.resume
    try:
        path = train(
            config,
            args.train_manifest,
            args.val_manifest,
            args.output_dir,
            resume=resume,
            init_from=args.init_from,
            overwrite=args.overwrite,
        )
    except TrainingStopped as e:  # Ctrl-C (130) or SIGTERM (143), after saving last.ckpt
        print(f"asr: {e}", file=sys.stderr)
        return e.exit_code
    print(path)
    return 0


def _decoder_from_args(args: argparse.Namespace, loaded):  # -> asr.decoding.greedy.Decoder | None
    """Beam search with an LM when ``--lm`` is given (:mod:`asr.decoding.beam_search`), else None: greedy decoding."""
    from asr.cli.lm import decoder_from_args

    return decoder_from_args(args, loaded.tokenizer)


def _transcribe_inputs(args: argparse.Namespace) -> tuple[list[str], dict[str, str], list[str]]:
    """The files to transcribe (arguments, then --input-list lines; directories searched recursively), the
    output name of each (relative to --output-dir), and one line per non-audio file skipped in a directory."""
    import os

    from asr.data.audio import find_audio_files

    items = list(args.files)
    if args.input_list:
        try:
            with open(args.input_list, encoding="utf-8") as f:
                items += [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        except OSError as e:
            raise UsageError(f"{args.input_list}: cannot read the input list ({e.strerror})") from None
    if not items:
        raise UsageError("no input files: give audio files or directories, or --input-list FILE")
    paths, names, skipped = [], {}, []
    for item in items:
        if os.path.isdir(item):
            audio, other = find_audio_files(item)
            skipped += [f"{p}: not an audio file (by its extension); skipped" for p in other]
            for p in audio:
                paths.append(p)
                names.setdefault(p, os.path.splitext(os.path.relpath(p, item))[0])
        else:
            paths.append(item)
            names.setdefault(item, os.path.splitext(os.path.basename(item))[0])
    return paths, names, skipped


def cmd_transcribe(args: argparse.Namespace) -> int:
    import os

    from asr.data.audio import display_path
    from asr.inference.formats import text_line, write_result
    from asr.inference.segmentation import SegmentationConfig
    from asr.inference.transcribe import Transcriber
    from asr.model.file import load_model

    if args.stream or args.mic:
        return cmd_transcribe_stream(args)
    paths, names, skipped = _transcribe_inputs(args)
    for line in skipped:
        print(f"asr: {line}", file=sys.stderr)
    extension = {"text": "txt"}.get(args.format, args.format)
    outputs: dict[str, str] = {}
    if args.output_dir:
        clash: dict[str, str] = {}
        for p in paths:
            out = os.path.join(args.output_dir, f"{names[p]}.{extension}")
            if out in clash and clash[out] != p:
                raise UsageError(f"{clash[out]} and {p} would both be written to {out}; transcribe them separately")
            clash[out], outputs[p] = p, out
    elif args.format in ("srt", "vtt", "tsv") and len(paths) > 1:
        raise UsageError(f"--format {args.format} with several inputs needs --output-dir (one file per input)")
    segmentation = SegmentationConfig(max_segment_seconds=args.max_segment_seconds)
    loaded = load_model(args.model, device(args.device))
    _show_card(loaded)
    transcriber = Transcriber(
        loaded,
        max_batch_seconds=args.max_batch_seconds,
        bf16=args.bf16,
        decoder=_decoder_from_args(args, loaded),
        segmentation=segmentation,
        vad=args.vad,
        word_timestamps=args.format != "text",
        no_speech_threshold=args.no_speech_threshold,
    )
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    failures = 0
    for t in transcriber.run(paths, progress=progress):
        for w in [*t.warnings, *([t.low_confidence] if t.low_confidence else [])]:
            print(f"asr: warning: {w}", file=sys.stderr)
        if t.error is not None:
            failures += 1
            print(f"asr: error: {t.error}", file=sys.stderr)
            if args.format == "json" and not args.output_dir:
                print(json.dumps({"path": display_path(t.path), "error": t.error}, ensure_ascii=False))
            continue
        if args.output_dir:
            os.makedirs(os.path.dirname(outputs[t.path]) or ".", exist_ok=True)
            with open(outputs[t.path], "w", encoding="utf-8") as f:
                f.write(write_result(t.to_dict(), args.format))
        elif args.format == "text":
            print(text_line(t.path, t.text))
        else:
            sys.stdout.write(write_result(t.to_dict(), args.format))
        sys.stdout.flush()
    if len(paths) > 1 or skipped:
        logging.getLogger("asr").info(
            "transcribed %d of %d files (%d failed, %d non-audio skipped)",
            len(paths) - failures,
            len(paths),
            failures,
            len(skipped),
        )
    return 1 if failures else 0


def _show_card(loaded) -> None:
    """The model card's one line on stderr (never stdout, which carries the transcripts), unless -q."""
    from asr.model.card import card_of, summary_line

    card = card_of(loaded.metadata)
    logging.getLogger("asr").info(
        "%s", summary_line(card) if card else "model: no model card (trained before asr wrote them)"
    )


def add_stream_options(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("streaming (see docs/streaming.md)")
    g.add_argument(
        "--stream",
        action="store_true",
        help="recognise one FILE, or raw s16le mono PCM from standard input (-), as it arrives: one line per "
        "segment closed at a pause (on a terminal, the open segment's partial text is rewritten in place)",
    )
    g.add_argument(
        "--mic", action="store_true", help="stream from the default microphone (pip install 'asr-rnn-ctc[mic]')"
    )
    g.add_argument("--realtime", action="store_true", help="feed the input no faster than real time")
    g.add_argument("--rate", type=int, help="sample rate of raw PCM on standard input (default: the model's)")
    g.add_argument("--chunk-ms", type=float, default=100.0, help="audio per step (default 100 ms)")
    g.add_argument(
        "--endpoint-silence-ms",
        type=float,
        default=800.0,
        help="close a segment (print its line, start the next afresh) after this long a pause: no new letter "
        "in the best path, or quiet audio (default 800; 0: never, the whole stream is one segment, exactly "
        "the offline result)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for streaming (default 1: steps of a few frames gain nothing from more, "
        "and on a busy CPU two threads were 20x slower)",
    )


def cmd_transcribe_stream(args: argparse.Namespace) -> int:
    """``asr transcribe --stream FILE|-`` and ``--mic``: partial results while the audio arrives."""
    from asr.inference import streaming
    from asr.model.file import load_model

    if args.mic == bool(args.files) or len(args.files) > 1:
        raise UsageError("--stream takes exactly one FILE or - (standard input); --mic takes none")
    if args.rate is not None and not 1000 <= args.rate <= 384000:
        raise UsageError(f"--rate {args.rate}: not a usable sample rate (1000-384000 Hz)")
    if args.chunk_ms <= 0:
        raise UsageError(f"--chunk-ms {args.chunk_ms}: must be positive")
    if not args.endpoint_silence_ms >= 0 or args.endpoint_silence_ms == float("inf"):
        raise UsageError(f"--endpoint-silence-ms {args.endpoint_silence_ms}: must be 0 (never) or a positive number")
    endpoint_s = args.endpoint_silence_ms / 1000 if args.endpoint_silence_ms else None
    import torch

    torch.set_num_threads(max(1, args.threads))
    loaded = load_model(args.model, device(args.device))
    _show_card(loaded)
    sr = loaded.model.sample_rate
    chunk = max(1, int(round(sr * args.chunk_ms / 1000)))
    recognizer, note = streaming.open_stream(loaded, _decoder_from_args(args, loaded), endpoint_silence_s=endpoint_s)
    if note:
        print(f"asr: {note}", file=sys.stderr)
    else:
        pause = f"after {args.endpoint_silence_ms:g} ms of pause" if endpoint_s else "never (one segment)"
        print(f"asr: streaming exactly; {streaming.lookahead_note(loaded)}; segments close {pause}", file=sys.stderr)
    if args.mic:
        source = streaming.mic_chunks(sr, chunk)
    elif args.files[0] == "-":
        source = streaming.pcm_chunks(
            sys.stdin.buffer, args.rate or sr, sr, chunk, warn=lambda m: print(f"asr: warning: {m}", file=sys.stderr)
        )
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
    return 0


def _partial_printer(fmt: str):
    """Prints each closed segment as a line, and the open segment's text as it changes: on a terminal rewriting
    the last line, in JSON as ``partial`` lines (then ``segment`` lines, and a ``final`` one with the whole
    text); into a pipe or file as text, only the segments' lines (one, possibly empty, at the least)."""
    import shutil

    from asr.inference.streaming import Final

    tty = sys.stdout.isatty()
    last = [""]  # an empty partial is not worth a line
    lines = [0]

    def show(result) -> None:
        final = isinstance(result, Final)
        for segment in result.closed:
            last[0] = ""
            if fmt == "json":
                print(json.dumps({"segment": segment.text, **segment.to_dict()}, ensure_ascii=False), flush=True)
            elif segment.text:
                print(f"\r{segment.text}\x1b[K" if tty else segment.text, flush=True)
                lines[0] += 1
        if final:
            if fmt == "json":
                print(
                    json.dumps({"final": result.text, "time": round(result.seconds, 3)}, ensure_ascii=False), flush=True
                )
            elif not lines[0]:
                print("\r\x1b[K" if tty else "", flush=True)
            return
        if result.open_text == last[0]:
            return
        last[0] = result.open_text
        if fmt == "json":
            partial = {"partial": result.open_text, "time": round(result.seconds, 3)}
            print(json.dumps(partial, ensure_ascii=False), flush=True)
        elif tty:  # the line's tail, so that it never wraps and \r can rewrite it
            width = max(10, shutil.get_terminal_size().columns - 1)
            print(f"\r{result.open_text[-width:]}\x1b[K", end="", flush=True)

    return show


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.evaluation.evaluate import evaluate, write_report
    from asr.model.file import load_model

    loaded = load_model(args.model, device(args.device))
    decoder = _decoder_from_args(args, loaded)
    result = evaluate(
        loaded,
        args.manifest,
        max_batch_seconds=args.max_batch_seconds,
        bf16=args.bf16,
        decoder=decoder,
        vad=args.vad,
    )
    for line in result.summary_lines():
        print(line)
    for line in result.broken_lines[:10]:
        print(f"broken line: {line}", file=sys.stderr)
    for u in result.unreadable[:10]:
        print(f"unreadable: {u['source']}: {u['error']}", file=sys.stderr)
    for u in result.read_warnings[:10]:
        print(f"read in part: {u['source']}: {'; '.join(u['warnings'])}", file=sys.stderr)
    if len(result.broken_lines) > 10 or len(result.unreadable) > 10 or len(result.read_warnings) > 10:
        print(f"... {len(result.skipped)} in all; --report lists every one", file=sys.stderr)
    if args.report:
        from asr.evaluation.evaluate import provenance, report_data
        from asr.evaluation.report_html import write_html_report

        made_from = provenance(
            loaded, args.manifest, decoder, **({"lm_params": args.lm_params} if args.lm_params else {})
        )
        write_report(result, args.report, **made_from)
        print(f"report: {args.report}")
        data = report_data(result, **made_from)
        print(f"report: {write_html_report(data, args.report, loaded)}")
    if args.update_card:
        from asr.evaluation.evaluate import update_card

        card_path = update_card(args.model, args.manifest, result, _decoder_name(args))
        print(f"model card: {card_path} (and {args.model})")
    if result.broken_lines:
        print(f"asr: error: {args.manifest}: {len(result.broken_lines)} broken lines were not scored", file=sys.stderr)
        return 1
    if result.unreadable and not args.allow_unreadable:
        print(
            f"asr: error: {len(result.unreadable)} audio files could not be read (counted as deletions; "
            "--allow-unreadable to accept that)",
            file=sys.stderr,
        )
        return 1
    if result.read_warnings and not args.allow_unreadable:
        print(
            f"asr: error: {len(result.read_warnings)} audio files were read only in part (scored on what was read; "
            "--allow-unreadable to accept that)",
            file=sys.stderr,
        )
        return 1
    return 0


def _decoder_name(args: argparse.Namespace) -> str:
    """How a figure was decoded, as the model card records it: greedy, or the LM file and its weights."""
    import os

    if args.lm is None:
        name = "greedy"
    else:
        name = f"beam search with {os.path.basename(args.lm)}"
        if args.lm_params:
            name += f" ({os.path.basename(args.lm_params)})"
    if getattr(args, "hotwords", None):
        name += f" + hotwords {os.path.basename(args.hotwords)}"
    return name


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from asr.serving.server import Limits, Recognizer, serve
    except ImportError as e:
        raise UsageError(f"asr serve needs the serve extra: pip install 'asr-rnn-ctc[serve]' ({e})") from None
    from asr.model.file import load_model

    if not 0 <= args.port <= 65535:  # checked before the model loads
        raise UsageError(f"--port must be 0-65535, got {args.port}")
    limits = Limits(
        max_upload_mb=args.max_upload_mb,
        max_duration=args.max_duration,
        max_concurrent=args.max_concurrent,
        max_queue=args.max_queue,
        timeout=args.timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
    )
    loaded = load_model(args.model, device(args.device))
    # Built before listening: a bad LM file is a one-line error at start-up, not a failure of the first request.
    recognizer = Recognizer(loaded, _decoder_from_args(args, loaded), no_speech_threshold=args.no_speech_threshold)
    serve(
        recognizer,
        args.host,
        args.port,
        limits,
        label=str(args.model),
        allow_origins=tuple(args.allow_origin),
        allow_hosts=tuple(args.allow_host),
    )
    return 0


EVALUATE_EPILOG = (
    "Audio that cannot be read counts as all deletions in WER/CER (the summary says how many, the report lists "
    "them) and makes the exit status 1 unless --allow-unreadable; so does audio read only in part (a file that "
    "breaks off: scored on what was read, counted and listed). Broken manifest lines are not scored and make "
    "it 1 always. A manifest with no reference word at all (empty, all lines broken, all references empty) is an "
    "error (exit status 2), never 0 %."
)


# Subcommands whose arguments are parsed by their own module's ``main(argv)``.
DELEGATED = {
    "synth": ("asr.corpora.synthetic", "build the offline synthetic-speech corpus (espeak-ng)"),
    "manifest": ("asr.corpora.corpus_check", "build a validated manifest from your own audio and transcripts"),
    "librispeech": ("asr.corpora.librispeech", "download and prepare LibriSpeech"),
    "speech-commands": ("asr.corpora.speech_commands", "download and prepare Speech Commands v2"),
    "lm": ("asr.cli.lm", "build an n-gram language model, tune its decoding weights"),
    "librispeech-lm": ("asr.corpora.librispeech_lm", "download LibriSpeech's official n-gram LM (OpenSLR 11)"),
    "curves": ("asr.training.curves", "draw a run's training curves from its logs/csv/metrics.csv"),
    "shard": ("asr.cli.shard", "pack a manifest's audio into tar shards (NeMo's tarred layout)"),
    "models": ("asr.cli.models", "fetch (by name or URL, checked), publish and describe shared models"),
}


def build_parser() -> argparse.ArgumentParser:
    from asr.cli.lm import add_lm_arguments  # one definition of the --lm options for transcribe/evaluate/serve
    from asr.inference.defaults import DEFAULT_MAX_BATCH_SECONDS, DEFAULT_MAX_SEGMENT_SECONDS, DEFAULT_VAD

    p = argparse.ArgumentParser(
        prog="asr",
        description="Recurrent-network CTC speech recognition.",
        epilog="Output flags: -o/--output-dir DIR for commands that write a folder (train, transcribe, synth), "
        "-o/--output FILE for those that write one file (manifest, lm build, lm tune, export).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"asr {__version__}")
    p.add_argument(
        *QUIET_FLAGS, action="store_true", help="only warnings and errors on stderr (here or after the command)"
    )
    common = argparse.ArgumentParser(add_help=False)  # options every subcommand takes, after its name too
    common.add_argument(
        *QUIET_FLAGS, action="store_true", default=argparse.SUPPRESS, help="only warnings and errors on stderr"
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=DefaultsHelpFormatter, parents=[common], **kwargs)

    t = command("train", help="train a model from manifests")
    t.add_argument("--config", help="YAML config (sections: features, model, tokenizer, data, augment, optim, trainer)")
    t.add_argument(
        "--train-manifest",
        metavar="JSONL",
        help="training utterances: JSON lines with audio_filepath, duration, text (asr manifest writes them); "
        "with --train-shards, the shards' manifest (tarred_audio_manifest.json)",
    )
    t.add_argument(
        "--train-shards",
        metavar="URLS",
        help="train from tar shards in NeMo's layout (asr shard), e.g. 'DIR/audio_{0..N}.tar': local paths, "
        "http(s):// or 'pipe:COMMAND' (pipe:aws s3 cp s3://B/audio_{0..N}.tar -); sets data.train_shards",
    )
    t.add_argument(
        "--val-manifest",
        metavar="JSONL",
        help="held-out utterances, scored (WER/CER) at each validation to pick the best checkpoints",
    )
    t.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        help="folder for model.pt, config.yaml, curves.png, checkpoints/ and logs/ (created if missing)",
    )
    t.add_argument(
        "--print-config",
        action="store_true",
        help="print the configuration (--config, then the overrides) as YAML and exit, training nothing",
    )
    t.add_argument(
        "--max-epochs",
        type=int,
        help="epochs in all, a resumed run included (-1: no cap; then --max-minutes is needed)",
    )
    t.add_argument(
        "--max-minutes",
        type=float,
        help="TOTAL training-time budget in minutes, summed over resumes (the time trained is kept in "
        "the checkpoints); the learning-rate schedule ends at it. Given without --max-epochs it "
        "lifts the config's epoch cap (trainer.max_epochs), so the run uses the whole budget "
        "whatever the dataset's size; give --max-epochs too to keep a cap. Resuming with a larger "
        "value spreads the rest of the schedule over the extra time without raising the "
        "learning rate",
    )
    t.add_argument(
        "--init-from",
        metavar="MODEL.pt",
        help="start from the weights of a trained model (fine-tuning): tensors whose names and shapes "
        "match are loaded, the output layer is re-initialised if the vocabulary differs, and the "
        "config's feature settings must be the model's. The config's optim.lr (usually lower) "
        "applies; optim.freeze_layers/freeze_steps freeze the lowest layers for a while",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="resume from OUTPUT_DIR/checkpoints/last.ckpt (written at every epoch end and whenever "
        "training stops: time budget, Ctrl-C, SIGTERM), with the next batch of the same epoch",
    )
    t.add_argument("--resume-from", metavar="CKPT", help="resume from this Lightning checkpoint")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in OUTPUT_DIR: its model.pt, checkpoints/, config.yaml, logs/ (and the other "
        "files a run writes) are deleted first; without it (or --resume) such a folder is refused",
    )
    t.add_argument(
        "--domain",
        metavar="TAG",
        help="what speech the model is for, in a few words, for its model card (card.domain), "
        "e.g. 'read English, close microphone'",
    )
    t.add_argument(
        "--data-licence",
        metavar="NAME",
        help="licence of the training data, for the model card (card.data_licence), e.g. CC-BY-4.0",
    )
    t.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    t.set_defaults(func=cmd_train)

    e = command("export", help="export a model to ONNX (optionally int8) or TorchScript")
    e.add_argument("--model", required=True, help="a model.pt written by `asr train`")
    e.add_argument("--format", default="onnx", help="onnx or torchscript")
    e.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of the recurrent and linear layers")
    e.add_argument(
        "-o",
        "--output",
        help="output file, or a folder to write it into (default: beside the model, e.g. model.onnx); a "
        "unidirectional model's streaming graph goes beside it as NAME.step.onnx",
    )
    e.set_defaults(func=cmd_export)

    for name, func, helptext in (
        ("transcribe", cmd_transcribe, "transcribe audio files"),
        ("evaluate", cmd_evaluate, "WER/CER of a model on a manifest"),
    ):
        s = command(name, help=helptext)
        s.add_argument("--model", required=True, help="a model.pt written by `asr train`")
        s.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
        s.add_argument(
            "--max-batch-seconds", type=float, default=DEFAULT_MAX_BATCH_SECONDS, help="padded audio seconds per batch"
        )
        s.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPUs; CPUs with bf16 units)")
        s.set_defaults(func=func)
        add_lm_arguments(s)
        if name == "transcribe":
            s.add_argument(
                "files",
                nargs="*",
                metavar="FILE_OR_DIR",
                help="audio files, or directories searched recursively for audio by extension",
            )
            s.add_argument("--input-list", metavar="FILE", help="a text file naming one input per line")
            s.add_argument(
                "--format",
                choices=("text", "json", "srt", "vtt", "tsv"),
                default="text",
                help="text: PATH<tab>TEXT lines on stdout (one .txt per input with --output-dir), PATH escaped "
                "so that each line is one file: a backslash, tab, newline or carriage return in it is written "
                "\\\\, \\t, \\n, \\r, a byte that is not UTF-8 as \\xNN; json: one object per input with "
                "segments and word times (a byte that is not UTF-8 in its path as \\xNN); srt/vtt: subtitles; tsv",
            )
            s.add_argument(
                "-o",
                "--output-dir",
                metavar="DIR",
                help="write one NAME.<format> file per input here (created if missing)",
            )
            s.add_argument(
                "--max-segment-seconds",
                type=float,
                default=DEFAULT_MAX_SEGMENT_SECONDS,
                help="longest piece of audio the model takes at once; longer speech is cut at pauses",
            )
            s.add_argument(
                "--vad",
                choices=("energy", "silero", "webrtc", "none"),
                default=DEFAULT_VAD,
                help="voice-activity detector that finds the pauses (none: cut by length only)",
            )
            s.add_argument(
                "--no-speech-threshold",
                type=float,
                default=None,
                metavar="P",
                help="drop segments whose no_speech_prob (the model's own blank posterior, in the json output) "
                "is above P, e.g. 0.4 (default: keep every segment with text)",
            )
            s.add_argument(
                "--progress",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="progress bar on stderr (default: when stderr is a terminal)",
            )
            add_stream_options(s)
        else:
            s.add_argument(
                "--manifest",
                required=True,
                metavar="JSONL",
                help="utterances to score: JSON lines with audio_filepath, duration and the reference text",
            )
            s.add_argument(
                "--report",
                metavar="R.json",
                help="write a JSON report with per-utterance results, and R.html beside it: WER by "
                "duration and speaker, aligned worst utterances, CTC posterior plots",
            )
            s.add_argument(
                "--update-card",
                action="store_true",
                help="record this WER/CER (and the decoder) in the model's card: model.pt's metadata and "
                "MODEL_CARD.md beside it, under the manifest's name (the model file is rewritten atomically)",
            )
            s.add_argument(
                "--vad",
                choices=("energy", "silero", "webrtc", "none"),
                default="energy",
                help="voice-activity detector that trims each utterance to its speech and gives silent ones an "
                "empty hypothesis, as `asr transcribe` does (none: every utterance whole)",
            )
            s.add_argument(
                "--allow-unreadable",
                action="store_true",
                help="exit 0 even if some audio could not be read (it still counts as deletions) or was read "
                "only in part (scored on what was read)",
            )
            s.epilog = EVALUATE_EPILOG

    s = command(
        "serve",
        help="serve a model over HTTP, with a page to record or drop audio",
        epilog="See docs/serve.md for the API. Binds to 127.0.0.1 unless --host says otherwise; "
        "the server has no authentication.",
    )
    s.add_argument("--model", required=True, help="a model.pt written by `asr train`")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    s.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    s.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload, MB (default: %(default)s)")
    s.add_argument(
        "--max-duration",
        type=float,
        default=600.0,
        help="longest audio per request or stream, seconds (default: %(default)s)",
    )
    s.add_argument("--max-concurrent", type=int, default=2, help="inferences at once (default: %(default)s)")
    s.add_argument(
        "--max-queue",
        type=int,
        default=32,
        help="requests waiting beyond those; more get 503 + Retry-After (default: %(default)s)",
    )
    s.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds for an upload to arrive and for its result (default: %(default)s)",
    )
    s.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="seconds a client may send nothing: for a request's headers, within an upload, between a stream's "
        "messages (default: %(default)s)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="open HTTP connections; past it the longest-idle one is closed (default: %(default)s)",
    )
    s.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages of ORIGIN (e.g. https://app.example) use the server from a browser; repeatable; '*' for "
        "any. Default: only the server's own pages",
    )
    s.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="answer to Host NAME too (a proxy's name); repeatable. Default on a loopback address: localhost, "
        "127.0.0.1, [::1] only (against DNS rebinding)",
    )
    s.add_argument(
        "--no-speech-threshold",
        type=float,
        default=None,
        metavar="P",
        help="drop the segments of an uploaded recording whose no_speech_prob is above P, as asr transcribe "
        "does (default: keep every segment with text)",
    )
    add_lm_arguments(s)
    s.set_defaults(func=cmd_serve)

    for name, (_, helptext) in DELEGATED.items():
        sub.add_parser(name, help=f"{helptext} (see `asr {name} --help`)", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # -q before or after the subcommand (not after "--", where everything is an argument)
    options = argv[: argv.index("--")] if "--" in argv else argv
    quiet = any(a in QUIET_FLAGS for a in options)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("lightning.pytorch").propagate = False  # it has its own handler
    rest = argv[1:] if argv and argv[0] in QUIET_FLAGS else argv
    try:
        if rest and rest[0] in DELEGATED:
            import importlib

            tail = rest[1:]
            cut = tail.index("--") if "--" in tail else len(tail)
            tail = [a for a in tail[:cut] if a not in QUIET_FLAGS] + tail[cut:]  # taken above, for every command
            return int(importlib.import_module(DELEGATED[rest[0]][0]).main(tail) or 0)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except ASRError as e:
        print(f"asr: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file or folder the user named: missing, unreadable, read-only, a full disk
        print(f"asr: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
