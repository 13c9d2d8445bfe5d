"""``--host``, repeatable on every command: one server as before, or several routed as one.

One ``--host`` gives ``AsyncClient(host="...")`` exactly as before; several give
``AsyncClient(host=[...])``, whose router spreads the work by each server's free slots and
speed and fails over when one dies (``docs/several-servers.md``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import _args

if TYPE_CHECKING:
    from .._client import AsyncClient

__all__ = ["add_host_option", "host_lines", "hosts_of"]


def add_host_option(p: argparse.ArgumentParser, help_: str) -> None:
    """Register ``--host URL`` (repeatable)."""
    p.add_argument("--host", action="append", type=_args.host, default=None, metavar="URL",
                   help=f"{help_}; repeat it for several servers, used as one")


def hosts_of(value: list[str] | None) -> str | list[str] | None:
    """What ``AsyncClient(host=...)`` takes: None, one URL, or the list of several."""
    if not value:
        return None
    return value[0] if len(value) == 1 else list(value)


def host_lines(client: AsyncClient) -> list[str]:
    """One line per host (several hosts only): its state, requests served, errors, service time."""
    hosts = client.hosts
    if len(hosts) < 2:
        return []
    lines = []
    for h in hosts:
        service = ", ".join(f"{m} {s * 1000:.1f} ms" for m, s in sorted(h.service_s.items())) or "-"
        lines.append(f"  {h.url}: {h.state}, {h.requests} requests, {h.errors} errors, server time {service}")
    return lines
