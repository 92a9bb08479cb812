"""Every conversion from what Python users pass to what the core accepts.

The compiled core is strict: timestamps are int64 ticks of the store's unit,
values are C-contiguous float32 arrays, series handles are uint32 arrays and
paths are lists of str. This module is the one place that turns friendlier
input into that, and the one place that rejects what it cannot convert
without guessing. Every error names the argument it is about.

Series keys and paths are the exception: reads convert them in the core
(``src/python/keys.rs``) so that a read runs no Python code, and
``to_path`` here is that same function. The core's reads also take an
``int`` time as ticks themselves and call :func:`to_ticks` for anything
else, so the timestamp rules below still hold for every read.

Rules (docs/decisions.md repeats them for users):

- Paths: a tuple or list of str, or one "/"-joined str; "" and () are the
  root. The core validates the names themselves.
- Timestamps: ``int`` is taken as ticks of the store unit, never guessed.
  ``numpy.datetime64`` of any unit, ``datetime.datetime`` (naive means UTC),
  ``datetime.date`` (midnight UTC), ``pandas.Timestamp`` and ISO 8601 strings
  are converted to the store unit exactly when the unit is coarser, and
  rounded down (toward the past) when it is finer. NaT, floats, bools and
  values outside int64 are rejected.
- Values: float32 passes through untouched. Other real dtypes (float64,
  ints, ...) are rounded to the nearest float32; NaN stays NaN (missing) and
  infinities stay infinite, but a finite value beyond float32's range
  (about 3.4e38) is an error instead of becoming inf. Integers above 2**24
  lose precision in float32. ``None`` in a list means NaN. Object, string,
  bool and complex dtypes are rejected. A block (``Store.write``) may also
  be one number: one sample.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._core import to_path

__all__ = [
    "to_block_values",
    "to_frequency",
    "to_handles",
    "to_path",
    "to_ticks",
    "to_ticks_array",
    "to_values",
]

# Attoseconds per unit: every NumPy datetime unit with a fixed length.
_ATTOSECONDS = {
    "as": 1,
    "fs": 10**3,
    "ps": 10**6,
    "ns": 10**9,
    "us": 10**12,
    "ms": 10**15,
    "s": 10**18,
    "m": 60 * 10**18,
    "h": 3600 * 10**18,
    "D": 86400 * 10**18,
    "W": 7 * 86400 * 10**18,
}
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_UINT32_MAX = 2**32 - 1
_EPOCH = _dt.datetime(1970, 1, 1)


def _rescale(
    ticks: NDArray[np.int64], from_unit: str, count: int, to_unit: str, argument: str
) -> NDArray[np.int64]:
    """Converts counts of ``count * from_unit`` to ``to_unit``, exactly or by floor."""
    source = _ATTOSECONDS[from_unit] * count
    target = _ATTOSECONDS[to_unit]
    if source == target:
        return ticks
    if source > target:
        factor = source // target  # exact: every unit is a multiple of finer ones
        limit = _INT64_MAX // factor
        too_big = np.abs(ticks) > limit
        if too_big.any():
            index = int(np.argmax(too_big))
            raise ValueError(
                f"{argument}: element {index} ({ticks[index]} x {count}{from_unit}) does not "
                f"fit in int64 {to_unit} ticks"
            )
        return ticks * np.int64(factor)
    return np.floor_divide(ticks, np.int64(target // source))


def _datetime64_to_ticks(array: NDArray[Any], unit: str, argument: str) -> NDArray[np.int64]:
    nat = np.isnat(array)
    if nat.any():
        raise ValueError(
            f"{argument}: element {int(np.argmax(nat))} is NaT; missing timestamps cannot be stored"
        )
    base, count = np.datetime_data(array.dtype)
    if base == "generic":
        raise ValueError(f"{argument}: datetime64 without a unit cannot be converted")
    if base in ("M", "Y"):
        # Months and years have no fixed length; days are exact for them.
        if (np.abs(array.view(np.int64)) > 10**15).any():
            raise ValueError(f"{argument}: datetime64[{base}] value out of range")
        array = array.astype("datetime64[D]")
        base, count = "D", 1
    return _rescale(array.view(np.int64), base, count, unit, argument)


def _datetime_to_ticks(value: _dt.datetime, unit: str, argument: str) -> int:
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(_dt.UTC).replace(tzinfo=None)
    else:
        value = value.replace(tzinfo=None)
    delta = value - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int(_rescale(np.array([micros], dtype=np.int64), "us", 1, unit, argument)[0])


def _check_int64(value: int, argument: str) -> int:
    if not _INT64_MIN < value <= _INT64_MAX:
        raise ValueError(f"{argument}: {value} is outside the int64 range of timestamps")
    return value


def to_ticks(value: object, unit: str, argument: str) -> int:
    """One timestamp as int64 ticks of ``unit``."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{argument}: expected a timestamp, got a bool")
    if isinstance(value, np.timedelta64 | _dt.timedelta):  # timedelta64 is an np.integer
        raise TypeError(f"{argument}: expected a timestamp, got a timedelta")
    if isinstance(value, int | np.integer):
        return _check_int64(int(value), argument)
    if isinstance(value, np.datetime64):
        return int(_datetime64_to_ticks(np.array([value]), unit, argument)[0])
    to_datetime64 = getattr(value, "to_datetime64", None)
    if to_datetime64 is not None:  # pandas.Timestamp (naive or aware: both UTC-based)
        return to_ticks(to_datetime64(), unit, argument)
    if isinstance(value, _dt.datetime):
        return _datetime_to_ticks(value, unit, argument)
    if isinstance(value, _dt.date):
        return _datetime_to_ticks(_dt.datetime.combine(value, _dt.time()), unit, argument)
    if isinstance(value, str):
        return _parse_date(value, unit, argument)
    if isinstance(value, float | np.floating):
        raise TypeError(
            f"{argument}: got float {value!r}; pass an int of {unit!r} ticks or a datetime"
        )
    raise TypeError(
        f"{argument}: expected an int of {unit!r} ticks, a datetime, "
        f"a datetime64 or an ISO 8601 string, got {type(value).__name__}"
    )


