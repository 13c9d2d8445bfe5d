"""Model descriptions (:class:`ModelSpec`), per-model counters (:class:`ModelStats`) and names.

A :class:`ModelSpec` says how a simulated model behaves (kind, slots, latencies, output length,
embedding size, details shown by ``/api/tags``); the server keeps one :class:`StatsCounter` per
model and hands out immutable :class:`ModelStats` snapshots to callers on other threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_REGISTRY_PREFIXES = ("registry.ollama.ai/library/", "library/")

ModelKind = Literal["generate", "embed"]

_GENERATE_CAPS = ("completion", "tools", "thinking", "insert")
_EMBED_CAPS = ("embedding",)


@dataclass(frozen=True)
class ModelSpec:
    """How one simulated model behaves.

    ``slots`` is the server's ``OLLAMA_NUM_PARALLEL`` for this model; embed-only models are
    forced to one slot, as the real server does. Latencies are in milliseconds. ``tokens`` is the
    output length of a generate/chat request (``options.num_predict`` caps it). Token counts of
    prompts and inputs are whitespace-separated words. ``capabilities`` defaults to
    ``completion, tools, thinking, insert`` for generate models and ``embedding`` for embed models; leave
    a capability out to get the real server's 400 for requests that need it.
    """

    name: str
    kind: ModelKind = "generate"
    slots: int = 1
    load_ms: float = 0.0
    prompt_ms: float = 0.0
    prompt_token_ms: float = 0.0  # per prompt token not found in the prompt cache (_prompt_cache.py)
    token_ms: float = 0.0
    tokens: int = 8
    dim: int = 768
    embed_ms: float = 0.0
    context_length: int = 4096
    family: str = "llama"
    parameter_size: str = "1B"
    quantization_level: str = "Q4_K_M"
    capabilities: tuple[str, ...] | None = None
    contention: float = 0.0

    @classmethod
    def from_profile(cls, profile: str, name: str, **overrides: Any) -> ModelSpec:
        """A model that times like one of the :data:`PROFILES` (``"cpu"``, ``"gpu"``, ``"independent"``).

        ``overrides`` win over the profile's values, e.g. a smaller ``token_ms`` to scale a
        benchmark down in time while keeping the profile's shape (contention, slots).
        """
        try:
            values = PROFILES[profile]
        except KeyError:
            raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}") from None
        return cls(name=name, **{**values, **overrides})

    def __post_init__(self) -> None:
        if self.kind not in ("generate", "embed"):
            raise ValueError(f"ModelSpec.kind must be 'generate' or 'embed', not {self.kind!r}")
        if not self.name or not isinstance(self.name, str):
            raise ValueError("ModelSpec.name must be a non-empty string")
        if self.slots < 1:
            raise ValueError("ModelSpec.slots must be >= 1")
        if self.tokens < 0 or self.dim < 1 or self.context_length < 1:
            raise ValueError("ModelSpec.tokens must be >= 0, dim and context_length >= 1")
        if not 0.0 <= self.contention <= 4.0:
            raise ValueError("ModelSpec.contention must be between 0 and 4")
        for name in ("load_ms", "prompt_ms", "token_ms", "embed_ms", "prompt_token_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"ModelSpec.{name} must be >= 0")
        if self.kind == "embed" and self.slots != 1:
            # The real scheduler forces OLLAMA_NUM_PARALLEL=1 for embedding-only models.
            object.__setattr__(self, "slots", 1)
        if self.capabilities is None:
            caps = _EMBED_CAPS if self.kind == "embed" else _GENERATE_CAPS
            object.__setattr__(self, "capabilities", caps)
        else:
            object.__setattr__(self, "capabilities", tuple(self.capabilities))

    def has(self, capability: str) -> bool:
        """Whether the model advertises ``capability`` (``completion``, ``tools``, ...)."""
        return capability in (self.capabilities or ())

    def renamed(self, name: str) -> ModelSpec:
        """A copy of this spec under another name (``/api/copy``, ``/api/create``)."""
        return dataclasses.replace(self, name=name)

    @property
    def size_bytes(self) -> int:
        """A plausible on-disk size from parameter count and quantisation."""
        return model_size(self.parameter_size, self.quantization_level)

    @property
    def digest(self) -> str:
        """A stable hex digest (64 chars) derived from the canonical name."""
        return hashlib.sha256(canonical_name(self.name).encode()).hexdigest()


#: Server timing profiles for :meth:`ModelSpec.from_profile`.
#:
#: ``cpu``: Gemma 3 270M on 2 CPU cores, ``OLLAMA_NUM_PARALLEL=4`` (Ollama v0.33): one stream
#: ~65 tokens/s (15.4 ms a token), four at ~29 tokens/s each, so a step of four takes
#: 34.5 / 15.4 = 2.24x a step of one: ``contention = (2.24 - 1) / 3 = 0.41``. 24 generates of 32
#: tokens through a bound of 4 then take 6 x 32 x 34.5 ms = 6.6 s (measured: 6.7 s), 64 take
#: 17.7 s (measured: 17.6 s). Prompt eval: ~2 ms per token measured on short prompts.
#: ``gpu``: 8 slots, a step of eight barely slower than one (``contention`` 0.03), faster tokens.
#: ``independent``: every slot at full speed whatever the others do (the simulator's default).
PROFILES: dict[str, dict[str, Any]] = {
    "independent": {"contention": 0.0},
    "cpu": {"slots": 4, "token_ms": 15.4, "contention": 0.41, "prompt_ms": 4.0, "prompt_token_ms": 1.5,
            "tokens": 32},
    "gpu": {"slots": 8, "token_ms": 6.0, "contention": 0.03, "prompt_ms": 2.0, "prompt_token_ms": 0.1,
            "tokens": 32},
}


@dataclass(frozen=True)
class ModelStats:
    """A snapshot of one model's counters.

    ``requests``: requests that got a slot and ran (including ones whose client went away while
    generating). ``in_flight``: requests holding a slot now; ``max_in_flight``: the most at once
    (never above ``slots``). ``disconnects``: clients that went away before their response was
    complete, whether waiting or generating. ``queue_waits``/``queue_wait_s``: requests that had
    to wait for a slot and the total time waited (the server-side wait that shows up as
    ``total_duration - load_duration - prompt_eval_duration - eval_duration``).
    ``rejected_503``: 503 busy answers (full queue or an injected busy fault). ``loads``: model
    loads. ``waiting``: requests waiting right now, for a load or for a slot.
    """

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    disconnects: int = 0
    queue_waits: int = 0
    queue_wait_s: float = 0.0
    rejected_503: int = 0
    loads: int = 0
    waiting: int = 0


@dataclass
class StatsCounter:
    """Mutable counters, written on the server's loop thread and snapshotted from any thread."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    disconnects: int = 0
    queue_waits: int = 0
    queue_wait_s: float = 0.0
    rejected_503: int = 0
    loads: int = 0
    waiting: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def slot_acquired(self) -> None:
        """A request took a free slot (one handed over is counted by ``Slots.release``)."""
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight

    def queue_waited(self, waited_s: float) -> None:
        """A request that waited for its slot got it (already counted in flight at the hand-over)."""
        with self.lock:
            self.queue_waits += 1
            self.queue_wait_s += waited_s

    def add(self, name: str, value: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> ModelStats:
        with self.lock:
            return ModelStats(
                requests=self.requests,
                in_flight=self.in_flight,
                max_in_flight=self.max_in_flight,
                disconnects=self.disconnects,
                queue_waits=self.queue_waits,
                queue_wait_s=self.queue_wait_s,
                rejected_503=self.rejected_503,
                loads=self.loads,
                waiting=self.waiting,
            )

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.max_in_flight = self.in_flight
            self.disconnects = 0
            self.queue_waits = 0
            self.queue_wait_s = 0.0
            self.rejected_503 = 0
            self.loads = 0


_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/:]*$")


