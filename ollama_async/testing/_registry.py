"""The simulated model library and what every endpoint shares: entries, faults, replies.

:class:`AppState` holds the models (by canonical name), blobs, the fault plan, the scheduler
and the embedding cache. It lives on the simulator's event loop; the public
:class:`~._server.Simulator` touches it from other threads only through thread-safe paths
(lock-protected counters and fault plan; model changes are posted to the loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from ._faults import Fault, FaultPlan
from ._http import JSON_CT, Connection
from ._json import dumps
from ._models import ModelSpec, StatsCounter, canonical_name, display_name
from ._prompt_cache import PromptCaches
from ._scheduler import Runner, Scheduler
from ._text import EmbeddingCache

SIMULATED_VERSION = "0.32.0"


def local_rfc3339(ts: float) -> str:
    """A wall-clock time in the local zone (how the real server shows modified_at/expires_at)."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc).astimezone()
    text = dt.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class ModelEntry:
    """One model in the simulated library, with its loaded state and counters."""

    __slots__ = (
        "display",
        "key",
        "license",
        "modified_at",
        "parameters",
        "runner",
        "spec",
        "stats",
        "system",
        "template",
    )

    def __init__(self, spec: ModelSpec, keep_alive_s: float, stats: StatsCounter | None = None) -> None:
        self.spec = spec
        self.key = canonical_name(spec.name)
        self.display = display_name(spec.name)
        self.stats = stats if stats is not None else StatsCounter()
        self.runner = Runner(spec, self.stats, keep_alive_s)
        self.modified_at = time.time()
        self.system = ""
        self.template = "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}"
        self.parameters: dict[str, Any] = {}
        self.license = ""


class AppState:
    """The server's state plus the helpers all handlers use."""

    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        max_queue: int,
        seed: int,
        keep_alive_s: float,
        version: str = SIMULATED_VERSION,
        pullable: Iterable[str | ModelSpec] | None = None,
    ) -> None:
        self.seed = seed
        self.keep_alive_s = keep_alive_s
        self.version = version
        self.scheduler = Scheduler(max_queue, keep_alive_s)
        self.faults = FaultPlan()
        self.embed_cache = EmbeddingCache()
        self.prompt_caches = PromptCaches()
        self.models: dict[str, ModelEntry] = {}
        self.blobs: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self.pullable: dict[str, ModelSpec | None] | None = None
        if pullable is not None:
            self.pullable = {}
            for item in pullable:
                if isinstance(item, ModelSpec):
                    self.pullable[canonical_name(item.name)] = item
                else:
                    self.pullable[canonical_name(item)] = None
        for spec in models:
            self.add_model(spec)

    # --- registry ----------------------------------------------------------------------------

    def add_model(self, spec: ModelSpec) -> ModelEntry:
        key = canonical_name(spec.name)
        old = self.models.get(key)
        if old is not None:
            self.scheduler.unload(old.runner)
        entry = ModelEntry(spec, self.keep_alive_s, old.stats if old is not None else None)
        self.models[key] = entry
        return entry

    def remove_model(self, name: str) -> bool:
        entry = self.models.pop(canonical_name(name), None)
        if entry is None:
            return False
        self.scheduler.unload(entry.runner)
        return True

    def canon(self, name: str) -> str:
        key = self._names.get(name)
        if key is None:
            key = canonical_name(name)
            if len(self._names) < 10000:
                self._names[name] = key
        return key

    def _pull_spec(self, name: str) -> ModelSpec | None:
        key = canonical_name(name)
        if self.pullable is None:
            if key.split("/")[-1].startswith("missing"):
                return None
            spec = None
        else:
            if key not in self.pullable:
                return None
            spec = self.pullable[key]
        if spec is not None:
            return spec.renamed(name)
        if "embed" in key:
            return ModelSpec(
                name=name, kind="embed", family="nomic-bert", parameter_size="137M", quantization_level="F16"
            )
        return ModelSpec(name=name)

    # --- faults ------------------------------------------------------------------------------

    async def _pre_fault(
        self, fault: Fault | None, conn: Connection, stats: StatsCounter | None, streaming: bool
    ) -> bool:
        """Apply what happens before the first byte; True when the request is answered."""
        if fault is None:
            return False
        kind = fault.kind
        if kind == "status" or kind == "busy":
            headers = None
            if fault.retry_after is not None:
                headers = [("Retry-After", f"{fault.retry_after:g}")]
            if fault.status_code == 503 and stats is not None:
                stats.add("rejected_503")
            conn.respond(fault.status_code, dumps({"error": fault.error}), JSON_CT, headers)
            return True
        if kind == "slow_first_byte":
            await asyncio.sleep(fault.seconds)
            return False
        if kind == "reset" and not streaming:
            conn.abort()
            return True
        return False

    def _take_fault(self, path: str, key: str | None) -> Fault | None:
        faults = self.faults
        if not faults.active:
            return None
        return faults.take(path, key)

    def _details(self, entry: ModelEntry) -> dict[str, Any]:
        spec = entry.spec
        return {
            "parent_model": "",
            "format": "gguf",
            "family": spec.family,
            "families": [spec.family],
            "parameter_size": spec.parameter_size,
            "quantization_level": spec.quantization_level,
        }
