"""The evaluation report as one HTML page that people read: ``R.html`` beside ``R.json`` (``asr evaluate --report``).

It shows where the errors are, not only how many: the summary, WER by utterance duration and by each manifest
field that groups utterances (speaker, voice, accent, ...), the most frequent confusions, the worst utterances
with their reference and hypothesis aligned word by word (substitutions, deletions and insertions coloured), and
for a few of them the CTC posteriors over the log-mel spectrogram with the frame-wise best path.

The page is self-contained (styles inline, pictures as base64 PNG, no script, nothing fetched), so it opens
offline and can be mailed as one file. Every text from the manifest or the model is HTML-escaped. The figures
are read from the JSON report's data (:func:`asr.evaluation.evaluate.report_data`); only the posterior plots run the model
again, on those few utterances. Without matplotlib the page is still written, with a note where the plots would be.
"""

from __future__ import annotations

import base64
import datetime
import html
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import jiwer

from asr.evaluation.plotting import PlottingUnavailable, figure_png, new_figure

log = logging.getLogger("asr")

WORST = 20  # utterances shown aligned
POSTERIOR_PLOTS = 3  # of the worst utterances
MAX_GROUPS = 30  # rows of a by-field table (the worst ones)
PREFERRED_FIELDS = ("speaker", "voice", "accent", "gender", "dialect", "word", "chapter")


@dataclass
class Group:
    """Error counts over a set of utterances (a duration range, one speaker, ...)."""

    name: str
    utterances: int = 0
    unreadable: int = 0
    reference_words: int = 0
    word_errors: int = 0
    reference_chars: int = 0
    char_errors: int = 0

    def add(self, u: dict[str, Any]) -> None:
        self.utterances += 1
        self.unreadable += int(u.get("hypothesis") is None)
        self.reference_words += int(u.get("reference_words") or 0)
        self.word_errors += int(u.get("word_errors") or 0)
        self.reference_chars += int(u.get("reference_chars") or 0)
        self.char_errors += int(u.get("char_errors") or 0)

    @property
    def wer(self) -> float | None:
        return self.word_errors / self.reference_words if self.reference_words else None

    @property
    def cer(self) -> float | None:
        return self.char_errors / self.reference_chars if self.reference_chars else None


def html_path_for(report_json: str | os.PathLike) -> Path:
    """``R.json`` -> ``R.html`` (``R`` -> ``R.html``; never the JSON report's own path)."""
    p = Path(report_json)
    out = p.with_suffix(".html")
    return out if out != p else p.with_name(p.name + ".html")


