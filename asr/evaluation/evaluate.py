"""`asr evaluate`: transcribe a manifest and score it (WER, CER, error counts, per-utterance report).

The headline figures cannot flatter: what could not be scored is counted against the model or fails the command.

* An utterance whose audio cannot be read (missing, empty, corrupt file) counts as **all deletions**: every word
  and character of its reference is an error, so the WER is over the whole manifest, as if the model had said
  nothing. The summary says how many (``3 of 300 utterances unreadable, counted as deletions``), the report lists
  each one with its reason, and ``asr evaluate`` exits 1 unless ``--allow-unreadable`` is given.
* An utterance whose audio was read only in part (a compressed file that breaks off: ``asr transcribe`` warns
  on it) is scored on what was read, which charges the missing words to the model; so it is counted and listed
  too (``1 of 300 utterances read only in part ...``, ``num_read_warnings``, ``read_warnings`` in the report),
  ``complete`` is false, and ``asr evaluate`` exits 1 unless ``--allow-unreadable`` is given.
* A manifest line that is broken (not JSON, a key missing or mistyped) has no reference that can be trusted, so it
  cannot enter the figures: it is listed in the report as a broken line and ``asr evaluate`` exits 1 whatever the
  flags say; fix the manifest (``asr manifest`` validates one).
* Nothing to score (an empty manifest, every line broken, every reference empty) raises
  :class:`~asr.evaluation.metrics.NoReferenceError` (``asr evaluate`` exits 2): a WER over no reference words is undefined,
  never 0 %.

NeMo and ESPnet fail on an unreadable file; counting instead lets a long evaluation finish and still report
a figure that is an upper bound on the true one, not a lower one.

The report (``--report``) is JSON without NaN or Infinity (a non-finite number from a manifest's extra fields
becomes ``null``), written atomically (a crash never leaves half a report), with the most frequent substitutions,
deletions and insertions of the utterances that were read, and each utterance's manifest duration and extra
manifest fields (speaker, id, ...) under ``extra``, so per-speaker figures need no joins. ``--report R.json`` also
writes ``R.html`` (:mod:`asr.evaluation.report_html`), the same data as a page to read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.data.manifest import read_manifest
from asr.data.tokenizer import normalize_text
from asr.decoding.greedy import Decoder
from asr.errors import UsageError
from asr.evaluation.metrics import ErrorBreakdown, ErrorRates, NoReferenceError
from asr.inference.transcribe import DEFAULT_VAD, transcribe
from asr.model.card import build_card, card_of, with_evaluation, write_card_file
from asr.model.file import LoadedModel, rewrite_metadata, sha256_of

TOP_ERRORS = 20


@dataclass
class Evaluation:
    rates: ErrorRates
    utterances: list[dict[str, Any]] = field(default_factory=list)
    # Utterances whose audio could not be read (counted as deletions): source, audio_filepath, reference, error.
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    # Manifest lines that could not be parsed (not scored): "file:line: reason".
    broken_lines: list[str] = field(default_factory=list)
    # Utterances whose audio was read only in part (scored on what was read): source, audio_filepath, warnings.
    read_warnings: list[dict[str, Any]] = field(default_factory=list)
    breakdown: ErrorBreakdown = field(default_factory=ErrorBreakdown)

    @property
    def skipped(self) -> list[str]:
        """Everything that was not transcribed, one message each (broken lines, then unreadable audio)."""
        return self.broken_lines + [f"{u['source']}: {u['error']}" for u in self.unreadable]

    @property
    def complete(self) -> bool:
        """True when every manifest line was parsed and every audio file read, each to its end."""
        return not self.unreadable and not self.broken_lines and not self.read_warnings

    def summary(self) -> dict[str, Any]:
        w, c = self.rates.words, self.rates.chars
        return {
            "wer": self.rates.wer,
            "cer": self.rates.cer,
            "exact_match": self.rates.exact_match,
            "substitutions": w.substitutions,
            "deletions": w.deletions,
            "insertions": w.insertions,
            "reference_words": w.reference_length,
            "char_substitutions": c.substitutions,
            "char_deletions": c.deletions,
            "char_insertions": c.insertions,
            "reference_chars": c.reference_length,
            "num_utterances": self.rates.utterances,
            "num_unreadable": len(self.unreadable),
            "num_broken_lines": len(self.broken_lines),
            "num_read_warnings": len(self.read_warnings),
            "complete": self.complete,
        }

    def summary_lines(self) -> list[str]:
        """The human-readable summary that `asr evaluate` prints."""
        s = self.summary()
        lines = [
            f"WER {100 * s['wer']:.2f} %  ({s['substitutions']} sub, {s['deletions']} del, {s['insertions']} ins "
            f"/ {s['reference_words']} words)",
            f"CER {100 * s['cer']:.2f} %  ({s['char_substitutions']} sub, {s['char_deletions']} del, "
            f"{s['char_insertions']} ins / {s['reference_chars']} chars)",
            f"utterances {s['num_utterances']}, exact match {100 * s['exact_match']:.2f} %",
        ]
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} of {s['num_utterances']} utterances unreadable, counted as deletions")
        if self.read_warnings:
            lines.append(
                f"{len(self.read_warnings)} of {s['num_utterances']} utterances read only in part (the audio breaks "
                "off), scored on what was read"
            )
        if self.broken_lines:
            lines.append(f"{len(self.broken_lines)} broken manifest lines, not scored")
        return lines

    def report(self) -> dict[str, Any]:
        return {
            **self.summary(),
            **self.breakdown.top(TOP_ERRORS),
            "unreadable": self.unreadable,
            "read_warnings": self.read_warnings,
            "broken_lines": self.broken_lines,
            "utterances": self.utterances,
        }


def evaluate(
    loaded: LoadedModel,
    manifest: str | os.PathLike,
    max_batch_seconds: float = 300.0,
    bf16: bool = False,
    decoder: Decoder | None = None,
    hotwords: Any = None,
    vad: str = DEFAULT_VAD,
) -> Evaluation:
    """Score ``loaded`` on ``manifest``; unreadable audio counts as deletions, broken lines are listed.

    ``hotwords``: as :func:`asr.inference.transcribe.transcribe` takes them. ``vad``: the voice-activity detector
    that trims each utterance to its speech, as `asr transcribe` does (``none``: every utterance whole, as scored
    before short files were gated).
    Raises :class:`NoReferenceError` (before transcribing anything) when the manifest has no reference word to
    score; see the module docstring for the accounting.
    """
    broken: list[str] = []
    utts = read_manifest(manifest, strict=False, errors=broken)
    refs = [normalize_text(u.text) for u in utts]
    if not any(r.split() for r in refs):
        if not utts and not broken:
            why = "the manifest has no utterance"
        elif not utts:
            why = f"all {len(broken)} lines are broken (first: {broken[0]})"
        else:
            why = f"all {len(utts)} references are empty" + (f" and {len(broken)} lines broken" if broken else "")
        raise NoReferenceError(f"{manifest}: nothing to score: {why}; a WER over no reference words is undefined")

    result = Evaluation(ErrorRates(), broken_lines=broken)
    transcripts = transcribe(
        loaded,
        [u.audio_filepath for u in utts],
        max_batch_seconds=max_batch_seconds,
        bf16=bf16,
        decoder=decoder,
        hotwords=hotwords,
        vad=vad,
        word_timestamps=False,  # scoring needs the text only
    )
    for u, ref, t in zip(utts, refs, transcripts):
        entry: dict[str, Any] = {
            "source": u.source,
            "audio_filepath": u.audio_filepath,
            "duration": u.duration,
            "reference": ref,
        }
        if t.error is not None:
            w, c = result.rates.add_unreadable(ref)
            result.unreadable.append({**entry, "error": t.error})
            entry.update(hypothesis=None, error=t.error)
        else:
            hyp = t.text or ""
            w, c = result.rates.add(ref, hyp)
            result.breakdown.add(ref, hyp)
            entry["hypothesis"] = hyp
            if t.warnings:
                result.read_warnings.append(
                    {"source": u.source, "audio_filepath": u.audio_filepath, "warnings": list(t.warnings)}
                )
                entry["warnings"] = list(t.warnings)
            if t.low_confidence:  # the model is unsure of it; the audio itself was read whole
                entry["low_confidence"] = t.low_confidence
        entry.update(
            {
                "word_errors": w.total,
                "reference_words": w.reference_length,
                "substitutions": w.substitutions,
                "deletions": w.deletions,
                "insertions": w.insertions,
                "char_errors": c.total,
                "reference_chars": c.reference_length,
            }
        )
        if u.extra:
            entry["extra"] = u.extra
        result.utterances.append(entry)
    return result


def decoding_record(decoder: Decoder | None, **extra: Any) -> dict[str, Any]:
    """How a report's hypotheses were decoded, with absolute file paths, so that two reports can be compared:
    ``{"name": "greedy"}``, or the beam search's mode, LM and lexicon files and weights (``extra``, e.g. the
    ``lm_params`` file the weights came from, is added as given)."""
    if decoder is None:
        record: dict[str, Any] = {"name": "greedy"}
    else:
        describe = getattr(decoder, "info", None)
        record = dict(describe()) if describe else {"name": type(decoder).__name__}
        for key, attribute in (("lm", "lm_path"), ("lexicon", "lexicon_path")):  # info() names files without folders
            value = getattr(decoder, attribute, None)
            if value is not None:
                record[key] = os.path.abspath(value)
    record.update({k: os.path.abspath(v) if k.endswith(("lm_params", "_file")) and v else v for k, v in extra.items()})
    return record


def provenance(
    loaded: LoadedModel, manifest: str | os.PathLike, decoder: Decoder | None = None, **decoding: Any
) -> dict[str, Any]:
    """What a report was made from: the model file (absolute path and SHA-256), the manifest, the decoding and
    the asr version; the first keys of ``report.json``."""
    from asr import __version__

    path = loaded.path
    return {
        "model": path,
        "model_sha256": sha256_of(path) if path and os.path.isfile(path) else None,
        "manifest": os.path.abspath(manifest),
        "decoding": decoding_record(decoder, **decoding),
        "asr_version": __version__,
    }


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by ``None``, so it serialises as strict JSON.

    Python's json module reads and writes ``NaN``, which most other JSON readers reject; a manifest may carry one
    in its extra fields.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def report_data(evaluation: Evaluation, **extra: Any) -> dict[str, Any]:
    """The report as plain JSON-safe data: ``extra`` (model, manifest, ...) first, then :meth:`Evaluation.report`.

    The JSON file and the HTML page (:mod:`asr.evaluation.report_html`) are both written from it, so they never disagree.
    """
    return json_safe({**extra, **evaluation.report()})


def write_report(evaluation: Evaluation, path: str | os.PathLike, **extra: Any) -> None:
    """Write the JSON report atomically: to a temporary file beside ``path``, then renamed over it."""
    text = json.dumps(report_data(evaluation, **extra), indent=2, ensure_ascii=False, allow_nan=False)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def update_card(
    model_path: str | os.PathLike, manifest: str | os.PathLike, evaluation: Evaluation, decoder: str
) -> Path:
    """Record ``evaluation`` (WER, CER, utterances, the decoder) in the card of the model file at ``model_path``,
    under the manifest's file name, and rewrite ``MODEL_CARD.md`` beside it; returns that file's path. A model
    without a card (trained before cards) gets one holding just this figure."""
    path = str(model_path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: --update-card needs a model file on disk (not a name or URL)")
    s = evaluation.summary()

    def update(metadata: dict[str, Any]) -> dict[str, Any]:
        card = card_of(metadata) or build_card(name=Path(path).resolve().parent.name, train=[])
        card = with_evaluation(
            card,
            os.path.basename(str(manifest)),
            s["wer"],
            s["cer"],
            s["num_utterances"],
            decoder,
            complete=evaluation.complete,
        )
        return {**metadata, "card": card}

    metadata = rewrite_metadata(path, update)
    return write_card_file(path, metadata["card"])
