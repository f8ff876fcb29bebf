"""Variable-length batches: checking ``lengths`` and turning them into per-step masks.

``lengths`` gives each example's number of valid steps; the rest are padding at the end. Every
sequence function shares these rules:

* ``lengths`` is an integer array with the batch shape of ``xs``. Narrow integer types (int8,
  uint8, int16, ...) are widened before any step is counted, so a uint8 length never wraps.
* Concrete lengths outside ``[0, T]`` are a ``ValueError``. Under ``jit``, where the values are
  unknown, an out-of-range length turns every output **and** every leaf of the returned carry
  into NaN, so the mistake cannot pass silently.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.core.checks import Problems, is_array, is_concrete


def check_lengths(p: Problems, lengths: Any, T: int, batch_shape: tuple[int, ...]) -> None:
    """Records a problem unless ``lengths`` is None or integers of ``batch_shape`` in [0, T]."""
    if lengths is None:
        return
    if not is_array(lengths) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        got = getattr(lengths, "dtype", type(lengths).__name__)
        p.type(f"`lengths` must be an integer array of shape {batch_shape}; got {got}.")
        return
    if tuple(lengths.shape) != tuple(batch_shape):
        p.value(
            f"`lengths` must have the batch shape of `xs`, {batch_shape}; "
            f"got lengths.shape={lengths.shape}."
        )
        return
    if is_concrete(lengths):
        values = np.asarray(lengths).astype(np.int64)  # concrete: plain NumPy, never wraps
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if lo < 0 or hi > T:
            p.value(f"`lengths` must lie in [0, T={T}]; got values from {lo} to {hi}.")


def widen(lengths: jax.Array) -> jax.Array:
    """``lengths`` as a signed integer type wide enough to count to any T (int32 at least)."""
    if lengths.dtype in (jnp.int64, jnp.uint64, jnp.uint32):
        wide = jnp.int64 if jax.config.read("jax_enable_x64") else jnp.int32
        if lengths.dtype == wide:
            return lengths
        # uint values above the int range become negative, so they are flagged out of range.
        return lengths.astype(wide)
    return lengths.astype(jnp.int32)


def valid_steps(lengths: jax.Array, T: int) -> jax.Array:
    """``(T, *lengths.shape)`` booleans: step t of an example is valid iff t < its length."""
    lengths = widen(lengths)
    t = jnp.arange(T, dtype=lengths.dtype).reshape((T,) + (1,) * lengths.ndim)
    return t < lengths[None]


def out_of_range(lengths: jax.Array, T: int) -> jax.Array:
    """A scalar bool: True when any length lies outside ``[0, T]``."""
    lengths = widen(lengths)
    return jnp.any((lengths < 0) | (lengths > T))


def poison(tree: Any, bad: jax.Array) -> Any:
    """Every floating leaf of ``tree`` turned NaN where the scalar ``bad`` is True."""

    def one(x):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            return x
        return jnp.where(bad, jnp.full_like(x, jnp.nan), x)

    return jax.tree.map(one, tree)


def expand_to(mask: jax.Array, leaf: jax.Array) -> jax.Array:
    """``mask: (*batch,)`` with trailing singleton axes so it has the rank of ``leaf``."""
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))
