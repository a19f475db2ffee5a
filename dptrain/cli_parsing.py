"""The command line's parsers: a bad command line is one line (exit 2), no flag abbreviation
is taken, an unknown flag is named with the closest valid one, and every flag's help ends
with its default. Standard library only, like cli.py's top (nothing heavy before main())."""
from __future__ import annotations

import argparse
import sys

from .errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a UsageError (one line, exit 2), takes no
    abbreviation of a flag (``--epoch`` is not ``--epochs``) and names the closest flag."""

    def __init__(self, *args, **kw):
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def error(self, message):
        raise UsageError(message)

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        try:
            namespace, extras = self.parse_known_args(args, namespace)
        except UsageError:
            # argparse reports a missing required flag before an unknown one: `eval --weight
            # w.npz` would say "--weights is required", never naming the mistyped flag
            known = set(self._flags(args))
            unknown = [a for a in args if a.startswith("-") and not _is_number(a)
                       and a.split("=", 1)[0] not in known]
            if unknown:
                self._unrecognized(unknown[0], args)
            raise
        if extras:
            self._unrecognized(extras[0], args)
        return namespace

    def _command(self, args):
        """The subcommand's parser named in ``args`` (None when there is none)."""
        choices = self._subparsers._group_actions[0].choices if self._subparsers else {}
        return next((choices[a] for a in args if a in choices), None)

    def _flags(self, args) -> list[str]:
        return [o for p in (self, self._command(args)) if p is not None
                for a in p._actions for o in a.option_strings]

    def _unrecognized(self, word: str, args) -> None:
        from .suggest import did_you_mean
        word = word.split("=", 1)[0]
        hint = did_you_mean(word, self._flags(args)) if word.startswith("-") else ""
        self.error(f"unrecognized argument {word}{hint}")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class Help(argparse.HelpFormatter):
    """Every flag's help ends with its default, unless its text already states it."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default:" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.required:
            return f"{text} (required)"
        if action.default is None:
            shown = "not set"
        elif action.default is False and action.nargs == 0:
            shown = "off"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def add_command(sub, name, help, description=None):
    return sub.add_parser(name, help=help, description=description or help,
                          formatter_class=Help)
