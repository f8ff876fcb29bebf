"""Operations on padded batches of sequences: dropout, last valid step, masks, reversal."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstm_jax.core.checks import Problems, check_float_array
from lstm_jax.sequence.lengths import check_lengths


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout: zeroes each entry with probability ``rate``, scales the rest by
    ``1 / (1 - rate)`` so expectations are unchanged."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"`dropout`: `rate` must be in [0, 1); got {rate!r}.")
    if rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def sequence_mask(lengths: jax.Array, T: int) -> jax.Array:
    """``(..., T)`` booleans, True where step ``t < lengths[...]``."""
    t = jnp.arange(T, dtype=lengths.dtype).reshape((1,) * lengths.ndim + (T,))
    return t < lengths[..., None]


def last_step(ys: jax.Array, lengths: jax.Array | None = None, *, time_major: bool = False):
    """Each example's output at its last valid step: ``(..., T, F) -> (..., F)``.

    Without ``lengths`` this is ``ys[..., -1, :]``. An example of length 0 gets zeros.
    """
    p = Problems("last_step")
    if check_float_array(p, "ys", ys, 2, "(..., T, features)"):
        T = ys.shape[0] if time_major else ys.shape[-2]
        batch = ys.shape[1:-1] if time_major else ys.shape[:-2]
        check_lengths(p, lengths, T, batch)
    p.raise_if_any()
    if time_major:
        ys = jnp.moveaxis(ys, 0, -2)
    if lengths is None:
        return ys[..., -1, :]
    idx = jnp.clip(lengths - 1, 0, None)[..., None, None]  # (..., 1, 1)
    out = jnp.take_along_axis(ys, idx, axis=-2)[..., 0, :]
    return jnp.where((lengths > 0)[..., None], out, jnp.zeros_like(out))


def reverse_padded(xs: jax.Array, lengths: jax.Array | None = None, *, time_major: bool = False):
    """Reverses each example within its own length; padding stays at the end.

    ``xs[..., t, :] -> xs[..., L - 1 - t, :]`` for ``t < L``; padded steps are left in place.
    """
    if time_major:
        xs = jnp.moveaxis(xs, 0, -2)
    T = xs.shape[-2]
    if lengths is None:
        out = jnp.flip(xs, axis=-2)
    else:
        t = jnp.arange(T, dtype=lengths.dtype).reshape((1,) * lengths.ndim + (T,))
        src = jnp.where(t < lengths[..., None], lengths[..., None] - 1 - t, t)  # (..., T)
        out = jnp.take_along_axis(xs, src[..., None], axis=-2)
    return jnp.moveaxis(out, -2, 0) if time_major else out
