"""Where the server is: ``host=`` / ``OLLAMA_HOST`` parsed as Ollama parses it, and the API key.

``[scheme://]host[:port][/path]``: no scheme means ``http`` and port 11434; ``http://h`` means
port 80 and ``https://h`` 443; an empty host is 127.0.0.1; a path is a base path that every
endpoint is appended to. ``0.0.0.0`` and ``::`` are where a server *listens*; a client reaches
the same machine at 127.0.0.1 / ::1 (the official client tries to connect to 0.0.0.0 as given).
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Generator

import httpx

from ._errors import RequestError

__all__ = ["ApiKeyAuth", "parse_host"]

DEFAULT_PORT = 11434
#: letters (any script: IDNA names are encoded later, by the transport), digits, _, - and .
_HOSTNAME = re.compile(r"\w(?:[\w.-]*\w)?\.?\Z")


def parse_host(host: str | None) -> str:
    """Return the base URL for ``host`` (``None``/empty: ``OLLAMA_HOST``'s default, 127.0.0.1:11434).

    >>> parse_host(None)
    'http://127.0.0.1:11434'
    >>> parse_host('example.com:56789/path/')
    'http://example.com:56789/path'
    >>> parse_host('https://example.com')
    'https://example.com:443'
    >>> parse_host('0.0.0.0')
    'http://127.0.0.1:11434'
    >>> parse_host('[::]:8080')
    'http://[::1]:8080'
    """
    host = (host or "").strip()
    port = DEFAULT_PORT
    scheme, sep, hostport = host.partition("://")
    if not sep:
        scheme, hostport = "http", host
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    else:
        raise RequestError(f"unsupported scheme {scheme!r} in {host!r} (use http or https)", field="host")

    try:
        split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
        name = split.hostname or "127.0.0.1"
        port = split.port or port
    except ValueError as exc:  # a port that is not a number or out of range
        raise RequestError(f"invalid host {host!r}: {exc}", field="host") from None

    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        if not _HOSTNAME.match(name):
            raise RequestError(f"invalid host {host!r}: {name!r} is not a host name or address", field="host") from None
    else:
        if ip.is_unspecified:
            name = "127.0.0.1" if ip.version == 4 else "::1"
        if ip.version == 6 or ":" in name:
            name = f"[{name}]"

    path = split.path.strip("/")
    return f"{scheme}://{name}:{port}/{path}" if path else f"{scheme}://{name}:{port}"


def api_key_from_env() -> str | None:
    """``OLLAMA_API_KEY`` when set and non-empty."""
    return os.environ.get("OLLAMA_API_KEY") or None


class ApiKeyAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <key>`` only to requests for the configured origin.

    The key never leaves for another host: not on a redirect elsewhere, not on an absolute URL
    that points somewhere else, and it does not override an Authorization header set per request.
    """

    def __init__(self, api_key: str, base_url: str) -> None:
        self._header = f"Bearer {api_key}"
        url = httpx.URL(base_url)
        self._origin = (url.scheme, url.host, url.port)

    @property
    def header_value(self) -> str:
        """The Authorization value sent (checked like any header before anything is sent)."""
        return self._header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = request.url
        if (url.scheme, url.host, url.port) == self._origin and "authorization" not in request.headers:
            request.headers["Authorization"] = self._header
        yield request
