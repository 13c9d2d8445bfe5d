"""Flag values that the library itself knows how to check: ``--host``, ``--keep-alive``, ``--options``.

Each parser reuses the client's own validation (``parse_host``, ``keep_alive_value``, the fields
of :class:`~ollama_async.Options`), so the command line refuses at argument parsing exactly what
a request would later refuse -- exit 2 with one line, before any file is touched -- instead of
failing every item of a job.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping
from typing import Any

from .._errors import RequestError
from .._host import parse_host
from .._payloads import keep_alive_value
from .._types import Options

__all__ = ["host", "keep_alive", "unknown_options"]


def host(text: str) -> str:
    """``--host``: anything ``OLLAMA_HOST`` accepts; the value is passed on as given."""
    try:
        parse_host(text)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(exc.error) from None
    return text


def keep_alive(text: str) -> float | str:
    """``--keep-alive``: a number is seconds (the server rejects a bare "300" string), else a duration."""
    value: float | str
    try:
        number = float(text)
    except ValueError:
        value = text
    else:
        value = int(number) if number.is_integer() else number
    try:
        keep_alive_value(value)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(exc.error) from None
    return value


_OPTION_NAMES = frozenset(Options.model_fields)


def unknown_options(options: Mapping[str, Any] | None) -> list[str]:
    """One warning per option name the server does not know (it ignores them silently)."""
    warnings = []
    for key in options or {}:
        if key in _OPTION_NAMES:
            continue
        close = difflib.get_close_matches(key, sorted(_OPTION_NAMES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        warnings.append(f"--options: unknown option {key!r}, the server ignores it{hint}")
    return warnings
