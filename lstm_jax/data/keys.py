"""Accepts either a PRNG key or an int seed wherever data is generated."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def as_key(where: str, key_or_seed: Any) -> jax.Array:
    """Returns a PRNG key: ``key_or_seed`` itself if it is a key, else ``jax.random.key(seed)``."""
    if isinstance(key_or_seed, (bool, np.bool_)):
        raise TypeError(f"`{where}`: `key_or_seed` must be a PRNG key or an int; got bool.")
    if isinstance(key_or_seed, (int, np.integer)):
        return jax.random.key(int(key_or_seed))
    if isinstance(key_or_seed, jax.Array):
        if jax.dtypes.issubdtype(key_or_seed.dtype, jax.dtypes.prng_key):
            return key_or_seed
        if key_or_seed.dtype == np.uint32 and key_or_seed.shape == (2,):
            return key_or_seed  # a raw `jax.random.PRNGKey`
    raise TypeError(
        f"`{where}`: `key_or_seed` must be a PRNG key (`jax.random.key(0)`) or an int seed; "
        f"got {type(key_or_seed).__name__}."
    )


def check_count(where: str, name: str, value: Any, minimum: int = 1) -> None:
    """Raises unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{where}`: `{name}` must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"`{where}`: `{name}` must be >= {minimum}; got {value}.")
