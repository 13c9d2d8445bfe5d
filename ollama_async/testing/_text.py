"""Deterministic model output: token text, token ids, logprobs, JSON for a schema, embeddings.

Everything is a pure function of the input text and a seed, so the same request always gives
the same answer and a test can assert on it. Text is picked from a fixed vocabulary with a
SplitMix64 stream seeded by a BLAKE2b hash of the prompt; embeddings come from SHAKE-256 of the
text, L2-normalised. Encoded embedding vectors are cached (bounded by bytes) because clients and
benchmarks send the same texts again and again.
"""

from __future__ import annotations

import array
import hashlib
import importlib
import math
import struct
import sys
import zlib
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from ._json import HAVE_ORJSON, dumps

_np: Any
try:
    _np = importlib.import_module("numpy")
except ImportError:  # pragma: no cover - exercised only without numpy
    _np = None

_orjson: Any = importlib.import_module("orjson") if HAVE_ORJSON else None

_VOCAB_TEXT = """
    the of and to in is it that was for on are as with his they at be this have from or one had by
    word but not what all were we when your can said there use an each which she do how their if
    will up other about out many then them these so some her would make like him into time has look
    two more write go see number no way could people my than first water been call who oil its now
    find long down day did get come made may part over new sound take only little work know place
    year live me back give most very after thing our just name good sentence man think say great where
    help through much before line right too mean old any same tell boy follow came want show also
    around form three small set put end does another well large must big even such because turn here
    why ask went men read need land different home us move try kind hand picture again change off
    play spell air away animal house point page letter mother answer found study still learn should
    world high every near add food between own below country plant last school father keep tree never
    start city earth eye light thought head under story saw left few while along might close something
    seem next hard open example begin life always those both paper together got group often run
"""
VOCAB: tuple[str, ...] = tuple(_VOCAB_TEXT.split())
_V = len(VOCAB)
_MASK = (1 << 64) - 1
TOKEN_ID_BASE = 1000


def seed_key(*parts: str | int) -> int:
    """A 64-bit key from text and numbers (stable across processes, unlike ``hash``)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(str(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little")


class Rng:
    """SplitMix64: tiny, fast, and identical on every platform."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def next(self) -> int:
        self.state = x = (self.state + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        return x ^ (x >> 31)

    def below(self, n: int) -> int:
        return self.next() % n if n > 0 else 0

    def unit(self) -> float:
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)


