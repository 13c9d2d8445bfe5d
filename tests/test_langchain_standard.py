"""LangChain's standard test suites for ``ChatOllamaAsync`` and ``OllamaAsyncEmbeddings``.

The integration suites run against the simulator on a free loopback port (one per class). The
image the image-input tests would fetch from the internet is served locally instead, by patching
the suite's ``httpx.get`` for image URLs only; the test bodies run unchanged. Standard tests that
do not apply to Ollama are left off by the suite's own capability properties (the defaults:
PDF, audio, VCR, serialization) and listed, with the reason, in README.md.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from ollama_async.langchain import ChatOllamaAsync, OllamaAsyncEmbeddings
from ollama_async.testing import ModelSpec, Simulator

pytestmark = pytest.mark.anyio

CHAT_MODEL = "llama3.2"
OTHER_CHAT_MODEL = "qwen3"
EMBED_MODEL = "nomic-embed-text"
_SERVER: dict[str, str] = {}


def _png(width: int = 2, height: int = 2) -> bytes:
    """A small valid RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x80\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="class")
def simulator() -> Iterator[Simulator]:
    specs = [
        ModelSpec(CHAT_MODEL, slots=2, tokens=12),
        ModelSpec(OTHER_CHAT_MODEL, slots=2, tokens=12),
        ModelSpec(EMBED_MODEL, kind="embed", dim=64),
    ]
    with Simulator(specs) as sim:
        _SERVER["url"] = sim.url
        yield sim
    _SERVER.clear()


@pytest.fixture(autouse=True)
def _local_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve the suite's image URL locally (tests and benchmarks use loopback only)."""
    import langchain_tests.integration_tests.chat_models as suite

    png = _png()

    def get(url: str, *args: Any, **kwargs: Any) -> httpx.Response:
        if url.endswith(".png"):
            return httpx.Response(200, content=png, request=httpx.Request("GET", url))
        raise AssertionError(f"the standard suite tried to fetch {url} from the network")

    monkeypatch.setattr(suite.httpx, "get", get)


class TestChatUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatOllamaAsync]:
        return ChatOllamaAsync

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": CHAT_MODEL}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OLLAMA_HOST": "http://127.0.0.1:9", "OLLAMA_API_KEY": "test"},
            {"model": CHAT_MODEL},
            {"base_url": "http://127.0.0.1:9", "api_key": "test"},
        )


@pytest.mark.usefixtures("simulator")
class TestChatIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatOllamaAsync]:
        return ChatOllamaAsync

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": CHAT_MODEL, "base_url": _SERVER["url"]}

    @property
    def model_override_value(self) -> str:
        return OTHER_CHAT_MODEL

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True


class TestEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[OllamaAsyncEmbeddings]:
        return OllamaAsyncEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": EMBED_MODEL}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return ({"OLLAMA_HOST": "http://127.0.0.1:9"}, {"model": EMBED_MODEL}, {"base_url": "http://127.0.0.1:9"})


@pytest.mark.usefixtures("simulator")
class TestEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[OllamaAsyncEmbeddings]:
        return OllamaAsyncEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": EMBED_MODEL, "base_url": _SERVER["url"]}
