"""The model card: what a model was trained on and how well it did, inside ``model.pt`` and beside it.

A model that is shared travels without its training run, so the file has to say what it knows (Mitchell et al.,
"Model Cards for Model Reporting", 2019, in the small): the training data (manifest names, hours, utterances,
speakers, a domain tag and the data's licence, both given by the trainer), the held-out WER/CER of every set it
was evaluated on (``asr evaluate --update-card``; until then the last validation's), the decoder each figure was
measured with, the package version and commit that trained it, and the model it was fine-tuned from.

The card is a plain dict (JSON-able values only: the model file loads with ``weights_only=True``) stored as
``metadata["card"]``; :func:`render_markdown` writes it out as ``MODEL_CARD.md`` beside the model, which is the
page a model hub shows. :func:`summary_line` is the one line ``asr transcribe`` prints on stderr.

It also carries the model's own confidence on its validation set (the mean word confidence of
:mod:`asr.decoding.alignment`, per utterance, averaged), so that a transcript far less confident than that can be
flagged: speech unlike the training data is the usual reason a model is confidently wrong about everything, and
users should hear it from the model rather than find out (:func:`low_confidence_warning`).
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

CARD_VERSION = 1
CARD_FILE = "MODEL_CARD.md"
# A transcript whose mean word confidence is below this share of the validation average is flagged. On a
# 3-minute synth model (validation mean 0.76; docs/models.md) it flagged 8.7 % of held-out voices' files
# (37.6 % WER), 90 % of the same files time-reversed and 96 % at double speed.
LOW_CONFIDENCE_RATIO = 0.75
LOW_CONFIDENCE_MIN_WORDS = 2  # one or two words are too few to judge a whole file by


def dataset_summary(manifest: str | os.PathLike, utterances: Sequence[Any], domain: str | None = None) -> dict:
    """One training (or validation) set as the card describes it: manifest name (not its folder: a path on the
    trainer's disk means nothing elsewhere), hours, utterances, and speakers when the manifest has a ``speaker``."""
    speakers = {u.extra.get("speaker") for u in utterances if isinstance(getattr(u, "extra", None), dict)}
    speakers.discard(None)
    return {
        "manifest": os.path.basename(str(manifest)),
        "hours": round(sum(float(u.duration) for u in utterances) / 3600, 3),
        "utterances": len(utterances),
        "speakers": len(speakers) if speakers else None,
    }


def build_card(
    *,
    name: str,
    train: Sequence[dict],
    validation: dict | None = None,
    domain: str | None = None,
    data_licence: str | None = None,
    description: str | None = None,
    val_wer: float | None = None,
    val_cer: float | None = None,
    confidence: dict | None = None,
    pretrained_from: str | None = None,
    version: str | None = None,
    commit: str | None = None,
) -> dict[str, Any]:
    """A new card, as ``asr train`` writes it at the end of a run."""
    evaluations = []
    if val_wer is not None and validation is not None:
        evaluations.append(
            {
                "set": validation["manifest"],
                "split": "validation",
                "wer": val_wer,
                "cer": val_cer,
                "utterances": validation.get("utterances"),
                "decoder": "greedy",
                "date": _today(),
            }
        )
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "description": description,
        "domain": domain,
        "data_licence": data_licence,
        "train_data": list(train),
        "validation_data": validation,
        "evaluations": evaluations,
        "confidence": confidence,
        "pretrained_from": pretrained_from,
        "asr_version": version,
        "git_commit": commit,
    }


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def card_of(metadata: dict | None) -> dict | None:
    """The card in a model's metadata, or None for a model trained before cards existed."""
    card = (metadata or {}).get("card")
    return card if isinstance(card, dict) else None


def with_evaluation(
    card: dict, set_name: str, wer: float, cer: float, utterances: int, decoder: str, complete: bool = True
) -> dict:
    """The card with the held-out result on ``set_name`` recorded (replacing an earlier one on that set and
    decoder): what ``asr evaluate --update-card`` writes back."""
    entry = {
        "set": set_name,
        "split": "test",
        "wer": float(wer),
        "cer": float(cer),
        "utterances": int(utterances),
        "decoder": decoder,
        "date": _today(),
    }
    if not complete:
        entry["note"] = "some audio was unreadable and counted as deletions"
    kept = [e for e in card.get("evaluations") or [] if (e.get("set"), e.get("decoder")) != (set_name, decoder)]
    return {**card, "evaluations": [*kept, entry]}


def _hours(h: Any) -> str:
    return f"{float(h):.2f} h" if isinstance(h, (int, float)) else "? h"


def _data_phrase(card: dict) -> str:
    """ "synth-train.jsonl (1.77 h, 3000 utterances, 102 speakers)" for each training set."""
    parts = []
    for d in card.get("train_data") or []:
        bits = [_hours(d.get("hours")), f"{d.get('utterances', '?')} utterances"]
        if d.get("speakers"):
            bits.append(f"{d['speakers']} speakers")
        parts.append(f"{d.get('manifest', '?')} ({', '.join(bits)})")
    text = " + ".join(parts) or "unknown data"
    if card.get("domain"):
        text += f", domain: {card['domain']}"
    return text


