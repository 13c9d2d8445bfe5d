"""The markdown table and the PNG plots of a ``benchmarks/run.py`` result document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

X = "\u00d7"  # the multiplication sign
DASH = "\u2013"
ORDER = ["ollama_async", "ollama", "httpx", "aiohttp", "ollama_async[httpx]", "ollama_async[adaptive]"]
LABELS = {
    "ollama_async": "ollama_async",
    "ollama": "ollama (official)",
    "httpx": "raw httpx",
    "aiohttp": "raw aiohttp",
    "ollama_async[httpx]": "ollama_async, httpx path",
    "ollama_async[adaptive]": "ollama_async, default limits",
}
COLORS = {
    "ollama_async": "#1f77b4",
    "ollama": "#d62728",
    "httpx": "#7f7f7f",
    "aiohttp": "#2ca02c",
    "ollama_async[httpx]": "#aec7e8",
    "ollama_async[adaptive]": "#9467bd",
}


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _x(a: float, b: float) -> str:
    return f"{a / b:.2f}{X}"


def markdown(doc: dict[str, Any]) -> str:
    res, m = doc["results"], doc["machine"]
    lines = [
        f"Measured {m['date']} with `{doc['command']}` ({doc['mode']}: {doc['config']['rounds']} round(s) of "
        f"{doc['config']['seconds']} s per cell, median) on {m['cpu']}, {m['cores']} cores, Python {m['python']}; "
        f"load average {m['load_average_at_start'][0]} at start, {m['load_average_at_end'][0]} at end.",
        "",
    ]
    gen = res.get("generate")
    if gen:
        keys = sorted(gen, key=lambda k: int(k[1:]))
        top = keys[-1]
        head = " | ".join(f"req/s @{k[1:]}" for k in keys)
        lines += [
            "**Non-streamed generate** (instant server, 1 token): requests/s by concurrency, client CPU per request",
            "",
            f"| client | {head} | CPU µs/req @{top[1:]} | {X} official @{top[1:]} | {X} aiohttp @{top[1:]} |",
            "|---" * (len(keys) + 4) + "|",
        ]
        for name in ORDER:
            if name not in gen[top] and name not in gen[keys[0]]:
                continue
            cells = [_fmt(gen[k][name]["rate"]) if name in gen[k] else DASH for k in keys]
            t = gen[top].get(name)
            tail = [_fmt(t["cpu_us_per_item"]), _x(t["rate"], gen[top]["ollama"]["rate"]),
                    _x(t["rate"], gen[top]["aiohttp"]["rate"])] if t else [DASH] * 3
            lines.append(f"| {LABELS[name]} | " + " | ".join(cells + tail) + " |")
        lines.append("")
    for key, title, unit, per in (
        ("stream", "**Streaming**", "chunks/s", "CPU µs/chunk"),
        ("embed", "**Embeddings**", "vectors/s", "CPU ms/request"),
    ):
        block = res.get(key)
        if not block:
            continue
        clients = block["clients"]
        if key == "stream":
            lines.append(f"{title} ({block['streams']} concurrent {block['tokens']}-token streams, every line decoded)")
        else:
            lines.append(f"{title} ({block['inputs_per_request']} texts {X} {block['dim']} dims per request, "
                         f"{block['concurrency']} at a time, each ending in a float32 numpy array)")
        lines += ["", f"| client | {unit} | {per} | {X} official | {X} aiohttp |", "|---|---|---|---|---|"]
        for name in ORDER:
            if name not in clients:
                continue
            c = clients[name]
            cost = c["cpu_us_per_item"] if key == "stream" else c["cpu_us_per_item"] * block["inputs_per_request"] / 1e3
            lines.append(f"| {LABELS[name]} | {_fmt(c['rate'])} | {_fmt(cost, 2)} | "
                         f"{_x(c['rate'], clients['ollama']['rate'])} | {_x(c['rate'], clients['aiohttp']['rate'])} |")
        lines.append("")
    lat = res.get("latency")
    if lat:
        lines += [
            f"**Latency** at concurrency {lat['concurrency']} (`{lat['model']}`): what the client adds to raw aiohttp",
            "",
            "| client | p50 ms | p99 ms | p50 added | p99 added |",
            "|---|---|---|---|---|",
        ]
        for name in ORDER:
            if name in lat["clients"]:
                c = lat["clients"][name]
                lines.append(f"| {LABELS[name]} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | "
                             f"{c['p50_added_ms']:+.2f} ms | {c['p99_added_ms']:+.2f} ms |")
        lines.append("")
    batch = res.get("batch")
    if batch:
        lines.append("**Saturation and memory** (`benchmarks/bench_batch.py`)")
        lines.append("")
        if "skipped" in batch:
            lines.append(f"Not run: {batch['skipped']}.")
        elif "markdown" in batch:
            lines.append(batch["markdown"])
        elif "results" in batch:
            lines += _batch_rows(batch["results"])
        else:
            lines.append(f"`{batch.get('command')}` exited {batch.get('exit_code')}: {batch.get('error', '')[:300]}")
        lines.append("")
    if doc["targets"]:
        lines += ["**Targets**", "", "| target | goal | measured | met |", "|---|---|---|---|"]
        for t in doc["targets"]:
            lines.append(f"| {t['target']} | ≥ {t['goal']}{X} | {t['measured']}{X} | {'yes' if t['met'] else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def _batch_rows(data: Any) -> list[str]:
    """bench_batch.py's results as flat rows (when it printed no table of its own)."""
    rows: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append(f"| {prefix} | {value} |")

    walk("", data)
    return ["| metric | value |", "|---|---|", *rows[:60]]