def duration_buckets(utterances: Sequence[dict[str, Any]], count: int = 4) -> list[Group]:
    """Utterances split at duration quantiles into ``count`` groups of about equal size.

    Quantiles rather than fixed ranges, so every corpus (1-s commands or 30-s book sentences) gets groups large
    enough to compare.
    """
    timed = sorted(
        ((float(u["duration"]), u) for u in utterances if isinstance(u.get("duration"), (int, float))),
        key=lambda du: du[0],
    )
    if not timed:
        return []
    count = max(1, min(count, len(timed) // 5 or 1))
    changes = [k for k in range(1, len(timed)) if timed[k - 1][0] < timed[k][0]]  # where a cut separates values
    cuts = {min(changes, key=lambda k: abs(k - len(timed) * i / count)) for i in range(1, count)} if changes else set()
    edges = sorted((timed[k - 1][0] + timed[k][0]) / 2 for k in cuts)
    groups = []
    bounds = [0.0, *edges, math.inf]
    for lo, hi in zip(bounds, bounds[1:]):
        name = f"< {hi:.3g} s" if lo == 0 else (f"≥ {lo:.3g} s" if hi == math.inf else f"{lo:.3g}–{hi:.3g} s")
        g = Group(name)
        for d, u in timed:
            if lo <= d < hi:
                g.add(u)
        if g.utterances:
            groups.append(g)
    return groups


def grouping_fields(utterances: Sequence[dict[str, Any]]) -> list[str]:
    """Manifest fields that group utterances: text (or small-integer) values, 2 to n/2 distinct ones.

    Unique ids, continuous numbers (a speaking rate, a pitch) and lists are left out; speaker-like names first.
    """
    values: dict[str, set] = defaultdict(set)
    unusable: set[str] = set()
    for u in utterances:
        for k, v in (u.get("extra") or {}).items():
            if isinstance(v, (str, bool)) or (isinstance(v, int) and not isinstance(v, bool)):
                values[k].add(v)
            else:
                unusable.add(k)
    n = len(utterances)
    fields = []
    for k, vals in values.items():
        if k in unusable or not 2 <= len(vals) <= n / 2:
            continue
        if all(isinstance(v, int) for v in vals) and len(vals) > 12:
            continue
        fields.append(k)
    return sorted(
        fields, key=lambda k: (PREFERRED_FIELDS.index(k) if k in PREFERRED_FIELDS else len(PREFERRED_FIELDS), k)
    )


def groups_by_field(utterances: Sequence[dict[str, Any]], key: str) -> list[Group]:
    """One group per value of ``extra[key]`` (utterances without it under "(none)"), worst WER first."""
    groups: dict[str, Group] = {}
    for u in utterances:
        value = (u.get("extra") or {}).get(key)
        name = "(none)" if value is None else str(value)
        groups.setdefault(name, Group(name)).add(u)
    return sorted(groups.values(), key=lambda g: (-(g.wer if g.wer is not None else -1), g.name))


def aligned_words(reference: str, hypothesis: str) -> list[tuple[str, str, str]]:
    """The word alignment with matches, as ``(kind, reference word, hypothesis word)``; kind is ``ok``, ``sub``,
    ``del`` (no hypothesis word) or ``ins`` (no reference word). jiwer's minimum-edit alignment, as in the WER."""
    ref, hyp = reference.split(), hypothesis.split()
    if not ref or not hyp:
        return [("del", w, "") for w in ref] + [("ins", "", w) for w in hyp]
    out = jiwer.process_words(reference, hypothesis)
    ref, hyp = out.references[0], out.hypotheses[0]
    words: list[tuple[str, str, str]] = []
    for c in out.alignments[0]:
        r, h = ref[c.ref_start_idx : c.ref_end_idx], hyp[c.hyp_start_idx : c.hyp_end_idx]
        if c.type == "equal":
            words += [("ok", a, b) for a, b in zip(r, h)]
        elif c.type == "substitute":
            words += [("sub", a, b) for a, b in zip(r, h)]
        elif c.type == "delete":
            words += [("del", a, "") for a in r]
        else:
            words += [("ins", "", b) for b in h]
    return words


def worst_utterances(utterances: Sequence[dict[str, Any]], count: int = WORST) -> list[dict[str, Any]]:
    """Transcribed utterances with errors, most word errors first (then highest WER): where listening pays most."""
    scored = [u for u in utterances if u.get("hypothesis") is not None and u.get("word_errors")]
    return sorted(
        scored, key=lambda u: (-u["word_errors"], -u["word_errors"] / max(u["reference_words"], 1), u.get("source", ""))
    )[:count]


# --- CTC posteriors ---------------------------------------------------------------------------------------------


def token_label(tokenizer: Any, token_id: int) -> str:
    """How a token is written on a plot: ∅ for the blank, ␣ for a space."""
    if token_id == tokenizer.blank_id:
        return "∅"
    vocab = getattr(tokenizer, "vocab", None)
    text = vocab[token_id] if vocab is not None else tokenizer.decode([token_id])
    return text.replace(" ", "␣").replace("▁", "␣") or "?"


def posterior_png(loaded: Any, audio_path: str) -> bytes:
    """The log-mel spectrogram with the best path's tokens, over the CTC posteriors of the tokens that matter.

    Runs the model on one file. The lower panel shows the blank and every token of the best path and of the
    reference alphabet the model emits, so a confusion shows as probability on the wrong row.
    """
    import numpy as np
    import torch

    from asr.data.audio import load_audio

    model, tokenizer = loaded.model, loaded.tokenizer
    audio = torch.from_numpy(load_audio(audio_path, model.sample_rate))[None].to(model.device)
    with torch.inference_mode():
        mel = model.features.log_mel(audio)[0].float().cpu().numpy()  # (frames, n_mels), un-normalised
        log_probs, lengths = model(audio, torch.tensor([audio.shape[1]], device=model.device))
    probs = log_probs[0, : int(lengths[0])].float().exp().cpu().numpy()  # (T, V)
    best = probs.argmax(axis=1)
    seconds = audio.shape[1] / model.sample_rate
    frame = seconds / max(len(best), 1)
    emitted = [(t, int(k)) for t, k in enumerate(best) if k != tokenizer.blank_id and (t == 0 or best[t - 1] != k)]
    rows = sorted({tokenizer.blank_id, *(int(k) for k in best), *np.flatnonzero(probs.max(axis=0) > 0.05)})

    fig = new_figure(min(18.0, max(11.0, 3.0 + 1.6 * seconds)), 5.6)
    spec_ax, post_ax = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.2])
    spec_ax.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, mel.shape[1]))
    spec_ax.set_ylabel("mel bin")
    for t, k in emitted:
        spec_ax.axvline((t + 0.5) * frame, color="white", alpha=0.25, lw=0.6)
        spec_ax.text(
            (t + 0.5) * frame,
            mel.shape[1] * 0.97,
            token_label(tokenizer, k),
            color="white",
            ha="center",
            va="top",
            fontsize=9,
            fontweight="bold",
        )
    post_ax.imshow(
        probs[:, rows].T,
        origin="lower",
        aspect="auto",
        cmap="Blues",
        vmin=0,
        vmax=1,
        extent=(0, seconds, -0.5, len(rows) - 0.5),
        interpolation="nearest",
    )
    index = {k: i for i, k in enumerate(rows)}
    path_t = [(t + 0.5) * frame for t in range(len(best))]
    post_ax.plot(path_t, [index[int(k)] for k in best], ".", color="tab:red", ms=3, label="best path (arg-max)")
    post_ax.set_yticks(range(len(rows)), [token_label(tokenizer, k) for k in rows], fontsize=8)
    post_ax.set_xlabel("seconds")
    post_ax.set_ylabel("token")
    post_ax.legend(loc="upper right", fontsize=8)
    return figure_png(fig, dpi=80, colors=128)


