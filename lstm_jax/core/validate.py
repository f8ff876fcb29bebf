"""Validators for scalar options and PRNG keys, shared by every public entry point.

Each takes the function's name (``where``) and the argument's name, and either returns the value
in its canonical form or raises a ``TypeError`` (wrong kind of object) / ``ValueError`` (right
kind, wrong value) whose message names both and shows what arrived. Sizes accept any integral
type (``int``, ``np.int64``, ...) and refuse ``bool`` and strings; booleans must be ``bool``
(``'False'`` is not False); float options must be real and finite.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _fail(kind: type[Exception], where: str, msg: str) -> Exception:
    return kind(f"`{where}`: {msg}")


def check_int(where: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as a Python int ``>= minimum``; any integral type, never bool or str."""
    what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise _fail(
            TypeError, where, f"`{name}` must be {what}; got {value!r} ({type(value).__name__})."
        )
    if int(value) < minimum:
        raise _fail(ValueError, where, f"`{name}` must be {what}; got {value!r}.")
    return int(value)


def check_bool(where: str, name: str, value: Any) -> bool:
    """``value`` as a bool; only ``True``/``False`` (and NumPy's) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(
            TypeError,
            where,
            f"`{name}` must be True or False; got {value!r} ({type(value).__name__}).",
        )
    return bool(value)


def check_float(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite Python float in the given range (ints allowed, bools not)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _fail(
            TypeError,
            where,
            f"`{name}` must be a real number; got {value!r} ({type(value).__name__}).",
        )
    v = float(value)
    below = low is not None and (v <= low if low_open else v < low)
    above = high is not None and (v >= high if high_open else v > high)
    if not math.isfinite(v) or below or above:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lo}, {hi}{right}"
        raise _fail(
            ValueError, where, f"`{name}` must be a finite number in {interval}; got {v!r}."
        )
    return v


def check_unroll(where: str, value: Any) -> int | bool | None:
    """``unroll`` of ``jax.lax.scan``: None (per-backend default), a bool, or an int >= 1."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if not isinstance(value, numbers.Integral) or int(value) < 1:
        raise _fail(
            TypeError if not isinstance(value, numbers.Integral) else ValueError,
            where,
            f"`unroll` must be None, a bool or an int >= 1 (steps per loop iteration); "
            f"got {value!r} ({type(value).__name__}).",
        )
    return int(value)


def check_dtype(where: str, name: str, value: Any, *, allow_none: bool = True) -> Any:
    """A floating dtype (``jnp.float32``, ``'bfloat16'``, ...) as a ``np.dtype``, or None."""
    if value is None and allow_none:
        return None
    try:
        dt = jnp.dtype(value)
    except TypeError:
        raise _fail(
            TypeError,
            where,
            f"`{name}` must be a floating dtype (float32, bfloat16, float64, ...); got {value!r}.",
        ) from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise _fail(
            TypeError,
            where,
            f"`{name}` must be a floating dtype (float32, bfloat16, float64, ...); got {dt}.",
        )
    return dt


def check_key(where: str, name: str, key: Any) -> jax.Array:
    """One PRNG key: a typed key (``jax.random.key``) or a raw ``uint32[2]`` one (``PRNGKey``).

    Returns it unchanged. An int seed, None, a string, a batch of keys or any other array is
    refused with a message that says how to make a key.
    """
    hint = f"Make one with `jax.random.key(seed)`; got {_describe_key(key)}."
    if isinstance(key, jax.Array) or isinstance(key, np.ndarray):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise _fail(
                    ValueError,
                    where,
                    f"`{name}` must be a single PRNG key (shape ()), not a batch; got shape "
                    f"{key.shape}. Pass one key, or split it and loop/vmap.",
                )
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return key
    raise _fail(TypeError, where, f"`{name}` must be a PRNG key. {hint}")


def _describe_key(key: Any) -> str:
    if isinstance(key, (jax.Array, np.ndarray)):
        return f"an array of shape {key.shape} and dtype {key.dtype}"
    return f"{key!r} ({type(key).__name__})"