def _best_figure(card: dict) -> str | None:
    """The held-out WER to quote: a test set's if any was evaluated, else the validation's."""
    evals = [e for e in card.get("evaluations") or [] if isinstance(e.get("wer"), (int, float))]
    if not evals:
        return None
    tests = [e for e in evals if e.get("split") != "validation"] or evals
    e = tests[-1]
    return f"{'val' if e.get('split') == 'validation' else 'test'} WER {100 * e['wer']:.2f} % on {e.get('set')}"


def summary_line(card: dict) -> str:
    """One line: name, training data, the held-out WER, the version; what ``asr transcribe`` prints."""
    line = f"model {card.get('name') or '?'}: trained on {_data_phrase(card)}"
    figure = _best_figure(card)
    if figure:
        line += f"; {figure}"
    if card.get("pretrained_from"):
        line += f"; fine-tuned from {card['pretrained_from']}"
    version = card.get("asr_version")
    if version:
        commit = card.get("git_commit")
        line += f"; asr {version}" + (f" ({commit})" if commit else "")
    return line


def card_info(metadata: dict | None) -> dict[str, Any]:
    """What ``/healthz`` says about the card: the card itself and its one-line summary (None without a card)."""
    card = card_of(metadata)
    return {"card": card, "card_summary": summary_line(card) if card else None}


def low_confidence_warning(card: dict | None, confidences: Iterable[float]) -> str | None:
    """A warning when the words' mean confidence is far below what the model had on its own validation set, or
    None (no card, no stored average, too few words, or confident enough)."""
    reference = ((card or {}).get("confidence") or {}).get("mean")
    values = [float(c) for c in confidences if isinstance(c, (int, float)) and math.isfinite(c)]
    if not isinstance(reference, (int, float)) or len(values) < LOW_CONFIDENCE_MIN_WORDS:
        return None
    mean = sum(values) / len(values)
    if mean >= LOW_CONFIDENCE_RATIO * reference:
        return None
    return (
        f"low confidence (mean word confidence {mean:.2f}, against {reference:.2f} on this model's validation "
        f"set): this model was trained on {_data_phrase(card)}; this audio may be unlike it, and the "
        "transcript is likely wrong"
    )


def render_markdown(card: dict) -> str:
    """``MODEL_CARD.md``: the card for people (and for a model hub's page)."""
    out = [f"# {card.get('name') or 'asr model'}", ""]
    if card.get("description"):
        out += [str(card["description"]), ""]
    out += [
        "An RNN-CTC speech recogniser trained with [asr](https://pypi.org/project/asr/); load it with "
        "`asr.load_model(...)` or `asr transcribe --model model.pt a.wav`.",
        "",
        "## Training data",
        "",
        "| manifest | hours | utterances | speakers |",
        "|---|---:|---:|---:|",
    ]
    for d in card.get("train_data") or []:
        speakers = d.get("speakers") if d.get("speakers") else "not recorded"
        out.append(f"| {d.get('manifest')} | {_hours(d.get('hours'))} | {d.get('utterances')} | {speakers} |")
    out += [
        "",
        f"- Domain: {card.get('domain') or 'not given'}",
        f"- Licence of the data: {card.get('data_licence') or 'not given'}",
        f"- Fine-tuned from: {card.get('pretrained_from') or 'nothing (trained from scratch)'}",
        "",
        "## Held-out results",
        "",
    ]
    evals = card.get("evaluations") or []
    if evals:
        out += ["| set | split | WER | CER | utterances | decoder | date |", "|---|---|---:|---:|---:|---|---|"]
        for e in evals:
            wer = f"{100 * e['wer']:.2f} %" if isinstance(e.get("wer"), (int, float)) else "-"
            cer = f"{100 * e['cer']:.2f} %" if isinstance(e.get("cer"), (int, float)) else "-"
            note = f" ({e['note']})" if e.get("note") else ""
            out.append(
                f"| {e.get('set')} | {e.get('split')} | {wer}{note} | {cer} | {e.get('utterances')} | "
                f"{e.get('decoder')} | {e.get('date')} |"
            )
    else:
        out.append("Not evaluated yet (`asr evaluate --model model.pt --manifest test.jsonl --update-card`).")
    conf = card.get("confidence") or {}
    if isinstance(conf.get("mean"), (int, float)):
        out += [
            "",
            f"Mean word confidence on the validation set: {conf['mean']:.3f} over {conf.get('utterances')} "
            f"utterances. `asr transcribe` warns when a file's is below {LOW_CONFIDENCE_RATIO:g} of it.",
        ]
    version = card.get("asr_version") or "?"
    commit = card.get("git_commit")
    out += ["", "## Provenance", "", f"- asr {version}" + (f", commit {commit}" if commit else ""), ""]
    return "\n".join(out)


def write_card_file(model_path: str | os.PathLike, card: dict) -> Path:
    """Write ``MODEL_CARD.md`` beside ``model_path`` (atomically: a reader never sees half a card)."""
    path = Path(model_path).with_name(CARD_FILE)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_markdown(card), encoding="utf-8")
    os.replace(tmp, path)
    return path
