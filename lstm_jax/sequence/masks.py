"""Operations on padded batches of sequences: dropout, last valid step, masks, reversal."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstm_jax.core.checks import Problems, check_float_array, is_array
from lstm_jax.core.validate import check_float, check_int, check_key
from lstm_jax.sequence.lengths import check_lengths, out_of_range, poison, widen


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout: zeroes each entry with probability ``rate``, scales the rest by
    ``1 / (1 - rate)`` so expectations are unchanged."""
    rate = check_float("dropout", "rate", rate, low=0.0, high=1.0, high_open=True)
    key = check_key("dropout", "key", key)
    p = Problems("dropout")
    check_float_array(p, "x", x, 0, "(...)")
    p.raise_if_any()
    if rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def sequence_mask(lengths: jax.Array, T: int) -> jax.Array:
    """``(..., T)`` booleans, True where step ``t < lengths[...]``.

    ``lengths`` must be integers in ``[0, T]`` (checked when concrete); narrow integer types
    are widened first, so a uint8 length of 200 never wraps.
    """
    T = check_int("sequence_mask", "T", T, minimum=0)
    p = Problems("sequence_mask")
    if not is_array(lengths):
        p.type(f"`lengths` must be an integer array; got {type(lengths).__name__}.")
    else:
        check_lengths(p, lengths, T, tuple(lengths.shape))
    p.raise_if_any()
    lengths = widen(lengths)
    t = jnp.arange(T, dtype=lengths.dtype).reshape((1,) * lengths.ndim + (T,))
    return t < lengths[..., None]


def last_step(ys: jax.Array, lengths: jax.Array | None = None, *, time_major: bool = False):
    """Each example's output at its last valid step: ``(..., T, F) -> (..., F)``.

    Without ``lengths`` this is ``ys[..., -1, :]``. An example of length 0 gets zeros. Under
    ``jit``, a length outside ``[0, T]`` makes the result NaN (concrete ones are refused).
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
    T, lengths = ys.shape[-2], widen(lengths)
    idx = jnp.clip(lengths - 1, 0, T - 1)[..., None, None]  # (..., 1, 1)
    out = jnp.take_along_axis(ys, idx, axis=-2)[..., 0, :]
    out = jnp.where((lengths > 0)[..., None], out, jnp.zeros_like(out))
    return poison(out, out_of_range(lengths, T))


def reverse_padded(xs: jax.Array, lengths: jax.Array | None = None, *, time_major: bool = False):
    """Reverses each example within its own length; padding stays at the end.

    ``xs[..., t, :] -> xs[..., L - 1 - t, :]`` for ``t < L``; padded steps are left in place.
    """
    p = Problems("reverse_padded")
    if check_float_array(p, "xs", xs, 2, "(T, ..., F)" if time_major else "(..., T, F)"):
        T = xs.shape[0] if time_major else xs.shape[-2]
        check_lengths(p, lengths, T, xs.shape[1:-1] if time_major else xs.shape[:-2])
    p.raise_if_any()
    if time_major:
        xs = jnp.moveaxis(xs, 0, -2)
    T = xs.shape[-2]
    if lengths is None:
        out = jnp.flip(xs, axis=-2)
    else:
        lengths = widen(lengths)
        t = jnp.arange(T, dtype=lengths.dtype).reshape((1,) * lengths.ndim + (T,))
        src = jnp.where(t < lengths[..., None], lengths[..., None] - 1 - t, t)  # (..., T)
        out = jnp.take_along_axis(xs, src[..., None], axis=-2)
    return jnp.moveaxis(out, -2, 0) if time_major else out
