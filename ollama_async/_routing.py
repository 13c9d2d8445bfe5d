"""The router of a multi-host client: which server gets each request, and what if it fails.

:class:`Router` stands where a single-host client has its
:class:`~ollama_async._transport.Transport` (same ``request``/``open`` interface), so every
endpoint method, stream and batch works unchanged over several servers. Per request:

1. **Which hosts**: those whose ``/api/tags`` lists the model (catalogs are fetched on first
   use and refreshed in the background every ``CATALOG_TTL`` seconds; a model no host lists is
   looked up once more, then is a :class:`~ollama_async.ModelNotFoundError` naming the hosts
   asked), and that are not ejected (``_hosts.Health``).
2. **Affinity**: a request with an affinity key (``client.with_options(affinity=...)``, or for
   chat derived from the conversation's system and first user message) goes where its key went
   last while that host is usable and has a free slot (or no other host has one), so the
   server's prompt cache of the conversation is reused.
3. **Free slot**, then **loaded** (``/api/ps``, or it just answered) over must-load, then the
   **least expected completion time**: ``(in flight + waiting + 1) / bound * service time /
   weight``, with the host's measured server time for that model (``total_duration``; of a
   stream, its final part's), so a slow host gets proportionally less. The request then takes a slot of that host's own limiter (each
   (host, model) has one, explicit or adaptive, as in a single-host client).

**Failover** happens here, not in the per-host transports (the router's views of them never
retry): a failure another host can fix goes to another host, within the client's retry policy:
a refused connection (nothing was sent; also free of the retry budget, once per host), a reset
or broken connection, a connect/pool timeout, 500/502/503/504 and 429; a 503 also closes that
host's gate for the model. A 404 "model not found" from a host whose catalog listed the model
corrects the catalog and goes elsewhere. Only when every usable host was tried does a retry
wait for the back-off. Streams fail over the same way until their first part reached the caller
(``_streaming.iter_parts``); read timeouts are never re-sent (the request may be running).

Management calls without a model: ``list``/``ps`` merge every host's answer and mark each
model entry with ``host``; ``show`` goes to a host that has the model; ``version`` to one usable
host; ``pull``/``push``/``create``/``copy``/``delete`` and blob uploads go to every usable host
and raise the first failure once all finished (``client.each_host`` gives per-host results and
``client.on_host(url)`` a client pinned to one host).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio
import httpx

from ._errors import (
    ClientClosedError,
    ModelNotFoundError,
    OllamaConnectionError,
    OllamaTimeoutError,
    RequestError,
    ResponseError,
    StreamError,
)
from ._hosts import CATALOG_TTL, Host, HostState, Member, without_retries
from ._limits import Lease, LimitStats, ModelLimiter, model_key
from ._observe import Observer
from ._transport import Call, RetryPolicy, Transport
from ._types import ListResponse, ProcessResponse
from ._wire import WireLimits

__all__ = ["FleetLimits", "Router", "conversation_key"]

T = TypeVar("T")

#: The probe and catalog requests: cheap, so an answer that takes longer than this is no answer.
PROBE_TIMEOUT = httpx.Timeout(5.0)
#: Affinity keys remembered (least recently used are forgotten first).
AFFINITY_KEYS = 65536
#: A model no host lists is looked up again at most this often (seconds).
MISSING_RECHECK = 1.0

#: ``response.extensions`` key of a routed stream's host URL (read by ``_streaming.iter_parts``).
HOST_EXTENSION = "ollama_async.host"
#: On a streamed response: called with the stream's final part (the host learns its service time).
FINAL_EXTENSION = "ollama_async.on_final"

_FAILOVER_STATUSES = frozenset({429, 500, 502, 503, 504})
_BROADCAST_PATHS = ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/")
_MERGED_PATHS = frozenset({"/api/tags", "/api/ps"})


class Router:
    """The members of a multi-host client and the choice among them (see the module docstring)."""

    def __init__(self, hosts: Iterable[Host], make_transport: Callable[[Host], Transport], retry: RetryPolicy) -> None:
        self.retry = retry
        self._make = make_transport
        self.members: list[Member] = []
        self._affinity: OrderedDict[str, Member] = OrderedDict()
        self._missing: dict[str, float] = {}  # model_key -> when it was last looked up in vain
        self._catalog_checked: dict[str, float] = {}  # model_key -> when some host was seen with it
        self._scopes: set[anyio.CancelScope] = set()
        self._owns_http = True
        self._closed = False
        #: the client's observer (``_observe.py``): each attempt on a host is measured by that host's
        #: transport; streams opened here are measured by ``iter_parts`` with this one
        self.observer: Observer = Observer(metrics=False)
        for host in hosts:
            self.add(host)
        if not self.members:
            raise RequestError("needs at least one host", field="host")
        self.limits = FleetLimits(self)

    # -- the Transport interface the client, streams and batches use ---------------------------

    @property
    def base_url(self) -> str:
        """The first host's URL (each host's is in :attr:`hosts`)."""
        return self.members[0].url if self.members else ""

    @property
    def http(self) -> httpx.AsyncClient:
        return self._first().transport.http

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def wire(self) -> WireLimits:
        """The response size limits (every host's transport has the client's)."""
        return self._first().transport.wire

    @property
    def _loop(self) -> object | None:
        """The event loop the hosts' connections belong to (the first host's, as they share it)."""
        return self._first().transport._loop

    def url(self, path: str) -> str:
        return self.base_url + path

    def map_transport_error(self, exc: httpx.TransportError, call: Call) -> Exception:
        request = getattr(exc, "_request", None)
        for member in self.members:
            if request is not None and str(request.url).startswith(member.url):
                return member.transport.map_transport_error(exc, call)
        return self._first().transport.map_transport_error(exc, call)

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed; create a new one")
        for member in self.members:
            member.transport._check_usable()

    def active_connections(self) -> int:
        return sum(m.transport.active_connections() for m in self.members)

    async def aclose(self) -> None:
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()
        if self._owns_http:
            for member in list(self.members):
                for transport in (member.transport, *member.retired):
                    await transport.aclose()

    async def request(self, call: Call, decode: Callable[[bytes], T]) -> T:
        """A whole request, routed (model calls) or fanned out (management calls)."""
        if call.model:
            return await self._routed(call, lambda m: m.routed.request(call, decode), call.model)
        return await self._manage(call, decode)

    async def open(self, call: Call, *, stream: bool) -> tuple[httpx.Response, Lease | None]:
        """Open a streamed request on the chosen host (failing over until headers arrive)."""
        if not call.model:
            raise RequestError(
                "a streamed management call needs one host: use client.on_host(url) on a multi-host client",
                field="host",
            )

        key = model_key(call.model)

        async def send(member: Member) -> tuple[httpx.Response, Lease | None]:
            response, lease = await member.routed.open(call, stream=stream)
            response.extensions[HOST_EXTENSION] = member.url  # errors of the stream name its host
            response.extensions[FINAL_EXTENSION] = functools.partial(member.observe_final, key)
            return response, lease

        # Open is done when the headers came: the service time is learnt from the final part.
        return await self._routed(call, send, call.model, observe=False)

    # -- hosts ---------------------------------------------------------------------------------

    @property
    def hosts(self) -> list[HostState]:
        now = time.monotonic()
        for member in self.members:
            if member.health.due(now):
                self._spawn(self._probe, member)
        return [m.state() for m in self.members]

    def member(self, url: str) -> Member:
        from ._host import parse_host

        base = parse_host(url)
        for member in self.members:
            if member.url == base:
                return member
        raise RequestError(f"no such host {url!r}; hosts: {', '.join(m.url for m in self.members)}", field="host")

    def add(self, host: Host) -> Member:
        base = host.base_url
        if any(m.url == base for m in self.members):
            raise RequestError(f"host {base} is already in this client", field="host")
        member = Member(host, self._make(host))
        self.members.append(member)  # in place: views (``with_options``) share the list
        return member

    async def remove(self, url: str) -> None:
        member = self.member(url)
        if len(self.members) == 1:
            raise RequestError("cannot remove the last host", field="host")
        member.removed = True
        self.members.remove(member)
        for key in [k for k, m in self._affinity.items() if m is member]:
            del self._affinity[key]
        while member.in_flight():  # noqa: ASYNC110 - no event to wait on: let what runs there finish
            await anyio.sleep(0.02)
        if self._owns_http:
            for transport in (member.transport, *member.retired):
                await transport.aclose()

    def _first(self) -> Member:
        if not self.members:
            raise ClientClosedError("this AsyncClient has no hosts")
        return self.members[0]

    # -- choosing ------------------------------------------------------------------------------

    def _choose(self, key: str, affinity: str | None, exclude: set[Member]) -> Member | None:
        """The host for one request of ``key`` (None: no usable, untried host has it)."""
        now = time.monotonic()
        best: Member | None = None
        best_score: tuple[bool, bool, float] | None = None
        any_free = False
        sticky = self._affinity.get(affinity) if affinity is not None else None
        sticky_free = False
        default_service = -1.0  # found on first need: the mean measured time of the others
        for member in self.members:
            health = member.health
            if health.state != "healthy":
                if health.due(now):
                    self._spawn(self._probe, member)
                if health.state != "half-open":
                    continue
            models = member.models
            if (models is not None and key not in models) or (exclude and member in exclude):
                continue
            limiter = member.limits.for_model(key)
            stats = limiter.stats
            busy = stats.in_flight + stats.waiting
            gate = limiter.gate_remaining
            free = busy < stats.limit and gate <= 0.0
            if free:
                any_free = True
                if member is sticky:
                    sticky_free = True
            service = member.service.get(key)
            if service is None:
                if default_service < 0:
                    known = [s for m in self.members if (s := m.service.get(key)) is not None]
                    default_service = sum(known) / len(known) if known else 1.0
                service = default_service
            score = (not free, key not in member.loaded, (busy + 1) / stats.limit * service / member.weight + gate)
            if best_score is None or score < best_score:
                best, best_score = member, score
        # the key stays where it is while that host has room, or nobody has
        if sticky is not None and affinity is not None and self._eligible(sticky, key, exclude) and (
            sticky_free or not any_free
        ):
            self._affinity.move_to_end(affinity)
            return sticky
        if best is not None and affinity is not None:
            self._affinity[affinity] = best
            self._affinity.move_to_end(affinity)
            if len(self._affinity) > AFFINITY_KEYS:
                self._affinity.popitem(last=False)
        return best

    @staticmethod
    def _eligible(member: Member, key: str, exclude: set[Member]) -> bool:
        return member.health.usable and member not in exclude and member.has(key) is not False

    def _last_resort(self, key: str) -> Member | None:
        """Every host that has ``key`` is ejected: the one whose back-off ends first, on trial."""
        ejected = [m for m in self.members if m.has(key) is not False]
        return min(ejected, key=lambda m: m.health.until) if ejected else None

    async def _routed(self, call: Call, send: Callable[[Member], Awaitable[T]], model: str, *,
                      observe: bool = True) -> T:
        """Send ``call`` on the chosen host; fail over as the module docstring says. ``observe``:
        learn the host's service time from the result (not for a stream that just opened)."""
        if self._closed:
            raise ClientClosedError("this AsyncClient is closed; create a new one")
        key = model_key(model)
        await self._ensure_catalog(key)
        policy = self.retry
        tried: set[Member] = set()
        attempt = 0
        free_failovers = len(self.members)
        while True:
            member = self._choose(key, call.affinity, tried)
            untried = member is not None
            if member is None:
                member = self._choose(key, call.affinity, set()) or self._last_resort(key)
            if member is None:
                raise self._not_found(call, model)
            started = time.monotonic()
            try:
                result = await send(member)
            except (OllamaConnectionError, OllamaTimeoutError, ResponseError) as exc:
                verdict = self._verdict(member, exc, key, attempt)
                if verdict == "raise" or not call.retryable:
                    raise
                tried.add(member)
                if verdict == "missing":
                    if not any(self._eligible(m, key, tried) for m in self.members):
                        raise
                    continue
                if verdict == "refused" and free_failovers > 0:
                    free_failovers -= 1
                elif attempt >= policy.max_retries:
                    raise
                else:
                    attempt += 1
                if not untried or not any(self._eligible(m, key, tried) for m in self.members):
                    await anyio.sleep(policy.delay(attempt or 1))
                continue
            member.health.success()
            member.loaded.add(key)
            if member.models is not None:
                member.models.add(key)
            if observe:
                total = getattr(result, "total_duration", None)
                member.observe(key, total / 1e9 if isinstance(total, int) else time.monotonic() - started)
            return result

    def _verdict(self, member: Member, exc: Exception, key: str, attempt: int) -> str:
        """What a failure on ``member`` means: ``raise``, ``refused``, ``elsewhere``, ``missing``."""
        health = member.health
        if isinstance(exc, OllamaConnectionError):
            refused = isinstance(exc.__cause__, (httpx.ConnectError, ConnectionRefusedError))
            health.failure(str(exc), eject=refused)
            return "refused" if refused else "elsewhere"
        if isinstance(exc, OllamaTimeoutError):
            health.failure(str(exc))
            return "refused" if exc.phase in ("connect", "pool") else "raise"
        if isinstance(exc, ModelNotFoundError):
            health.success()
            if member.models is not None:
                member.models.discard(key)
            member.loaded.discard(key)
            return "missing"
        if isinstance(exc, ResponseError) and not isinstance(exc, StreamError):
            status = exc.status_code
            if status == 503:
                member.limits.for_model(key).busy(self.retry.delay(attempt + 1))
                return "elsewhere"
            if status in _FAILOVER_STATUSES:
                if status >= 500:
                    health.failure(str(exc))
                return "elsewhere"
            health.success()  # the server answered: it is up, the request is what failed
        return "raise"

    def _not_found(self, call: Call, model: str) -> ModelNotFoundError:
        urls = ", ".join(m.url for m in self.members)
        return ModelNotFoundError(
            f"model '{model}' not found on any host (asked {urls})", 404, method=call.method, url=call.path,
            model=model,
        )

    # -- catalogs and probes -------------------------------------------------------------------

    async def _ensure_catalog(self, key: str) -> None:
        """Know which hosts have ``key``: fetch catalogs never fetched, refresh stale ones."""
        now = time.monotonic()
        if now - self._catalog_checked.get(key, -math.inf) < 1.0:
            return  # checked within the last second: the per-request cost stays a dict lookup
        cold = [m for m in self.members if m.fetched == -math.inf and m.health.usable]
        if cold:
            await self._refresh_all(cold)
        for member in self.members:
            if now - member.fetched > CATALOG_TTL and member.health.usable and not member.refreshing:
                self._spawn(self._refresh, member)
        if all(m.has(key) is False for m in self.members):
            last = self._missing.get(key, -math.inf)
            if now - last >= MISSING_RECHECK:
                self._missing[key] = now
                await self._refresh_all([m for m in self.members if m.health.usable], force=True)
        if any(m.has(key) for m in self.members):
            self._catalog_checked[key] = now

    async def _refresh_all(self, members: list[Member], *, force: bool = False) -> None:
        async with anyio.create_task_group() as tg:
            for member in members:
                tg.start_soon(self._refresh, member, force)

    async def _refresh(self, member: Member, force: bool = False) -> None:
        """Ask ``member`` for ``/api/tags`` and ``/api/ps``; wait for a refresh already running."""
        if member.refreshing:
            if member.refreshed is not None:
                await member.refreshed.wait()
            if not force:
                return
        member.refreshing = True
        member.refreshed = done = anyio.Event()
        try:
            tags = await member.routed.request(Call("GET", "/api/tags", timeout=PROBE_TIMEOUT),
                                               ListResponse.model_validate_json)
            ps = await member.routed.request(Call("GET", "/api/ps", timeout=PROBE_TIMEOUT),
                                             ProcessResponse.model_validate_json)
        except (OllamaConnectionError, OllamaTimeoutError, ResponseError) as exc:
            self._verdict(member, exc, "", 0)
        else:
            member.models = {model_key(n) for m in tags.models if (n := m.model or m.name)}
            member.loaded = {model_key(n) for m in ps.models if (n := m.model or m.name)}
            member.fetched = time.monotonic()
            member.health.success()
        finally:
            member.refreshing = False
            done.set()

    async def _probe(self, member: Member) -> None:
        """One cheap request to an ejected host; an answer re-admits it (half-open).

        The probe goes over a new connection pool, which the host then keeps: the old pool may
        still hold connections to the server process that died, and reusing those would fail
        the probe, or the first requests after re-admission, for nothing.
        """
        health = member.health
        if health.probing:
            return
        health.probing = True
        fresh = self._make(member.host)
        try:
            probe = without_retries(fresh)
            await probe.request(Call("GET", "/api/version", timeout=PROBE_TIMEOUT), _ignore)
        except (OllamaConnectionError, OllamaTimeoutError, ResponseError) as exc:
            health.last_error = str(exc)
            health.eject()
            await fresh.aclose()
        else:
            member.adopt(fresh)
            health.readmit()
            member.fetched = -math.inf  # what it has may have changed while it was away
        finally:
            health.probing = False

    def _spawn(self, fn: Callable[[Member], Awaitable[None]] | Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``fn(*args)`` in the background (asyncio task or trio system task), cancelled on close."""
        scopes = self._scopes

        async def run() -> None:
            with anyio.CancelScope() as scope:
                scopes.add(scope)
                try:
                    await fn(*args)
                except Exception:
                    pass
                finally:
                    scopes.discard(scope)

        import asyncio
        import sys

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            trio = sys.modules.get("trio")
            # no event loop at all (``client.hosts`` from synchronous code): the next request probes
            with contextlib.suppress(RuntimeError):
                if trio is not None:
                    trio.lowlevel.spawn_system_task(run)
            return
        task = loop.create_task(run())
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    # -- management calls ----------------------------------------------------------------------

    async def _manage(self, call: Call, decode: Callable[[bytes], T]) -> T:
        path = call.path
        if path in _MERGED_PATHS:
            return await self._merged(call, decode)
        if path == "/api/show":
            model = _body_model(call.body)
            if model:
                return await self._routed(call, lambda m: m.routed.request(call, decode), model)
        if path.startswith(_BROADCAST_PATHS):
            results = await self.each(lambda m: m.transport.request(call, decode), usable_only=True)
            for value in results.values():
                if isinstance(value, BaseException):
                    raise value
            return next(iter(results.values()))  # type: ignore[return-value]
        return await self._any_host(call, decode)

    async def _any_host(self, call: Call, decode: Callable[[bytes], T]) -> T:
        """One usable host answers (the next one if it cannot)."""
        error: BaseException | None = None
        for member in sorted(self.members, key=lambda m: not m.health.usable):
            try:
                result = await member.routed.request(call, decode)
            except (OllamaConnectionError, OllamaTimeoutError) as exc:
                self._verdict(member, exc, "", 0)
                error = exc
                continue
            member.health.success()
            return result
        assert error is not None
        raise error

    async def _merged(self, call: Call, decode: Callable[[bytes], T]) -> T:
        """``list``/``ps`` over every host: one answer whose model entries each carry ``host``."""
        results = await self.each(lambda m: m.routed.request(call, decode), usable_only=False)
        merged: Any = None
        error: BaseException | None = None
        for url, value in results.items():
            if isinstance(value, BaseException):
                error = error or value
                continue
            entries = getattr(value, "models", None) or []
            for entry in entries:
                entry.host = url
            if merged is None:
                merged = value
            else:
                merged.models.extend(entries)
            member = self.member(url)
            names = {model_key(n) for e in entries if (n := e.model or e.name)}
            if call.path == "/api/tags":
                member.models = names
            else:
                member.loaded = names
        if merged is None:
            assert error is not None
            raise error
        return merged  # type: ignore[no-any-return]

    async def each(self, fn: Callable[[Member], Awaitable[T]], *, usable_only: bool) -> dict[str, T | Exception]:
        """``fn`` on every host at once; per host URL its result or its exception."""
        members = [m for m in self.members if m.health.usable or not usable_only] or list(self.members)
        results: dict[str, T | Exception] = {}

        async def one(member: Member) -> None:
            try:
                results[member.url] = await fn(member)
            except Exception as exc:
                results[member.url] = exc

        async with anyio.create_task_group() as tg:
            for member in members:
                tg.start_soon(one, member)
        return {m.url: results[m.url] for m in members}


_TASKS: set[Any] = set()  # asyncio keeps only weak references to tasks: hold them until done


def conversation_key(messages: object) -> str | None:
    """The affinity key of a chat: its messages up to and including the first user message.

    Every turn of one conversation starts with those, so all its turns get the same key.
    """
    if not isinstance(messages, list) or not messages:
        return None
    digest = hashlib.blake2b(digest_size=12)
    for message in messages:
        if not isinstance(message, dict):
            return None
        role = str(message.get("role", ""))
        digest.update(role.encode() + b"\0" + str(message.get("content") or "").encode() + b"\0")
        if role == "user":
            break
    return digest.hexdigest()


def _ignore(_: bytes) -> None:
    return None


def _body_model(body: object) -> str | None:
    if not isinstance(body, bytes):
        return None
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    model = obj.get("model") if isinstance(obj, dict) else None
    return model if isinstance(model, str) and model else None


class _FleetModelLimiter:
    """The limiters of one model on every host, as one (for the batch engine's 503 gate)."""

    def __init__(self, limiters: list[ModelLimiter]) -> None:
        self.limiters = limiters

    def busy(self, delay: float) -> None:
        for limiter in self.limiters:
            limiter.busy(delay)


class FleetLimits:
    """``client.limits`` of a multi-host client: the per-host :class:`Limits`, seen together."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def prepare(self, call: Call) -> None:
        """Know the hosts of ``call.model`` (and, for embed calls, whether each only embeds)."""
        router = self._router
        if not call.model:
            return
        await router._ensure_catalog(model_key(call.model))
        for member in router.members:
            if member.health.usable and member.has(model_key(call.model)) is not False:
                await member.limits.for_call(call, member.routed)

    def bound(self, model: str) -> int:
        """The most requests of ``model`` the whole fleet may have in flight."""
        key = model_key(model)
        return sum(m.limits.bound(model) for m in self._router.members if m.has(key) is not False) or 1

    def hosts_with(self, model: str) -> int:
        """How many hosts may serve ``model`` (those whose catalog lists it or is unknown)."""
        key = model_key(model)
        return sum(1 for m in self._router.members if m.has(key) is not False)

    def for_model(self, model: str) -> _FleetModelLimiter:
        return _FleetModelLimiter([m.limits.for_model(model) for m in self._router.members])

    def stats(self) -> dict[str, LimitStats]:
        """Per model, the sum over hosts (``limit`` is the fleet's bound; ``wait_max`` the worst)."""
        total: dict[str, LimitStats] = {}
        for per_model in self.stats_by_host().values():
            for key, st in per_model.items():
                acc = total.get(key)
                if acc is None:
                    total[key] = dataclasses.replace(st)
                    continue
                acc.limit += st.limit
                acc.mode = acc.mode if acc.mode == st.mode else "mixed"
                for name in ("in_flight", "max_in_flight", "waiting", "acquired", "busy_signals", "adjustments"):
                    setattr(acc, name, getattr(acc, name) + getattr(st, name))
                acc.wait_total += st.wait_total
                acc.wait_max = max(acc.wait_max, st.wait_max)
        return total

    def stats_by_host(self) -> dict[str, dict[str, LimitStats]]:
        """Per host URL, per model: what that host's limiter saw."""
        return {m.url: m.limits.stats() for m in self._router.members}