def split_tag(name: str) -> tuple[str, str]:
    """``"llama3.2:1b"`` -> ``("llama3.2", "1b")``; the tag defaults to ``latest``.

    A colon before the last ``/`` belongs to a host's port (``localhost:5000/m``), not a tag.
    """
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        base, tag = name[:colon], name[colon + 1 :]
        return base, tag or "latest"
    return name, "latest"


def canonical_name(name: str) -> str:
    """The key a model is stored under: lower case, registry prefix dropped, tag explicit."""
    n = name.strip().lower()
    for prefix in DEFAULT_REGISTRY_PREFIXES:
        if n.startswith(prefix):
            n = n[len(prefix) :]
            break
    base, tag = split_tag(n)
    return f"{base}:{tag}"


def display_name(name: str) -> str:
    """The shortest display form the real server lists (``llama3.2:latest``)."""
    n = name.strip()
    for prefix in DEFAULT_REGISTRY_PREFIXES:
        if n.lower().startswith(prefix):
            n = n[len(prefix) :]
            break
    base, tag = split_tag(n)
    return f"{base}:{tag}"


def full_name(name: str) -> str:
    """``registry.ollama.ai/library/llama3.2:latest``: the form used in capability errors."""
    short = display_name(name)
    return short if "/" in short.split(":")[0] else f"registry.ollama.ai/library/{short}"


