"""The settings one Ray job shares across its actors, checked before anything is sent.

Every actor of a ``map_batches`` stage is built from the same constructor arguments, so the
settings that define the shared bound (hosts, model, slots, margin) also name the job's slot
broker: actors with the same settings find the same broker.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .. import _payloads as P
from .._errors import RequestError
from .._host import parse_host
from .._limits import DEFAULT_MAX_CONCURRENCY

__all__ = ["HostsInput", "JobSlots", "SlotsInput", "normalize_hosts"]

#: One host, several hosts as a list, or a comma-separated string (as ``OLLAMA_HOST`` lists).
HostsInput = str | Sequence[str] | None
#: Slots of every host (an int), per host (``{host: n}``), or ``None``/``"auto"``: adaptive.
SlotsInput = int | Mapping[str, int] | Literal["auto"] | None
Share = Literal["broker", "split"]


def normalize_hosts(hosts: HostsInput) -> list[str]:
    """Base URLs of ``hosts``: a string (commas separate several) or a list of strings; ``None`` is
    ``OLLAMA_HOST`` (else 127.0.0.1:11434). Duplicates are refused: each host's slots count once."""
    if hosts is None:
        items = [os.environ.get("OLLAMA_HOST", "")]
    elif isinstance(hosts, str):
        items = [h for h in (part.strip() for part in hosts.split(",")) if h] or [""]
    elif isinstance(hosts, Sequence) and all(isinstance(h, str) for h in hosts):
        items = list(hosts)
    else:
        raise RequestError(f"must be a host string or a list of host strings, not {type(hosts).__name__}",
                           field="hosts")
    if not items:
        raise RequestError("at least one host is needed", field="hosts")
    urls = [parse_host(h) for h in items]
    if len(set(urls)) != len(urls):
        raise RequestError(f"a host is listed twice: {items}", field="hosts")
    return urls


def _check_count(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RequestError(f"must be an int >= {minimum}, not {value!r}", field=field)
    return value


def _slots_per_host(slots: SlotsInput, hosts: list[str]) -> list[int | None]:
    if slots is None or slots == "auto":
        return [None] * len(hosts)
    if isinstance(slots, Mapping):
        per = {parse_host(h): _check_count(n, f"slots[{h!r}]", 1) for h, n in slots.items()}
        missing = [h for h in hosts if h not in per]
        if missing or len(per) != len(hosts):
            raise RequestError(f"must name every host exactly once; missing {missing}", field="slots")
        return [per[h] for h in hosts]
    return [_check_count(slots, "slots", 1)] * len(hosts)


@dataclass(frozen=True)
class JobSlots:
    """The shared-bound settings of one job: its hosts, the model, each host's slots (``None``:
    adaptive), the pipelining ``margin`` added to explicit slots, and how the bound is held."""

    hosts: tuple[str, ...]
    model: str
    slots: tuple[int | None, ...]
    margin: int
    max_concurrency: int
    share: Share
    actors: int | None
    job: str | None

    @classmethod
    def make(
        cls, hosts: HostsInput, model: str, *, slots: SlotsInput = None, margin: int = 1,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY, share: str = "broker", actors: int | None = None,
        job: str | None = None,
    ) -> JobSlots:
        P.check_model(model)
        urls = normalize_hosts(hosts)
        if share not in ("broker", "split"):
            raise RequestError(f"must be 'broker' or 'split', not {share!r}", field="share")
        if share == "split":
            actors = _check_count(actors, "actors", 1)  # the split needs to know how many share
        elif actors is not None:
            actors = _check_count(actors, "actors", 1)
        if job is not None and (not isinstance(job, str) or not job):
            raise RequestError(f"must be a non-empty string, not {job!r}", field="job")
        return cls(
            hosts=tuple(urls), model=model, slots=tuple(_slots_per_host(slots, urls)),
            margin=_check_count(margin, "margin", 0), max_concurrency=_check_count(max_concurrency, "max_concurrency", 1),
            share=share, actors=actors, job=job,  # type: ignore[arg-type]
        )

    def broker_name(self, job: str) -> str:
        """The named actor that holds this job's bound: the same for every actor of the job."""
        key = json.dumps([self.hosts, self.model, self.slots, self.margin, self.max_concurrency, job])
        return f"ollama-async-slots-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