def _parse_date(text: str, unit: str, argument: str) -> int:
    try:
        return _datetime_to_ticks(_dt.datetime.fromisoformat(text), unit, argument)
    except ValueError:
        pass
    try:  # NumPy also reads sub-microsecond ISO strings
        parsed = np.datetime64(text)
    except ValueError:
        raise ValueError(f"{argument}: cannot read {text!r} as an ISO 8601 date") from None
    return to_ticks(parsed, unit, argument)


def _pandas_to_numpy(values: Any) -> Any:
    """Unwraps pandas containers; tz-aware datetimes become naive UTC."""
    dtype = getattr(values, "dtype", None)
    if dtype is None or isinstance(dtype, np.dtype) or not hasattr(values, "to_numpy"):
        return values
    if getattr(dtype, "tz", None) is not None:
        return values.to_numpy(dtype="datetime64[ns]")
    return values


def to_ticks_array(values: object, unit: str, argument: str) -> NDArray[np.int64]:
    """A 1-D C-contiguous int64 array of ticks of ``unit``."""
    if isinstance(values, list | tuple):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            for v in values:
                _check_int64(v, argument)
            return np.array(values, dtype=np.int64)
        return np.array(
            [to_ticks(v, unit, f"{argument}[{i}]") for i, v in enumerate(values)], dtype=np.int64
        )
    array = np.asarray(_pandas_to_numpy(values))
    if array.ndim != 1:
        raise ValueError(f"{argument}: expected a 1-D array, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "M":
        result = _datetime64_to_ticks(array, unit, argument)
    elif kind == "i":
        result = array.astype(np.int64, copy=False)
    elif kind == "u":
        if array.size and int(array.max()) > _INT64_MAX:
            raise ValueError(f"{argument}: values above the int64 range")
        result = array.astype(np.int64)
    elif kind in "US":
        try:
            parsed = array.astype("datetime64[ns]")
        except ValueError as error:
            raise ValueError(f"{argument}: cannot read the strings as dates: {error}") from None
        result = _datetime64_to_ticks(parsed, unit, argument)
    else:
        raise TypeError(f"{argument}: expected int64 ticks or datetime64, got dtype {array.dtype}")
    return np.ascontiguousarray(result)


def to_block_values(values: object, argument: str) -> NDArray[np.float32]:
    """Values of one series' block: an array as for :func:`to_values`, or
    one real number (``int``, ``float``, a NumPy scalar or a 0-d array) as a
    block of one sample."""
    if isinstance(values, int | float | complex | np.number) or (
        isinstance(values, np.ndarray) and values.ndim == 0
    ):
        values = np.reshape(np.asarray(values), 1)
    return to_values(values, argument)


def to_values(values: object, argument: str) -> NDArray[np.float32]:
    """A 1-D C-contiguous float32 array, by the rule in the module docstring."""
    if isinstance(values, list | tuple):
        values = _list_to_float(values, argument)
    else:
        dtype = getattr(values, "dtype", None)
        if dtype is not None and not isinstance(dtype, np.dtype) and hasattr(values, "to_numpy"):
            # pandas nullable dtypes: <NA> means missing
            values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{argument}: expected a 1-D array, got shape {array.shape}")
    if array.dtype == np.float32:
        return np.ascontiguousarray(array)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{argument}: expected real numbers, got dtype {array.dtype}")
    wide = array.astype(np.float64, copy=False)
    with np.errstate(over="ignore"):
        narrow = wide.astype(np.float32)
    overflow = np.isinf(narrow) & np.isfinite(wide)
    if overflow.any():
        index = int(np.argmax(overflow))
        raise ValueError(
            f"{argument}: element {index} ({float(wide[index])!r}) is beyond the float32 "
            "range (about 3.4e38) and would become inf"
        )
    return narrow


def _list_to_float(values: Sequence[object], argument: str) -> NDArray[np.float64]:
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
            out[i] = v
        else:
            raise TypeError(f"{argument}: element {i} is a {type(v).__name__}, not a number")
    return out


def to_handles(series: object, argument: str) -> NDArray[np.uint32]:
    """A 1-D C-contiguous uint32 array of series handles."""
    if isinstance(series, list | tuple) and bool in set(map(type, series)):
        raise TypeError(f"{argument}: series handles are ints, got a bool")
    array = np.asarray(series)
    if array.ndim != 1:
        raise ValueError(f"{argument}: expected a 1-D array of handles, got shape {array.shape}")
    if array.dtype == np.uint32:
        return np.ascontiguousarray(array)
    if array.size == 0:
        return np.zeros(0, dtype=np.uint32)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{argument}: expected integer series handles, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > _UINT32_MAX:
        bad = low if low < 0 else high
        raise ValueError(f"{argument}: {bad} is not a series handle")
    return array.astype(np.uint32)


def to_frequency(value: object, unit: str, argument: str) -> int:
    """A positive number of ticks: an int, or a timedelta that is a whole number of ticks."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{argument}: expected a number of ticks, got a bool")
    if isinstance(value, int | np.integer) and not isinstance(value, np.timedelta64):
        ticks = int(value)
    else:
        to_timedelta64 = getattr(value, "to_timedelta64", None)
        if to_timedelta64 is not None:  # pandas.Timedelta
            value = to_timedelta64()
        if isinstance(value, _dt.timedelta):
            value = np.timedelta64(value)
        if not isinstance(value, np.timedelta64):
            raise TypeError(
                f"{argument}: expected an int of {unit!r} ticks or a timedelta, "
                f"got {type(value).__name__}"
            )
        base, count = np.datetime_data(value.dtype)
        if base not in _ATTOSECONDS:
            raise ValueError(f"{argument}: timedelta64[{base}] has no fixed length")
        attoseconds = int(value.astype(np.int64)) * count * _ATTOSECONDS[base]
        ticks, rest = divmod(attoseconds, _ATTOSECONDS[unit])
        if rest:
            raise ValueError(f"{argument}: {value} is not a whole number of {unit!r} ticks")
    if ticks < 1:
        raise ValueError(f"{argument}: must be positive, got {ticks}")
    return _check_int64(ticks, argument)


_GLOB = str.maketrans({"*": "[*]", "?": "[?]", "[": "[[]"})


def literal_pattern(path: tuple[str, ...]) -> str:
    """A stored path as a series pattern that matches only itself (``*``,
    ``?`` and ``[`` in its names bracketed)."""
    return "/".join(part.translate(_GLOB) for part in path)
