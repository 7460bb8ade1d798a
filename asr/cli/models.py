"""``asr models download|push|list|card``: sharing models (:mod:`asr.model.cache`, :mod:`asr.model.hub`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from asr.help_format import DefaultsHelpFormatter


def cmd_download(args: argparse.Namespace) -> int:
    from asr.model.cache import fetch_model

    path = fetch_model(
        args.source, args.sha256, progress=not args.no_progress and sys.stderr.isatty(), timeout=args.timeout
    )
    print(path)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from asr.model.hub import push_model

    out = push_model(args.model, args.target, token=args.token, private=args.private, message=args.message)
    print(f"{out['url']} ({out['file']}, sha256 {out['sha256']})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from asr.model.registry import registry

    entries = registry()
    if args.json:
        print(json.dumps({n: {k: v for k, v in vars(e).items() if k != "name"} for n, e in entries.items()}, indent=2))
        return 0
    if not entries:
        print("no named models (the shipped registry is empty; $ASR_MODEL_REGISTRY adds a registry file)")
    for name, e in sorted(entries.items()):
        print(f"{name}\t{e.licence or '?'}\t{e.url}" + (f"\t{e.description}" if e.description else ""))
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from asr.model.card import card_of, render_markdown
    from asr.model.file import load_model

    card = card_of(load_model(args.model).metadata)
    if card is None:
        print(f"asr: {args.model}: no model card (trained before asr wrote them)", file=sys.stderr)
        return 1
    print(json.dumps(card, indent=2) if args.json else render_markdown(card))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asr models",
        description="Fetch, publish and describe shared models (docs/models.md).",
        formatter_class=DefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "download",
        formatter_class=DefaultsHelpFormatter,
        help="fetch a model into the cache and print its path",
        description="Fetch a model by registry NAME or URL (https://, file://, hf://ORG/REPO[/FILE]) into the cache "
        "($ASR_CACHE_DIR, else the user cache folder), checked against its SHA-256, and print the cached file's "
        "path. ASR_OFFLINE=1 forbids downloading.",
    )
    d.add_argument("source", metavar="URL|NAME")
    d.add_argument("--sha256", metavar="HEX", help="the SHA-256 the file must have (a registry name brings its own)")
    d.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a try fails")
    d.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    d.set_defaults(func=cmd_download)
    u = sub.add_parser(
        "push",
        formatter_class=DefaultsHelpFormatter,
        help="publish a model and its card to the Hugging Face Hub (hub extra)",
    )
    u.add_argument("model", metavar="MODEL.pt")
    u.add_argument("target", metavar="hf://ORG/REPO[/FILE]")
    u.add_argument("--token", help="Hub token (default: huggingface_hub's login, or $HF_TOKEN)")
    u.add_argument("--private", action="store_true", help="create the repository private")
    u.add_argument("--message", help="commit message")
    u.set_defaults(func=cmd_push)
    ls = sub.add_parser("list", formatter_class=DefaultsHelpFormatter, help="the named models of the registry")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    c = sub.add_parser("card", formatter_class=DefaultsHelpFormatter, help="print a model's card (Markdown, or --json)")
    c.add_argument("model", metavar="MODEL")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_card)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
