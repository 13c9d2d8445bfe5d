"""The server's prompt cache, simulated: each slot of a loaded model keeps its last conversation.

Ollama keeps the KV cache of the last request in each of a model's ``OLLAMA_NUM_PARALLEL``
slots and gives a new request the slot whose cached prompt shares the longest prefix with it;
only the tokens after that prefix are evaluated. Here a slot remembers the conversation it ran
(its messages and the reply), a chat request finds the slot with the longest common message
prefix, and ``ModelSpec.prompt_token_ms`` is charged only for the tokens after it. That is what
makes a multi-host client's conversation affinity measurable: the same conversation on the same
server costs less prompt evaluation time than on a server that never saw it.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["PromptCaches"]


def _prefixes(messages: list[Any], reply: str | None) -> list[tuple[bytes, int]]:
    """(cumulative digest, cumulative tokens) after each message (and after the reply)."""
    from ._text import count_tokens

    digest = hashlib.blake2b(digest_size=16)
    out: list[tuple[bytes, int]] = []
    tokens = 0
    items = [(str(m.get("role", "")), str(m.get("content") or "")) for m in messages if isinstance(m, dict)]
    if reply is not None:
        items.append(("assistant", reply))
    for role, content in items:
        digest.update(role.encode() + b"\0" + content.encode() + b"\0")
        tokens += count_tokens(content) + 4
        out.append((digest.copy().digest(), tokens))
    return out


class _ModelCache:
    __slots__ = ("generation", "slots", "tick")

    def __init__(self, slots: int, generation: int) -> None:
        self.generation = generation
        self.slots: list[tuple[int, list[tuple[bytes, int]]]] = [(0, [])] * slots  # (last used, prefixes)
        self.tick = 0


class PromptCaches:
    """The prompt caches of every loaded model of one simulator (a model load starts empty)."""

    def __init__(self) -> None:
        self._models: dict[str, _ModelCache] = {}

    def use(self, model: str, slots: int, generation: int, messages: list[Any], reply: str) -> int:
        """Tokens of ``messages`` found in a slot's cache; the slot then holds this conversation.

        ``generation`` changes with every load of the model (its load count), which empties
        the cache, as unloading frees the real server's KV cache.
        """
        cache = self._models.get(model)
        if cache is None or cache.generation != generation or len(cache.slots) != slots:
            cache = self._models[model] = _ModelCache(slots, generation)
        asked = _prefixes(messages, None)
        best, best_tokens = -1, 0
        for i, (_, cached) in enumerate(cache.slots):
            tokens = 0
            for (a, n), (b, _) in zip(asked, cached, strict=False):
                if a != b:
                    break
                tokens = n
            if tokens > best_tokens:
                best, best_tokens = i, tokens
        if best < 0:  # no prefix anywhere: the least recently used slot
            best = min(range(slots), key=lambda i: cache.slots[i][0])
        cache.tick += 1
        cache.slots[best] = (cache.tick, _prefixes(messages, reply))
        return best_tokens
