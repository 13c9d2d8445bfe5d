"""Embed a dataset on Ray Data across several Ollama servers, one slot bound for the whole job.

Runs as it is: without ``OLLAMA_HOST`` it starts two simulated servers on loopback ports and a
local Ray instance (``pip install 'ollama-async[ray]'``). With ``OLLAMA_HOST=gpu1:11434,gpu2:11434``
it uses your servers (``OLLAMA_EMBED_MODEL`` picks the model).
"""

from __future__ import annotations

import contextlib
import os

import ray
import ray.data

from ollama_async.ray import OllamaEmbed, slot_broker
from ollama_async.testing import ModelSpec, Simulator


def main() -> None:
    model = os.environ.get("OLLAMA_EMBED_MODEL", "nomic-embed-text")
    with contextlib.ExitStack() as stack:
        if os.environ.get("OLLAMA_HOST"):
            hosts = os.environ["OLLAMA_HOST"]
        else:  # two simulated servers, one embedding slot each (as Ollama gives embed-only models)
            sims = [stack.enter_context(Simulator([ModelSpec(model, kind="embed", dim=256, embed_ms=1)]))
                    for _ in range(2)]
            hosts = ",".join(s.url for s in sims)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        stack.callback(ray.shutdown)
        ray.data.DataContext.get_current().enable_progress_bars = False

        ds = ray.data.from_items([{"id": i, "text": f"document number {i}"} for i in range(2_000)])
        settings = {"hosts": hosts, "model": model, "slots": 1, "batch_size": 32, "job": "example"}
        ds = ds.map_batches(OllamaEmbed, fn_constructor_kwargs=settings,
                            compute=ray.data.ActorPoolStrategy(size=2), batch_size=1024)
        rows = ds.take_all()  # or ds.write_parquet("vectors/")

        failed = [r for r in rows if r["error"] is not None]
        print(f"{len(rows)} rows, {len(failed)} failed, dim {len(rows[0]['embedding'])}")
        broker = slot_broker(hosts, model, slots=1, job="example")  # what the job's slot broker saw
        for host in ray.get(broker.stats.remote()):
            print(f"{host['host']}: {host['granted']} requests, at most {host['max_in_use']} in flight "
                  f"(bound {host['bound']} = 1 slot + 1 margin)")


if __name__ == "__main__":
    main()
