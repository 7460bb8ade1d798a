"""The one help style of every ``asr`` command: each option's default is shown.

:class:`DefaultsHelpFormatter` is argparse's ``ArgumentDefaultsHelpFormatter`` without its noise: no
``(default: None)`` or ``(default: False)``, and nothing added to a help text that already says what the default
is (``default: the model's``). It lives below every wing (beside :mod:`asr.errors`) because the corpus commands
(``asr synth``, ``asr manifest``, ...) build their own parsers and must not import the CLI.
"""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown (see the module docstring); descriptions kept as written (module docstrings)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return action.help
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return action.help
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def shows_default(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    """Whether ``action``'s line in ``parser``'s help states its default (what the tests hold every option to)."""
    if action.default in (None, False, argparse.SUPPRESS) or action.help == argparse.SUPPRESS or action.default == []:
        return True
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    return "default" in text.lower()