def plots(doc: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = doc["results"]
    made: list[Path] = []
    gen = res.get("generate")
    if gen:
        keys = sorted(gen, key=lambda k: int(k[1:]))
        names = [n for n in ORDER if any(n in gen[k] for k in keys)]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs = [j + i * width for j, k in enumerate(keys) if name in gen[k]]
            ys = [gen[k][name]["rate"] for k in keys if name in gen[k]]
            cs = [gen[k][name]["cpu_us_per_item"] for k in keys if name in gen[k]]
            ax1.bar(xs, ys, width, label=LABELS[name], color=COLORS[name])
            ax2.bar(xs, cs, width, label=LABELS[name], color=COLORS[name])
        for ax, title in ((ax1, "requests/s (higher is better)"), (ax2, "client CPU µs per request (lower is better)")):
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))], [f"concurrency {k[1:]}" for k in keys])
            ax.set_title(title)
            ax.grid(axis="y", alpha=0.3)
        ax2.set_yscale("log")
        ax1.legend(fontsize=8)
        fig.suptitle("Non-streamed generate against an instant server")
        fig.tight_layout()
        made.append(out / "generate.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    panels = [(k, t) for k, t in (("stream", "streaming: chunks decoded/s"), ("embed", "embed: vectors/s to float32 numpy"))
              if res.get(k)]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
        for ax, (key, title) in zip(axes[0], panels, strict=True):
            clients = res[key]["clients"]
            names = [n for n in ORDER if n in clients]
            vals = [clients[n]["rate"] for n in names]
            bars = ax.bar([LABELS[n] for n in names], vals, color=[COLORS[n] for n in names])
            base = clients["ollama"]["rate"]
            for bar, v in zip(bars, vals, strict=True):
                ax.annotate(f"{v / base:.1f}{X}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=9)
            ax.set_title(f"{title} ({X} official)")
            ax.tick_params(axis="x", labelrotation=15)
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        made.append(out / "stream_embed.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    lat = res.get("latency")
    if lat:
        clients = lat["clients"]
        names = [n for n in ORDER if n in clients]
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [clients[n]["p50_ms"] for n in names], 0.4, label="p50", color="#1f77b4")
        ax.bar([x + 0.2 for x in xs], [clients[n]["p99_ms"] for n in names], 0.4, label="p99", color="#ff7f0e")
        ax.set_xticks(list(xs), [LABELS[n] for n in names], rotation=15)
        ax.set_ylabel("ms per request")
        ax.set_title(f"Latency at concurrency {lat['concurrency']} (8 tokens {X} 1 ms)")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        made.append(out / "latency.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)
    return made
