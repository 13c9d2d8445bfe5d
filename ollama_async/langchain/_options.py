"""Settings shared by the chat model and the embeddings: where the server is, and its client.

Both hold either a caller's :class:`~ollama_async.AsyncClient` (``client=``: one pool and one
per-model limiter shared by every chain, model and plain call that uses it) or the settings to
create their own (``base_url``, ``timeout``, ``max_retries``, ``concurrency``, ``api_key``,
``client_kwargs``), made lazily per event loop (see ``_runner.py``).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from .._client import AsyncClient
from .._limits import ConcurrencyInput
from .._transport import DEFAULT_TIMEOUT
from ._runner import ClientSource

__all__ = ["ClientSettings"]

#: Settings that only shape a client the model creates itself.
_CLIENT_MADE = frozenset({"base_url", "concurrency", "api_key", "client_kwargs"})


def _api_key_from_env() -> SecretStr | None:
    key = os.environ.get("OLLAMA_API_KEY")
    return SecretStr(key) if key else None


class ClientSettings(BaseModel):
    """The connection fields of a LangChain model backed by this library's client."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    client: AsyncClient | None = Field(default=None, exclude=True)
    """A shared client; when given, ``base_url``/``concurrency``/``client_kwargs`` are unused."""
    base_url: str | None = Field(default_factory=lambda: os.environ.get("OLLAMA_HOST"))
    """``[scheme://]host[:port]``; default ``OLLAMA_HOST``, else 127.0.0.1:11434."""
    timeout: float | None = None
    """Seconds per request; default the client's (10 s to connect, 10 min to read)."""
    max_retries: int | None = None
    """Retries on connection errors and 429/502/503/504; default the client's (2)."""
    concurrency: ConcurrencyInput = None
    """The per-model in-flight bound of a client this model creates (see ``AsyncClient``)."""
    api_key: SecretStr | None = Field(default_factory=_api_key_from_env)
    """Sent as ``Authorization: Bearer`` (ollama.com or an authenticating proxy); default ``OLLAMA_API_KEY``."""
    client_kwargs: dict[str, Any] = Field(default_factory=dict)
    """More ``AsyncClient`` arguments (``headers=``, ``verify=``, ...) for a client this model creates."""

    _source: ClientSource | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _client_or_settings(self) -> ClientSettings:
        """A given client brings its own host and settings: also passing them would be ignored."""
        if self.client is not None:
            clash = sorted(self.model_fields_set & _CLIENT_MADE)
            if clash:
                raise ValueError(f"{', '.join(clash)} configure a client this model creates; with client= "
                                 "set them on that AsyncClient instead")
        return self

    def _new_client(self) -> AsyncClient:
        kwargs = dict(self.client_kwargs)
        if self.api_key is not None:
            headers = dict(kwargs.get("headers") or {})
            headers.setdefault("Authorization", f"Bearer {self.api_key.get_secret_value()}")
            kwargs["headers"] = headers
        return AsyncClient(
            self.base_url,
            timeout=DEFAULT_TIMEOUT if self.timeout is None else self.timeout,
            max_retries=2 if self.max_retries is None else self.max_retries,
            concurrency=self.concurrency,
            **kwargs,
        )

    @property
    def clients(self) -> ClientSource:
        """Where this model's calls get their client (made on first use)."""
        source = self._source
        if source is None:
            given = self.client
            if given is not None and self.max_retries is not None:
                given = given.with_options(max_retries=self.max_retries)
            source = self._source = ClientSource(given, self._new_client, self.client)
        return source

    async def aclose(self) -> None:
        """Close the client this model made for the running event loop.

        A client given with ``client=`` is the caller's and stays open. Models that made their own
        clients hold one per event loop they were used from; an application that ends a loop
        while the process goes on can close it here first.
        """
        if self._source is not None:
            await self._source.aclose()

    def close(self) -> None:
        """Close the client this model made for its sync calls (on the loop thread)."""
        if self._source is not None:
            self._source.close()

    def _call_timeout(self) -> dict[str, Any]:
        """``timeout=`` for each call when a shared client is used and a timeout was set here."""
        return {"timeout": self.timeout} if self.client is not None and self.timeout is not None else {}
