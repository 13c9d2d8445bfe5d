"""What may go over the wire: header checks before sending, and the limits on what is received.

Both transports (the fast pool of ``_fast.py`` and httpx) apply the same rules, written once
here and called from ``_transport.py``:

- :func:`check_headers`: a header name must be an RFC 9110 token and a value must be what h11
  accepts (visible characters, inner spaces/tabs; no CR, LF, NUL or other control character), so
  no value can inject a header or a second request. A bad one is a :class:`RequestError` naming
  the header, raised before anything is sent.
- :func:`check_host`: the host must be a valid DNS name once IDNA-2008-encoded (what the Host
  header carries and what both transports resolve): labels of 1-63 characters.
- :class:`WireLimits`: the largest response head, NDJSON line and whole body the client accepts,
  and how long a response head may take once its first byte arrived. Generous by default; beyond
  them a :class:`~ollama_async.ResponseTooLargeError` (or a read timeout for the head deadline).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from ._errors import RequestError

__all__ = [
    "DEFAULT_WIRE_LIMITS",
    "LimitExceeded",
    "WireLimits",
    "check_header_pairs",
    "check_headers",
    "check_host",
]

# RFC 9110 token; field value as h11 validates it (field-content, possibly empty).
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")


@dataclass(frozen=True)
class WireLimits:
    """Limits on what a response may contain (all sizes in bytes).

    ``max_head``: status line, headers and trailers, and any other run of framing bytes (chunk
    size lines) between body bytes. ``max_line``: one NDJSON line of a streamed reply.
    ``max_body``: a whole non-streamed body, after decompression. ``head_timeout``: seconds from
    the first byte of a response head to its end (a server trickling its head byte by byte times
    out even though each byte resets the read timeout); fast path only, httpx has no such hook.
    """

    max_head: int = 1 << 20
    max_line: int = 256 << 20
    max_body: int = 1 << 30
    head_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_head", "max_line", "max_body"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RequestError(f"must be an int > 0, not {value!r}", field=f"wire_limits.{name}")
        if not isinstance(self.head_timeout, (int, float)) or not self.head_timeout > 0:
            raise RequestError(f"must be a number > 0, not {self.head_timeout!r}", field="wire_limits.head_timeout")


DEFAULT_WIRE_LIMITS = WireLimits()


class LimitExceeded(httpx.TransportError):
    """A response went beyond a :class:`WireLimits` size (internal: mapped to ResponseTooLargeError).

    A transport error so that both transports raise it from the same places httpx errors come
    from; never retried (the same request would get the same response).
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


def _as_bytes(text: str | bytes, name: str, what: str) -> bytes:
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("ascii")  # what httpx does with a str header
    except UnicodeEncodeError:
        raise RequestError(f"header {what} must be ASCII: {text!r}", field=f"headers[{name!r}]") from None


def check_header_pairs(pairs: Iterable[tuple[str | bytes, str | bytes]]) -> None:
    """Raise :class:`RequestError` for the first header whose name or value could not be sent."""
    for raw_name, raw_value in pairs:
        label = raw_name if isinstance(raw_name, str) else raw_name.decode("latin-1")
        name = _as_bytes(raw_name, label, "name")
        if not _TOKEN.fullmatch(name):
            raise RequestError(f"invalid header name {label!r} (must be a token)", field=f"headers[{label!r}]")
        value = _as_bytes(raw_value, label, "value")
        if not _VALUE.fullmatch(value):
            problem = (
                "contains CR or LF" if b"\r" in value or b"\n" in value
                else "contains NUL" if b"\x00" in value
                else "has a control character or leading/trailing whitespace"
            )
            raise RequestError(f"invalid value for header {label!r}: {problem}", field=f"headers[{label!r}]")


def check_headers(headers: object) -> None:
    """:func:`check_header_pairs` for a mapping (``dict``, ``httpx.Headers``) or ``None``."""
    if headers is None:
        return
    if isinstance(headers, httpx.Headers):
        check_header_pairs(headers.raw)
    else:
        items = getattr(headers, "items", None)
        if items is None:
            raise RequestError(f"must be a mapping of header names to values, not {type(headers).__name__}",
                               field="headers")
        check_header_pairs(items())


def check_host(base_url: str) -> None:
    """Raise :class:`RequestError` unless ``base_url``'s host is a name both transports can resolve."""
    try:
        host = httpx.URL(base_url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise RequestError(f"invalid host in {base_url!r}: {exc}", field="host") from None
    try:
        ipaddress.ip_address(host.strip("[]"))
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise RequestError(
            f"invalid host name {host!r}: each dot-separated label must have 1 to 63 characters", field="host"
        )
