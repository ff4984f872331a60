"""Typed errors. Every user mistake is an `MmautoError`; the CLI prints its one-line message
and exits 2. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class MmautoError(Exception):
    """A problem the user can fix; `str(err)` is the whole one-line message."""

    exit_code = 2

    def __str__(self) -> str:
        # One line whatever the user wrote: a key or a column name holding a line break or a
        # control character is shown escaped.
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], super().__str__())


class ManifestError(MmautoError):
    """The manifest (or a recipe it extends) is not valid.

    `where` is the file, `key` the dotted key path, `what` what is wrong and valid.
    """

    def __init__(self, where: str, key: str, what: str):
        self.where, self.key, self.what = str(where), key, what
        prefix = f"{self.where}: " if self.where else ""
        super().__init__(f"{prefix}{key}: {what}" if key else f"{prefix}{what}")


class DataError(MmautoError):
    """The data the manifest points at cannot be used (file, row or column named)."""


class PresetError(MmautoError):
    """A keras-hub preset cannot be loaded (offline, missing folder, wrong kind)."""


class ExportError(MmautoError):
    """The exported model failed its parity check or could not be written."""


class RunError(MmautoError):
    """A run folder is missing, incomplete or does not match the request."""


class SearchError(MmautoError):
    """The search cannot go on (too many failed trials, budget too small, changed space)."""


class Interrupted(MmautoError):
    """The user stopped a fit (Ctrl-C); the message says where and how to resume. Exit 130, as
    a shell reports SIGINT."""

    exit_code = 130


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` when a close choice exists, else `""`."""
    choices = [str(c) for c in choices]
    same_case = [c for c in choices if c.lower() == str(value).lower()]  # ID for id
    close = same_case or difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def one_of(value, choices: Iterable[str], what: str = "") -> str:
    choices = list(choices)
    head = f"unknown {what} " if what else "unknown value "
    return f"{head}'{value}'{did_you_mean(value, choices)} ({', '.join(choices)})"