@lru_cache(maxsize=4096)
def token_stream(key: int, n: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``n`` token strings (first without a leading space) and their ids for ``key``."""
    rng = Rng(key)
    pieces: list[str] = []
    ids: list[int] = []
    for i in range(n):
        idx = rng.below(_V)
        word = VOCAB[idx]
        pieces.append(word if i == 0 else " " + word)
        ids.append(TOKEN_ID_BASE + idx)
    return tuple(pieces), tuple(ids)


def count_tokens(text: str) -> int:
    """Token count of a text: whitespace-separated words."""
    return len(text.split())


def truncate_tokens(text: str, limit: int) -> str:
    """The first ``limit`` words of ``text``."""
    return " ".join(text.split()[:limit])


def text_token_ids(text: str) -> list[int]:
    """Stable token ids for the words of a prompt (for a generate reply's ``context``)."""
    crc = zlib.crc32
    return [TOKEN_ID_BASE + _V + crc(w.encode()) % 30000 for w in text.split()]


def split_text(text: str, n: int) -> tuple[str, ...]:
    """``text`` cut into at most ``n`` consecutive pieces of near-equal length."""
    if n <= 0 or not text:
        return ()
    n = min(n, len(text))
    step, extra = divmod(len(text), n)
    out: list[str] = []
    pos = 0
    for i in range(n):
        end = pos + step + (1 if i < extra else 0)
        out.append(text[pos:end])
        pos = end
    return tuple(out)


def logprob_entry(piece: str, key: int, index: int, top: int) -> dict[str, Any]:
    """A ``logprobs`` entry for one generated token: ``{token, logprob, bytes, top_logprobs?}``."""
    rng = Rng(key ^ (index * 0x2545F4914F6CDD1D))
    lp = -round(rng.unit() * 2.0, 6)
    entry: dict[str, Any] = {"token": piece, "logprob": lp, "bytes": list(piece.encode())}
    if top > 0:
        alts: list[dict[str, Any]] = [{"token": piece, "logprob": lp, "bytes": list(piece.encode())}]
        cur = lp
        for _ in range(top - 1):
            word = " " + VOCAB[rng.below(_V)]
            cur = round(cur - 0.5 - rng.unit() * 2.0, 6)
            alts.append({"token": word, "logprob": cur, "bytes": list(word.encode())})
        entry["top_logprobs"] = alts
    return entry


# --- structured output -------------------------------------------------------------------------


def words(rng: Rng, n: int) -> str:
    return " ".join(VOCAB[rng.below(_V)] for _ in range(max(1, n)))


def schema_value(schema: Any, rng: Rng, root: Any = None, depth: int = 0) -> Any:
    """A deterministic value that satisfies the common parts of a JSON schema.

    Objects get their ``required`` properties (all properties when none are required), values
    of the declared types; ``enum``/``const``/``anyOf``/``oneOf``/local ``$ref`` are honoured.
    """
    if root is None:
        root = schema
    if not isinstance(schema, dict) or depth > 12:
        return words(rng, 2)
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return schema_value(target, rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[rng.below(len(enum))]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return schema_value((non_null or options)[0], rng, root, depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ is None:
        typ = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if typ == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else list(props)
        return {n: schema_value(props.get(n, {}), rng, root, depth + 1) for n in names}
    if typ == "array":
        lo = schema.get("minItems", 1)
        count = lo if isinstance(lo, int) and lo > 0 else 1
        hi = schema.get("maxItems")
        if isinstance(hi, int):
            count = min(count, hi)
        return [schema_value(schema.get("items", {}), rng, root, depth + 1) for _ in range(count)]
    if typ == "integer":
        lo_i = schema.get("minimum", 0)
        hi_i = schema.get("maximum", lo_i + 100 if isinstance(lo_i, (int, float)) else 100)
        lo_n = math.ceil(lo_i) if isinstance(lo_i, (int, float)) else 0
        hi_n = math.floor(hi_i) if isinstance(hi_i, (int, float)) else lo_n + 100
        return lo_n + rng.below(max(hi_n - lo_n, 0) + 1)
    if typ == "number":
        lo_f = schema.get("minimum", 0.0)
        hi_f = schema.get("maximum", 100.0)
        lo_v = float(lo_f) if isinstance(lo_f, (int, float)) else 0.0
        hi_v = float(hi_f) if isinstance(hi_f, (int, float)) else lo_v + 100.0
        return round(lo_v + (hi_v - lo_v) * rng.unit(), 3)
    if typ == "boolean":
        return rng.below(2) == 0
    if typ == "null":
        return None
    fmt = schema.get("format")
    if fmt == "date":
        return f"2024-01-{1 + rng.below(28):02d}"
    if fmt == "date-time":
        return f"2024-01-{1 + rng.below(28):02d}T12:00:00Z"
    if fmt == "email":
        return f"{VOCAB[rng.below(_V)]}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{VOCAB[rng.below(_V)]}"
    text = words(rng, 1 + rng.below(3))
    min_len = schema.get("minLength")
    if isinstance(min_len, int) and len(text) < min_len:
        text = (text + " ") * (min_len // (len(text) + 1) + 1)
        text = text[:min_len]
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and max_len >= 0:
        text = text[:max_len]
    return text


def format_text(fmt: Any, key: int, n_words: int) -> str:
    """The JSON text a model would produce for ``format`` (``"json"`` or a JSON schema)."""
    rng = Rng(key)
    value = schema_value(fmt, rng) if isinstance(fmt, dict) else {"response": words(rng, max(1, n_words))}
    return dumps(value).decode()


# --- embeddings --------------------------------------------------------------------------------

_EMBED_SALT = b"ollama-async-simulator/embedding\x00"
_U32_SCALE = 2.0 / 4294967296.0


def embedding_floats(text: str, dim: int, dimensions: int = 0) -> Any:
    """The L2-normalised float32 vector for ``text`` (numpy array, or a list without numpy).

    ``dimensions`` (0 < dimensions < dim) keeps the first values and re-normalises, as
    ``/api/embed`` does.
    """
    raw = hashlib.shake_256(_EMBED_SALT + text.encode("utf-8", "surrogatepass")).digest(4 * dim)
    if _np is not None:
        v = _np.frombuffer(raw, dtype="<u4").astype(_np.float64) * _U32_SCALE - 1.0
        v /= max(math.sqrt(float(v @ v)), 1e-12)
        v32 = v.astype(_np.float32)
        if 0 < dimensions < dim:
            v32 = v32[:dimensions].copy()
            v32 /= _np.float32(max(math.sqrt(float(v32.astype(_np.float64) @ v32)), 1e-12))
        return v32
    ints = array.array("I")  # pragma: no cover - numpy-less fallback
    ints.frombytes(raw)
    if sys.byteorder != "little":
        ints.byteswap()
    vals = [u * _U32_SCALE - 1.0 for u in ints]
    norm = max(math.sqrt(math.fsum(x * x for x in vals)), 1e-12)
    f32 = array.array("f", [x / norm for x in vals]).tolist()
    if 0 < dimensions < dim:
        f32 = f32[:dimensions]
        norm = max(math.sqrt(math.fsum(x * x for x in f32)), 1e-12)
        f32 = array.array("f", [x / norm for x in f32]).tolist()
    return f32


def encode_vector(vec: Any) -> bytes:
    """A JSON array of float32 values, as short as round-tripping allows."""
    if _np is not None and isinstance(vec, _np.ndarray):
        if _orjson is not None:
            return _orjson.dumps(vec, option=_orjson.OPT_SERIALIZE_NUMPY)  # type: ignore[no-any-return]
        return _encode_floats(vec.tolist())  # pragma: no cover
    return _encode_floats(vec)  # pragma: no cover


def _encode_floats(values: list[float]) -> bytes:
    """Nine significant digits round-trip every float32."""
    return ("[" + ",".join(f"{x:.9g}" for x in values) + "]").encode()


def vector_list(vec: Any) -> list[float]:
    """The vector as Python floats (the legacy endpoint's float64 numbers)."""
    if _np is not None and isinstance(vec, _np.ndarray):
        return vec.tolist()  # type: ignore[no-any-return]
    return list(vec)  # pragma: no cover


class EmbeddingCache:
    """Encoded vectors by ``(text, dim, dimensions)``, evicting the oldest past ``max_bytes``."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()

    def encoded(self, text: str, dim: int, dimensions: int = 0) -> bytes:
        key = (text, dim, dimensions if 0 < dimensions < dim else 0)
        items = self._items
        hit = items.get(key)
        if hit is not None:
            items.move_to_end(key)
            return hit
        data = encode_vector(embedding_floats(text, dim, dimensions))
        items[key] = data
        self._bytes += len(data) + len(text)
        while self._bytes > self.max_bytes and len(items) > 1:
            (old_text, _, _), old = items.popitem(last=False)
            self._bytes -= len(old) + len(old_text)
        return data


def float32_round(x: float) -> float:
    """``x`` rounded to the nearest float32 (used by tests and the pure-Python path)."""
    return float(struct.unpack("f", struct.pack("f", x))[0])
