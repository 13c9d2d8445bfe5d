"""Reading a column out of a Ray Data batch, and adding result columns to it.

A ``map_batches`` UDF gets a batch as a dict of numpy arrays (the default), a pandas DataFrame or
a pyarrow Table, depending on ``batch_format``; it gives back a pyarrow Table with the input
columns kept and the result columns added, typed. Embeddings are one float32 matrix
``(rows, dim)`` stored as ``fixed_size_list<float>[dim]``, never as lists of Python floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import RequestError

__all__ = ["column", "inferred", "ints", "plain", "strings", "vector_column", "with_columns"]


def plain(value: Any) -> Any:
    """numpy values (what Ray hands out for list and struct cells) as plain Python objects."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def column(batch: Any, name: str) -> list[Any]:
    """The values of column ``name`` as Python objects; a clear error naming it if it is missing."""
    names = _names(batch)
    if name not in names:
        raise RequestError(f"no column {name!r} in the batch (columns: {sorted(names)})", field="input_column")
    if hasattr(batch, "column") and hasattr(batch, "schema"):  # pyarrow.Table
        return [plain(v) for v in batch.column(name).to_pylist()]
    values = batch[name]
    if isinstance(values, np.ndarray) and values.dtype != object:
        return list(values.tolist())
    return [plain(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _names(batch: Any) -> list[str]:
    if hasattr(batch, "column_names"):
        return list(batch.column_names)
    if hasattr(batch, "columns"):
        return [str(c) for c in batch.columns]
    if isinstance(batch, Mapping):
        return list(batch)
    raise RequestError(f"a batch must be a dict of arrays, a pandas DataFrame or a pyarrow Table, "
                       f"not {type(batch).__name__}", field="batch")


def with_columns(batch: Any, new: Mapping[str, Any]) -> Any:
    """``batch`` as a pyarrow Table with the ``new`` columns (pyarrow arrays) added or replaced.

    Always a Table, whatever came in: the result columns keep their exact types (``string`` even
    when every row of a batch succeeded, ``int64`` with nulls, ``fixed_size_list<float>``), so
    that the blocks of a job share one schema and ``write_parquet`` needs no unification.
    """
    table = _table(batch)
    for name, array in new.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


def _table(batch: Any) -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]

    if isinstance(batch, pa.Table):
        return batch
    if hasattr(batch, "assign") and hasattr(batch, "columns"):  # pandas.DataFrame
        return pa.Table.from_pandas(batch, preserve_index=False)
    from ray.data.block import BlockAccessor

    return BlockAccessor.batch_to_block(batch)  # Ray's own conversion of a dict of numpy arrays


def strings(values: list[Any]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def ints(values: list[Any]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.int64())


def inferred(values: list[Any]) -> Any:
    import pyarrow as pa

    return pa.array(values)


def vector_column(matrix: np.ndarray) -> Any:
    """A float32 matrix ``(rows, dim)`` as one ``fixed_size_list<float>[dim]`` column, no copy."""
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])