def valid_name(name: str) -> bool:
    """Whether ``name`` is a syntactically valid model name."""
    return bool(name) and len(name) <= 350 and _NAME_RE.match(name) is not None


def model_size(parameter_size: str, quantization_level: str) -> int:
    """Bytes for ``parameter_size`` parameters at ``quantization_level`` (rough, deterministic)."""
    m = re.match(r"^\s*([0-9]*\.?[0-9]+)\s*([KMBT]?)", parameter_size.upper())
    params = 1e9
    if m:
        scale = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m.group(2)]
        params = float(m.group(1)) * scale
    q = quantization_level.upper()
    bits = 16.0
    for key, value in (("Q2", 2.6), ("Q3", 3.5), ("Q4", 4.8), ("Q5", 5.7), ("Q6", 6.6), ("Q8", 8.5)):
        if q.startswith(key):
            bits = value
            break
    else:
        if q in ("F32", "FP32"):
            bits = 32.0
    return int(params * bits / 8)


def spec_from_options(name: str, options: dict[str, str]) -> ModelSpec:
    """Build a spec from ``key=value`` strings (the CLI's ``--model`` syntax)."""
    ints = {"slots", "tokens", "dim", "context_length"}
    floats = {"load_ms", "prompt_ms", "token_ms", "embed_ms", "contention", "prompt_token_ms"}
    strs = {"kind", "family", "parameter_size", "quantization_level"}
    kwargs: dict[str, Any] = {}
    profile = options.get("profile")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    for key, raw in options.items():
        if key == "profile":
            continue
        if key in ints or key in floats:
            try:
                kwargs[key] = int(raw) if key in ints else float(raw)
            except ValueError:
                kind = "an integer" if key in ints else "a number"
                raise ValueError(f"model option {key}={raw!r}: expected {kind}") from None
        elif key in strs:
            kwargs[key] = raw
        elif key == "capabilities":
            kwargs[key] = tuple(c for c in raw.split("+") if c)
        else:
            raise ValueError(f"unknown model option {key!r}")
    if kwargs.get("kind") == "embed":
        kwargs.setdefault("family", "nomic-bert")
        kwargs.setdefault("parameter_size", "137M")
        kwargs.setdefault("quantization_level", "F16")
    if profile is not None:
        return ModelSpec.from_profile(profile, name, **kwargs)
    return ModelSpec(name=name, **kwargs)


def default_models() -> list[ModelSpec]:
    """A generate model ``llama3.2`` and an embed model ``nomic-embed-text``."""
    return [
        ModelSpec(name="llama3.2", parameter_size="3.2B"),
        ModelSpec(
            name="nomic-embed-text",
            kind="embed",
            dim=768,
            context_length=2048,
            family="nomic-bert",
            parameter_size="137M",
            quantization_level="F16",
        ),
    ]