def posterior_plots(
    loaded: Any, utterances: Sequence[dict[str, Any]], count: int = POSTERIOR_PLOTS
) -> list[tuple[dict[str, Any], bytes]]:
    """Posterior plots of the ``count`` worst utterances (filled up with others when fewer have errors)."""
    worst = worst_utterances(utterances, count)
    chosen_ids = {id(u) for u in worst}
    rest = [u for u in utterances if u.get("hypothesis") is not None and id(u) not in chosen_ids]
    return [(u, posterior_png(loaded, u["audio_filepath"])) for u in (worst + rest)[:count]]


# --- HTML -------------------------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.meta{color:#666;font-size:12px;word-break:break-all}
table{border-collapse:collapse;margin:6px 0} td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
th{background:#f6f6f6;font-weight:600} td.l,th.l{text-align:left}
.big{font-size:26px;font-weight:600;margin-right:24px}
.bar{display:inline-block;height:9px;background:#d9534f;vertical-align:middle;margin-left:6px;border-radius:2px}
.cols{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.utt{margin:10px 0 14px;padding:6px 10px;border-left:3px solid #ddd}
.utt .src{color:#666;font-size:12px}
.al{display:flex;flex-wrap:wrap;gap:2px 4px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;
margin-top:4px}
.w{display:inline-flex;flex-direction:column;padding:1px 3px;border-radius:3px}
.w span{white-space:pre;min-height:1.2em} .w .h{border-top:1px dotted #ccc}
.sub{background:#fde2b8} .del{background:#f8c9c9} .ins{background:#c9ecc9}
.del .h,.ins .r{color:#999}
.key span{padding:1px 6px;border-radius:3px;margin-right:6px}
.warn{color:#a94442} .note{color:#666;font-style:italic}
img{max-width:100%;border:1px solid #eee;margin:4px 0 14px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _bar(x: float | None, full: float) -> str:
    if x is None or full <= 0:
        return ""
    return f'<span class="bar" style="width:{min(120.0, 120 * x / full):.0f}px"></span>'


def _group_table(title: str, groups: Sequence[Group], limit: int = MAX_GROUPS) -> str:
    full = max((g.wer or 0 for g in groups), default=0)
    rows = [
        f'<tr><th class="l">{_e(title)}</th><th>utterances</th><th>words</th><th class="l">WER</th>'
        f"<th>CER</th><th>unreadable</th></tr>"
    ]
    for g in groups[:limit]:
        rows.append(
            f'<tr><td class="l">{_e(g.name)}</td><td>{g.utterances}</td><td>{g.reference_words}</td>'
            f'<td class="l">{_pct(g.wer)}{_bar(g.wer, full)}</td><td>{_pct(g.cer)}</td>'
            f"<td>{g.unreadable or ''}</td></tr>"
        )
    more = (
        (
            f'<p class="note">{len(groups) - limit} more, with lower WER (all of them are in the JSON report\'s '
            f"utterances)</p>"
        )
        if len(groups) > limit
        else ""
    )
    return f"<table>{''.join(rows)}</table>{more}"


def _summary(r: dict[str, Any]) -> str:
    parts = [
        f'<p><span class="big">WER {_pct(r.get("wer"))}</span><span class="big">CER {_pct(r.get("cer"))}</span>'
        f"exact match {_pct(r.get('exact_match'))}</p>"
    ]
    rows = [
        ("", "substitutions", "deletions", "insertions", "reference"),
        ("words", r.get("substitutions"), r.get("deletions"), r.get("insertions"), r.get("reference_words")),
        (
            "characters",
            r.get("char_substitutions"),
            r.get("char_deletions"),
            r.get("char_insertions"),
            r.get("reference_chars"),
        ),
    ]
    parts.append(
        "<table>"
        + "".join(
            "<tr>"
            + "".join(
                f"<{'th' if i == 0 or j == 0 else 'td'}{' class=l' if j == 0 else ''}>{_e(v)}"
                f"</{'th' if i == 0 or j == 0 else 'td'}>"
                for j, v in enumerate(row)
            )
            + "</tr>"
            for i, row in enumerate(rows)
        )
        + "</table>"
    )
    n, unreadable, broken = r.get("num_utterances", 0), r.get("unreadable") or [], r.get("broken_lines") or []
    partial = r.get("read_warnings") or []
    parts.append(
        f"<p>{_e(n)} utterances scored; {len(unreadable)} unreadable (counted as deletions); "
        f"{len(partial)} read only in part (scored on what was read); "
        f"{len(broken)} broken manifest lines (not scored).</p>"
    )
    if partial:
        parts.append(
            '<p class="warn">Audio read only in part (it breaks off), scored on what was read:</p><ul>'
            + "".join(f"<li>{_e(u.get('source'))}: {_e('; '.join(u.get('warnings') or []))}</li>" for u in partial[:50])
            + "</ul>"
        )
    if unreadable:
        parts.append(
            '<p class="warn">Unreadable audio, counted as all deletions:</p><ul>'
            + "".join(f"<li>{_e(u.get('source'))}: {_e(u.get('error'))}</li>" for u in unreadable[:50])
            + "</ul>"
        )
    if broken:
        parts.append(
            '<p class="warn">Broken manifest lines, not scored:</p><ul>'
            + "".join(f"<li>{_e(b)}</li>" for b in broken[:50])
            + "</ul>"
        )
    if len(unreadable) > 50 or len(broken) > 50 or len(partial) > 50:
        parts.append('<p class="note">The JSON report lists every one.</p>')
    return "".join(parts)


def _alignment(ref: str, hyp: str) -> str:
    cells = []
    for kind, r, h in aligned_words(ref, hyp):
        cells.append(
            f'<span class="w {kind}"><span class="r">{_e(r or "·")}</span><span class="h">{_e(h or "·")}</span></span>'
        )
    return f'<div class="al">{"".join(cells)}</div>'


def _worst(utterances: Sequence[dict[str, Any]]) -> str:
    worst = worst_utterances(utterances)
    if not worst:
        return '<p class="note">No utterance has a word error.</p>'
    key = (
        '<p class="key">Reference above, hypothesis below: <span class="sub">substitution</span>'
        '<span class="del">deletion</span><span class="ins">insertion</span></p>'
    )
    items = []
    for u in worst:
        extra = "".join(
            f" · {_e(k)} {_e(v)}"
            for k, v in (u.get("extra") or {}).items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool)
        )
        items.append(
            f'<div class="utt"><div class="src">{_e(u.get("source", ""))} · '
            f"{_e(os.path.basename(str(u.get('audio_filepath', ''))))} · "
            f"{u['word_errors']} word errors / {u['reference_words']} words "
            f"({u.get('substitutions', 0)} sub, {u.get('deletions', 0)} del, {u.get('insertions', 0)} ins)"
            f"{extra}</div>{_alignment(u['reference'], u['hypothesis'])}</div>"
        )
    return key + "".join(items)


def _confusions(r: dict[str, Any]) -> str:
    def table(title: str, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
        head = "".join(f'<th class="l">{_e(h)}</th>' for h in header)
        body = "".join("<tr>" + "".join(f'<td class="l">{_e(v)}</td>' for v in row) + "</tr>" for row in rows)
        return f"<div><b>{_e(title)}</b><table><tr>{head}</tr>{body or '<tr><td>none</td></tr>'}</table></div>"

    return (
        '<div class="cols">'
        + "".join(
            [
                table(
                    "substitutions",
                    ("reference", "hypothesis", "count"),
                    ((s["reference"], s["hypothesis"], s["count"]) for s in r.get("top_substitutions", [])),
                ),
                table("deletions", ("word", "count"), ((d["word"], d["count"]) for d in r.get("top_deletions", []))),
                table("insertions", ("word", "count"), ((d["word"], d["count"]) for d in r.get("top_insertions", []))),
            ]
        )
        + "</div>"
    )


def describe_decoding(decoding: dict[str, Any] | None) -> str:
    """A report's ``decoding`` record in words: ``greedy``, or the beam search with its files and weights."""
    if not decoding:
        return "not recorded"
    name = str(decoding.get("name", "?"))
    settings = [f"{k} {v}" for k, v in decoding.items() if k != "name" and v is not None]
    return f"{name} ({', '.join(settings)})" if settings else name


def render_html(
    report: dict[str, Any], posteriors: Sequence[tuple[dict[str, Any], bytes]] = (), posterior_note: str = ""
) -> str:
    """The page for ``report`` (the JSON report's data) with ``posteriors`` as (utterance, PNG) pairs."""
    utts = report.get("utterances") or []
    sha = report.get("model_sha256")
    sections = [
        f'<h1>Evaluation report</h1><p class="meta">model {_e(report.get("model", "?"))}'
        + (f" (SHA-256 <code>{_e(sha)}</code>)" if sha else "")
        + f"<br>manifest {_e(report.get('manifest', '?'))}<br>decoding {_e(describe_decoding(report.get('decoding')))}"
        f"<br>written {_e(datetime.datetime.now().isoformat('T', 'seconds'))}"
        + (f" by asr {_e(report['asr_version'])}" if report.get("asr_version") else "")
        + "</p>",
        f'<section id="summary"><h2>Summary</h2>{_summary(report)}</section>',
    ]
    buckets = duration_buckets(utts)
    if buckets:
        sections.append(
            f'<section id="by-duration"><h2>WER by duration</h2>{_group_table("duration", buckets)}</section>'
        )
    for key in grouping_fields(utts):
        sections.append(
            f'<section id="by-{_e(key)}"><h2>WER by {_e(key)}</h2>'
            f"{_group_table(key, groups_by_field(utts, key))}</section>"
        )
    sections.append(f'<section id="confusions"><h2>Most frequent confusions</h2>{_confusions(report)}</section>')
    sections.append(f'<section id="worst"><h2>Worst utterances</h2>{_worst(utts)}</section>')
    images = "".join(
        f'<div class="utt"><div class="src">{_e(u.get("source", ""))} · '
        f"{_e(os.path.basename(str(u.get('audio_filepath', ''))))}</div>"
        f"{_alignment(u.get('reference', ''), u.get('hypothesis') or '')}</div>"
        f'<img alt="CTC posteriors of {_e(u.get("source", ""))}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for u, png in posteriors
    )
    note = f'<p class="note">{_e(posterior_note)}</p>' if posterior_note else ""
    sections.append(
        '<section id="posteriors"><h2>CTC posteriors</h2><p>Top: log-mel spectrogram with the tokens '
        "the best path emits. Bottom: per-frame probability of each token (dark = high; ∅ is the CTC "
        f"blank), the arg-max path in red.</p>{note}{images}</section>"
    )
    title = f"ASR evaluation: WER {_pct(report.get('wer'))}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
        f"<body>{''.join(sections)}</body></html>\n"
    )


def write_html_report(
    report: dict[str, Any], report_json: str | os.PathLike, loaded: Any = None, plots: int = POSTERIOR_PLOTS
) -> Path:
    """Write the HTML page beside ``report_json`` and return its path.

    ``loaded`` (a :class:`~asr.model.file.LoadedModel`) draws the posterior plots; without it, or without
    matplotlib, or when drawing fails, the page is still written, with a note saying why (and a warning logged).
    """
    posteriors: list[tuple[dict[str, Any], bytes]] = []
    note = ""
    if loaded is None or plots <= 0:
        note = "No posterior plots: no model was given."
    else:
        try:
            posteriors = posterior_plots(loaded, report.get("utterances") or [], plots)
        except PlottingUnavailable as e:
            note = f"No posterior plots: {e}"
        except Exception as e:  # noqa: BLE001 - the tables are worth having without the pictures
            note = f"No posterior plots: {type(e).__name__}: {e}"
        if note:
            log.warning("%s: %s", html_path_for(report_json), note)
    path = html_path_for(report_json)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(render_html(report, posteriors, note), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
