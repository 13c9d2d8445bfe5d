"""Ray Data integration: bulk embed / generate / chat jobs on a fleet of Ollama servers.

``pip install 'ollama-async[ray]'``. Importing ``ollama_async`` never imports Ray; this module
does. ::

    import ray
    from ollama_async.ray import OllamaEmbed

    ds = ray.data.read_parquet("docs.parquet")
    ds = ds.map_batches(
        OllamaEmbed,
        fn_constructor_kwargs=dict(hosts=["gpu1:11434", "gpu2:11434"], model="nomic-embed-text", slots=1),
        concurrency=8, batch_size=256,
    )
    ds.write_parquet("vectors/")

Every actor sends each request where the job's *slot broker* (one async Ray actor per job) grants
it a slot: the sum of what all actors send one server never exceeds its ``slots + margin``, and
each request goes to the host with the most free slots. See ``docs/ray.md``.
"""

from ._broker import NAMESPACE, SlotBroker, slot_broker
from ._slots import HostStats, SlotTable
from ._udf import METRIC_COLUMNS, OllamaChat, OllamaEmbed, OllamaGenerate

__all__ = ["METRIC_COLUMNS", "NAMESPACE", "HostStats", "OllamaChat", "OllamaEmbed", "OllamaGenerate", "SlotBroker",
           "SlotTable", "slot_broker"]
